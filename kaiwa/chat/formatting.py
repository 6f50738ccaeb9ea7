"""A message's ``html`` (PROTOCOL.md section 3): its text rendered from a
Markdown subset, mentions marked up, then sanitized. Rendered once, when the
message is written; frames, REST answers and emails reuse it.

- markdown-it-py parses CommonMark's "zero" preset plus emphasis, ``~~``
  strikethrough, inline code, fenced and indented code blocks, links,
  autolinks, bare http(s) URLs and email addresses (linkify-it-py), lists
  (``<ol start>`` kept), quotes, and a line break for each newline (chat
  text). No heading, table, image, rule or link reference. ``html=False``:
  raw HTML in the text is text, escaped by the renderer. A link whose URL is
  not http, https or mailto stays text.
- Mentions are found on markdown-it's token stream (a core rule), so that
  ``@bob`` in code or in a link's text is left alone.
- nh3 (the ammonia sanitizer) then keeps only the tags and attributes that
  subset emits and adds ``rel="nofollow noopener"`` to every link: a second
  line of defence should the parser ever let something through.

Cost per call: under a millisecond for a short message, tens of
milliseconds for the worst 4000-character input found (docs/performance.md,
"Figures once kept in the code"). CPU-bound: call it
where the write runs in a thread, not on the event loop.
"""

import re
from collections.abc import Collection, Iterator, Mapping

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

# ``@`` then a Django username (``[\w.@+-]``), not preceded by a username
# character, so that ``alice@example.com`` mentions nobody. The notifications
# app finds whom a message notifies with the same pattern.
MENTION_PATTERN = re.compile(r"(?<![\w.@+-])@([\w.@+-]{1,150})")
# Sentence punctuation that may trail a mention: "thanks @bob." means bob.
MENTION_TRAILING = ".-+@"

LINK_SCHEMES = frozenset({"http", "https", "mailto"})
# Every tag the Markdown subset below emits, and no other.
ALLOWED_TAGS = frozenset(
    {"p", "br", "em", "strong", "s", "code", "pre", "a", "ul", "ol", "li", "blockquote", "span"}
)
# How each token moves the depth of links: no mention inside a link's text.
_LINK_DEPTH = {"link_open": 1, "link_close": -1}


def message_html(*, text: str, members: Collection[str] | None = None) -> str:
    """The ``html`` of a message whose raw text is ``text``.

    ``members``: the usernames a mention may name (the room's members);
    ``@name`` is marked up as ``<span class="mention" data-username="Name">``
    when ``name`` is one of them, compared case-insensitively, with
    ``data-username`` spelled as in ``members``. ``None`` marks every
    ``@name``. A trailing ``.-+@`` is part of the name only if a member is
    called so ("thanks @bob." names "bob" unless there is a "bob.").

    Returns sanitized HTML (block elements each followed by a newline), ``""``
    for an empty text. Raises nothing for any ``str``.
    """
    lookup = None if members is None else {name.lower(): name for name in members}
    return _CLEANER.clean(_MARKDOWN.render(text, {"members": lookup}))


def _link_allowed(url: str) -> bool:
    """markdown-it's link check (on the normalized URL): http, https and mailto only."""
    scheme, colon, _ = url.partition(":")
    return bool(colon) and scheme.lower() in LINK_SCHEMES


def _mark_mentions(state: StateCore) -> None:
    """Core rule: split each text token around the mentions it holds."""
    members = state.env.get("members")
    for block in state.tokens:
        if block.type == "inline" and block.children and "@" in block.content:
            block.children = list(_with_mentions(block.children, members))


def _with_mentions(tokens: list[Token], members: Mapping[str, str] | None) -> Iterator[Token]:
    """``tokens`` with the text outside links split into text and mentions.

    Code spans are ``code_inline`` tokens and an escaped ``\\@`` is a
    ``text_special`` one (joined to the text only after this rule), so
    neither is ever marked.
    """
    in_link = 0
    for token in tokens:
        in_link += _LINK_DEPTH.get(token.type, 0)
        if token.type != "text" or in_link or "@" not in token.content:
            yield token
            continue
        yield from _split_text(token, members)


def _split_text(token: Token, members: Mapping[str, str] | None) -> Iterator[Token]:
    """One text token as text, ``mention_open``, ``@name``, ``mention_close``, text ..."""
    content, start = token.content, 0
    for match in MENTION_PATTERN.finditer(content):
        found = _mentioned(match.group(1), members)
        if found is None:
            continue
        written, username = found
        end = match.start() + 1 + len(written)
        if match.start() > start:
            yield _text(content[start : match.start()], token.level)
        attrs: dict[str, str | int | float] = {"class": "mention", "data-username": username}
        yield Token("mention_open", "span", 1, attrs=attrs, level=token.level)
        yield _text(content[match.start() : end], token.level + 1)
        yield Token("mention_close", "span", -1, level=token.level)
        start = end
    if start < len(content):
        yield _text(content[start:], token.level)


def _mentioned(name: str, members: Mapping[str, str] | None) -> tuple[str, str] | None:
    """``(name as written, username)`` that ``@name`` mentions, or None.

    ``name`` may end in sentence punctuation (MENTION_TRAILING): the longest
    form naming a member wins, as in the notifications app.
    """
    stripped = name.rstrip(MENTION_TRAILING)
    if members is None:
        return (stripped, stripped) if stripped else None
    for written in (name, stripped):
        username = members.get(written.lower())
        if written and username is not None:
            return written, username
    return None


def _text(content: str, level: int) -> Token:
    return Token("text", "", 0, content=content, level=level)


def _build_markdown() -> MarkdownIt:
    md = MarkdownIt("zero", {"breaks": True, "linkify": True, "html": False})
    md.enable(["code", "fence", "blockquote", "list"])  # block rules
    md.enable(["newline", "escape", "backticks", "emphasis", "strikethrough"])
    md.enable(["link", "autolink", "linkify"])  # linkify: its inline and core rules
    md.validateLink = _link_allowed  # type: ignore[method-assign]
    # A link needs its scheme (http://, mailto:), or is an email address: with
    # fuzzy links on, "main.py" and "README.md" would link to Paraguay and Moldova.
    assert md.linkify is not None  # markdown-it-py[linkify] installs linkify-it-py
    md.linkify.set({"fuzzy_link": False})
    # After linkify (so that a bare URL is a link first), before text_join
    # (so that an escaped "\@" is still its own token).
    md.core.ruler.after("linkify", "mention", _mark_mentions)
    return md


_MARKDOWN = _build_markdown()
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={"a": {"href"}, "ol": {"start"}, "span": {"data-username"}},
    allowed_classes={"span": {"mention"}},
    url_schemes=set(LINK_SCHEMES),
    url_relative="deny",
    link_rel="nofollow noopener",
)

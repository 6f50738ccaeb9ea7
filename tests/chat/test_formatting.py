"""A message's ``html``: the Markdown subset PROTOCOL.md section 3 names, raw
HTML shown as text, links with ``rel="nofollow noopener"``, mentions of
members marked up, and nothing outside the allow-list whatever the text."""

from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwa.chat.formatting import message_html

# Written from the protocol's list (emphasis, code, code blocks, links, lists,
# quotes, mentions, line breaks), not read from the module.
TAGS = {"p", "br", "em", "strong", "s", "code", "pre", "a", "ul", "ol", "li", "blockquote", "span"}
ATTRIBUTES = {"a": {"href", "rel"}, "ol": {"start"}, "span": {"class", "data-username"}}
SCHEMES = ("http://", "https://", "mailto:")


class Elements(HTMLParser):
    """Every start tag of a fragment, with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser.found


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (
            "*it* _it_ **bold** ~~gone~~",
            "<p><em>it</em> <em>it</em> <strong>bold</strong> <s>gone</s></p>\n",
        ),
        ("run `make test` now", "<p>run <code>make test</code> now</p>\n"),
        (
            "```python\nif a < b:\n    pass\n```",
            "<pre><code>if a &lt; b:\n    pass\n</code></pre>\n",
        ),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n"),
        ("3. three\n4. four", '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>\n'),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>\n"),
        ("one\ntwo", "<p>one<br>\ntwo</p>\n"),
        ("", ""),
    ],
)
def test_it_renders_the_subset(text, html):
    assert message_html(text=text) == html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("# not a heading", "<p># not a heading</p>\n"),
        ("| a | b |\n|---|---|", "<p>| a | b |<br>\n|---|---|</p>\n"),
        ("---", "<p>---</p>\n"),
        ("[x]\n\n[x]: /admin/", "<p>[x]</p>\n<p>[x]: /admin/</p>\n"),
        (
            "![alt](https://example.com/x.png)",
            '<p>!<a href="https://example.com/x.png" rel="nofollow noopener">alt</a></p>\n',
        ),
    ],
)
def test_it_leaves_headings_tables_rules_references_and_images_out(text, html):
    assert message_html(text=text) == html


@pytest.mark.parametrize(
    ("text", "href"),
    [
        ("[the docs](https://example.com/docs)", "https://example.com/docs"),
        ("<https://example.com/a>", "https://example.com/a"),
        ("see https://example.com/b?c=1&d=2 now", "https://example.com/b?c=1&d=2"),
        ("write to alice@example.com", "mailto:alice@example.com"),
        ("[mail](mailto:bob@example.com)", "mailto:bob@example.com"),
    ],
)
def test_links_get_nofollow_noopener(text, href):
    [(_, attrs)] = [found for found in elements(message_html(text=text)) if found[0] == "a"]
    assert attrs == {"href": href, "rel": "nofollow noopener"}


def test_file_names_are_not_links():
    assert "<a" not in message_html(text="see README.md and main.py")


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"),
        ("<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>\n"),
        ("<b>bold</b>", "<p>&lt;b&gt;bold&lt;/b&gt;</p>\n"),
        ("<!-- hidden -->", "<p>&lt;!-- hidden --&gt;</p>\n"),
    ],
)
def test_raw_html_is_shown_as_text(text, html):
    assert message_html(text=text) == html


@pytest.mark.parametrize(
    "text",
    [
        "[click](javascript:alert(1))",
        "[click](JavaScript:alert(1))",
        "[click](java\tscript:alert(1))",
        "<javascript:alert(1)>",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD4=)",
        "[click](/admin/)",
        "[click](ftp://example.com/)",
    ],
)
def test_it_makes_no_link_but_http_https_and_mailto(text):
    assert [tag for tag, _ in elements(message_html(text=text))] == ["p"]


def test_it_marks_a_mention_of_a_member():
    html = message_html(text="thanks @Bob.", members=["bob", "carol"])
    assert html == '<p>thanks <span class="mention" data-username="bob">@Bob</span>.</p>\n'


def test_it_prefers_the_member_whose_name_has_the_punctuation():
    html = message_html(text="hi @bob.", members=["bob", "bob."])
    assert '<span class="mention" data-username="bob.">@bob.</span>' in html


def test_it_does_not_mark_a_non_member_or_an_email():
    html = message_html(text="@dave and carol@example.com", members=["bob", "carol"])
    assert "mention" not in html
    assert "@dave" in html


def test_without_members_it_marks_every_mention():
    html = message_html(text="@dave, @erin")
    assert [attrs["data-username"] for tag, attrs in elements(html) if tag == "span"] == [
        "dave",
        "erin",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "`@bob`",
        "```\n@bob\n```",
        "    @bob indented",
        "[@bob](https://example.com)",
        "\\@bob",
    ],
)
def test_it_does_not_mark_a_mention_in_code_in_a_link_or_escaped(text):
    html = message_html(text=text, members=["bob"])
    assert "mention" not in html
    assert "@bob" in html


def test_a_mention_inside_emphasis_is_marked():
    html = message_html(text="**@bob** look", members=["bob"])
    assert html == (
        '<p><strong><span class="mention" data-username="bob">@bob</span></strong> look</p>\n'
    )


# Text that tends to make markup: Markdown punctuation, HTML, URLs, mentions.
PIECES = st.sampled_from(
    [
        "<",
        ">",
        "&",
        '"',
        "'",
        "`",
        "```",
        "*",
        "_",
        "~~",
        "[",
        "]",
        "(",
        ")",
        "!",
        "\\",
        "\n",
        "\n\n",
        " ",
        "    ",
        "> ",
        "- ",
        "1. ",
        "# ",
        "@bob",
        "@",
        ".",
        ":",
        "<script>",
        "</script>",
        "<img src=x onerror=alert(1)>",
        "<a href='x'>",
        "<span class=mention data-username=x>",
        "onload=",
        "javascript:",
        "https://",
        "mailto:",
        "example.com",
        "&lt;",
        "&#60;",
        "<!--",
        "-->",
        "<svg/onload=alert(1)>",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=200), st.lists(PIECES | st.text(max_size=4), max_size=40).map("".join)
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=TEXTS, everyone=st.booleans())
def test_no_text_makes_markup_outside_the_allow_list(text, everyone):
    html = message_html(text=text, members=None if everyone else ["bob"])
    for tag, attrs in elements(html):
        assert tag in TAGS, html
        assert set(attrs) <= ATTRIBUTES.get(tag, set()), html
        assert not any(name.startswith("on") for name in attrs), html
        if tag == "a":  # nh3 drops an href it cannot parse ("http://\u00b8"): an inert <a>
            assert attrs.get("href", "http://").lower().startswith(SCHEMES), html
            assert attrs["rel"] == "nofollow noopener", html
        if tag == "span":
            assert attrs["class"] == "mention", html

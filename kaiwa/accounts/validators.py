"""Usernames: the canonical key and the skeleton that make lookalike names
collide, and the sign-up validators that refuse reserved and confusable names.

Confusable characters come from Unicode's confusables data (UTS #39) as
shipped by ``confusable_homoglyphs``, the library django-registration uses
for the same checks. Django's ``UnicodeUsernameValidator`` (on ``User``)
still limits names to letters, digits and ``@.+-_``, and its
``UsernameField`` NFKC-normalises what is typed (``ａｌｉｃｅ`` is stored as
``alice``).
"""

import unicodedata
from functools import cache

from confusable_homoglyphs import confusables
from django.core.exceptions import ValidationError

# Names a person may not sign up with: staff-like names someone could use to
# impersonate the operators, and the @mention keywords. Compared by key, so
# ``Admin``, ``ADMIN`` and ``аdmin`` (Cyrillic а) are reserved too.
RESERVED_USERNAMES = frozenset(
    {
        "admin",
        "administrator",
        "root",
        "system",
        "kaiwa",
        "staff",
        "support",
        "security",
        "postmaster",
        "webmaster",
        "guest",
        "everyone",
        "here",
        "channel",
        "all",
    }
)
# Anonymous sockets are named ``guest-<random>`` by the server
# (kaiwa.chat.realtime.consumers); nobody may sign up with such a name.
RESERVED_PREFIXES = ("guest-",)

# ASCII lookalikes the skeleton adds to Unicode's, applied to each character's
# prototype (``_prototypes``). UTS #39's confusables.txt already maps 1 and I
# to l and m to "rn" (restated here), and 0 to O, which only case folding
# would bring to o: each pair is one a person reads as the other in a name
# (issue 22's probes: aIice for alice, b0b for bob, r00t, tirn for tim).
ASCII_LOOKALIKES = {"0": "o", "1": "l", "I": "l", "m": "rn"}

# confusable_homoglyphs wraps right-to-left characters in LEFT-TO-RIGHT MARKs.
_DIRECTION_MARKS = str.maketrans("", "", "\u200e\u200f")


@cache
def _prototypes() -> dict[str, str]:
    """Each confusable character mapped to the one character that stands for
    its whole set (``а`` Cyrillic, ``α`` and ``ａ`` all to ``a``).

    UTS #39 maps each confusable to a prototype; confusable_homoglyphs keeps
    those pairs in both directions, so the sets are the connected pairs and
    the representative is chosen here: single characters first, then ASCII,
    then lowercase, then the lowest code point. Multi-character sequences are
    not mapped (the skeleton goes character by character, as UTS #39's).
    """
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for source, targets in confusables.confusables_data.items():
        for target in targets:
            a = root(source.translate(_DIRECTION_MARKS))
            b = root(target["c"].translate(_DIRECTION_MARKS))
            parent[max(a, b, key=_preference)] = min(a, b, key=_preference)
    return {node: root(node) for node in parent if len(node) == 1}


def _preference(node: str) -> tuple[int, bool, bool, str]:
    return (len(node), not node.isascii(), not node.islower(), node)


def username_key(username: str) -> str:
    """The canonical form of ``username`` (str to str): NFKC, case-folded,
    then the confusables skeleton (UTS #39, on the NFD form). Two names with
    the same key look alike or differ only in case (``Ünal`` and ``ünal``,
    ``alice`` and ``аlice`` with a Cyrillic а, ``STRASSE`` and ``straße``);
    ``UsernameClaim.key`` holds it, unique.

    The key depends on the Unicode data of Python and confusable_homoglyphs:
    after upgrading either, existing keys may differ from new ones (then
    re-save the users, or re-run the accounts data migration's function).
    """
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", username).casefold())
    prototypes = _prototypes()
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in folded))


def _lookalikes_replaced(text: str) -> str:
    """Each character of ``text`` (NFD) by its prototype, then by its
    ASCII_LOOKALIKES entry; NFD again."""
    prototypes = _prototypes()
    mapped = (prototypes.get(c, c) for c in text)
    return unicodedata.normalize("NFD", "".join(ASCII_LOOKALIKES.get(c, c) for c in mapped))


def username_skeleton(username: str) -> str:
    """The lookalike skeleton of ``username`` (str to str): NFKC, then the
    confusables skeleton (UTS #39, on the NFD form, plus ASCII_LOOKALIKES)
    taken before case folding and again after it. Two names with the same
    skeleton read alike: ``aIice`` (capital I) and ``alice``, whose keys
    differ because folding makes the I an i; ``b0b`` and ``bob``; ``tirn``
    and ``tim``. ``UsernameClaim.skeleton`` holds it, unique.

    Case-only variants may differ (``ALICE`` reads ``ALlCE``): the key
    (``username_key``) catches those. The skeleton depends on the same
    Unicode data as the key (see there)."""
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", username))
    folded = unicodedata.normalize("NFD", _lookalikes_replaced(text).casefold())
    return _lookalikes_replaced(folded)


@cache
def _reserved_forms() -> frozenset[str]:
    keys = {username_key(name) for name in RESERVED_USERNAMES}
    return frozenset(keys | {username_skeleton(name) for name in RESERVED_USERNAMES})


def validate_username_not_reserved(value: str) -> None:
    """Refuse a reserved name or one starting with a reserved prefix, in any
    case or lookalike spelling (by key or skeleton: ``ROOT``, ``r00t``,
    ``adrnin``). Raises ``ValidationError`` (code ``reserved``)."""
    key, forms = username_key(value), _reserved_forms()
    prefixes = tuple(map(username_key, RESERVED_PREFIXES))
    if key in forms or username_skeleton(value) in forms or key.startswith(prefixes):
        raise ValidationError("This name is reserved. Please choose another.", code="reserved")


def validate_username_not_confusable(value: str) -> None:
    """Refuse a name that mixes scripts with characters that look like those
    of another script (``аlice``: a Cyrillic а among Latin letters), as
    django-registration does with ``confusables.is_dangerous``. A name in one
    script, any script, passes (``José``, ``Иван``, ``田中``). Raises
    ``ValidationError`` (code ``confusable``)."""
    if confusables.is_dangerous(value):
        raise ValidationError(
            "This name mixes alphabets with letters that look alike, so it could "
            "pass for another name. Please use letters from one alphabet.",
            code="confusable",
        )

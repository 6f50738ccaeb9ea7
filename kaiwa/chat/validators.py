"""Checks and constants of the chat app that reads and writes share.

Selectors (reads) and services (writes) both import this module; it imports
only models and errors, so reads never depend on writes.
"""

import re

from django.conf import settings

from kaiwa.chat.errors import (
    MessageInvalid,
    MessageNotFound,
    RoomNotFound,
)
from kaiwa.chat.models import (
    DM_PREFIX,
    room_slug_validator,
)

__all__ = ["DM_PREFIX", "message_id_check", "room_slug_check"]


def room_slug_check(*, slug: str) -> str:
    """Return ``slug`` if it is a valid room name (PROTOCOL.md section 1: 1 to
    64 characters of ``[A-Za-z0-9_-]``); raises RoomNotFound otherwise."""
    try:
        room_slug_validator(slug)
    except Exception as exc:
        raise RoomNotFound("Bad room name: 1 to 64 characters of [A-Za-z0-9_-].") from exc
    return slug


def message_id_check(*, message_id: object) -> int:
    """The message id of a frame or URL. Raises MessageInvalid (``bad_frame``)
    when it is missing or not a string or integer, MessageNotFound
    (``not_found``) for one that cannot name a message (not digits)."""
    if isinstance(message_id, bool) or not isinstance(message_id, int | str):
        raise MessageInvalid("'id' must be the id of a message (a string).")
    text = str(message_id)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise MessageNotFound("No such message.")
    return int(text)


# Characters a text column cannot hold: NUL (PostgreSQL refuses it in text)
# and lone UTF-16 surrogates (no UTF-8 encoding exists for them).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_storable_check(*, value: str, name: str) -> str:
    """Return ``value`` if a database can store it; raises MessageInvalid
    (``bad_frame``) for a NUL character or a lone surrogate, which PostgreSQL
    refuses: checked before a post joins a batch, so one bad message cannot
    fail the others stored with it."""
    if UNSTORABLE.search(value):
        raise MessageInvalid(
            f"'{name}' holds a character that cannot be stored (NUL or a lone surrogate).",
            code="bad_frame",
        )
    return value


def message_text_check(*, text: object) -> str:
    """Return ``text`` if it is a str of 1 to KAIWA_MAX_MESSAGE_CHARS storable characters.

    Raises MessageInvalid with code ``bad_frame`` (not a string, empty, a NUL
    or a lone surrogate) or ``too_long``.
    """
    if not isinstance(text, str) or not text:
        raise MessageInvalid("'message' must be a non-empty string.", code="bad_frame")
    limit = settings.KAIWA_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise MessageInvalid(f"'message' is longer than {limit} characters.", code="too_long")
    return text_storable_check(value=text, name="message")


def client_id_check(*, client_id: object) -> str | None:
    """Return ``client_id`` (None, or a str of 1 to 64 storable characters); raises MessageInvalid."""
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        raise MessageInvalid("'client_id' must be a string of 1 to 64 characters.")
    return text_storable_check(value=client_id, name="client_id")


def read_seq_check(*, seq: object) -> int:
    """Return ``seq`` if it is a non-negative int; raises MessageInvalid."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise MessageInvalid("'seq' must be a non-negative integer.")
    return seq


def emoji_check(*, emoji: object) -> str:
    """Return ``emoji`` if it is 1 to 32 characters without whitespace
    (PROTOCOL.md section 2); raises MessageInvalid (``bad_frame``)."""
    if not isinstance(emoji, str) or not 1 <= len(emoji) <= 32 or any(c.isspace() for c in emoji):
        raise MessageInvalid("'emoji' must be 1 to 32 characters without whitespace.")
    return text_storable_check(value=emoji, name="emoji")

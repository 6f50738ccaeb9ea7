"""Checks and constants of the chat app that reads and writes share.

Selectors (reads) and services (writes) both import this module; it imports
only models and errors, so reads never depend on writes.
"""

from .errors import MessageInvalid, MessageNotFound, RoomNotFound
from .models import DM_PREFIX, room_slug_validator

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

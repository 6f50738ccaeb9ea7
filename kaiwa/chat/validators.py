"""Checks and constants of the chat app that reads and writes share.

Selectors (reads) and services (writes) both import this module; it imports
only models and errors, so reads never depend on writes.
"""

from .errors import RoomNotFound
from .models import DM_PREFIX, room_slug_validator

__all__ = ["DM_PREFIX", "room_slug_check"]


def room_slug_check(*, slug: str) -> str:
    """Return ``slug`` if it is a valid room name (PROTOCOL.md section 1: 1 to
    64 characters of ``[A-Za-z0-9_-]``); raises RoomNotFound otherwise."""
    try:
        room_slug_validator(slug)
    except Exception as exc:
        raise RoomNotFound("Bad room name: 1 to 64 characters of [A-Za-z0-9_-].") from exc
    return slug

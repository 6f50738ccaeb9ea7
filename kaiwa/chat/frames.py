"""The JSON frames of PROTOCOL.md section 3, encoded once with orjson.

A message is serialised once per broadcast (``message_frame``) and the same
``str`` is written to every socket, over REST and WebSocket alike.
"""

from datetime import UTC, datetime
from typing import Any

import orjson

from .models import Message


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, e.g. ``2026-11-21T12:00:00.123456Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_payload(message: Message, room_slug: str | None = None) -> dict[str, Any]:
    """The message object of PROTOCOL.md: room, seq, id, message, username,
    created_at, and client_id when the author gave one."""
    payload: dict[str, Any] = {
        "type": "message",
        "room": room_slug or message.room.slug,
        "seq": message.seq,
        "id": str(message.pk),
        "message": message.text,
        "username": message.username,
        "created_at": timestamp(message.created_at),
    }
    if message.client_id:
        payload["client_id"] = message.client_id
    return payload


def encode(payload: dict[str, Any]) -> str:
    """One JSON text frame (UTF-8, no spaces)."""
    return orjson.dumps(payload).decode()


def message_frame(message: Message, room_slug: str | None = None) -> str:
    """The ``message`` frame of ``message``, encoded."""
    return encode(message_payload(message, room_slug))


def error_frame(code: str, detail: str) -> str:
    """An ``error`` frame: ``code`` from PROTOCOL.md section 3, human ``detail``."""
    return encode({"type": "error", "code": code, "detail": detail})


PONG_FRAME = encode({"type": "pong"})

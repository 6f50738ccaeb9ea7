"""The JSON frames of PROTOCOL.md section 3, encoded once with orjson.

A message is serialised once per broadcast (``message_frame``) and the same
``str`` is written to every socket, over REST and WebSocket alike.
"""

from datetime import UTC, datetime
from typing import Any

import orjson

from kaiwa.chat.models import Message, RoomEvent


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, e.g. ``2026-11-21T12:00:00.123456Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_payload(
    message: Message,
    room_slug: str | None = None,
    reactions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The message object of PROTOCOL.md section 3 in the message's current
    state: room, seq, id, message, username, created_at, client_id (when the
    author gave one), html, edited_at (null until edited), reactions
    (``reaction_summaries``; empty when live) and, on a deleted message,
    ``deleted: true`` with ``message`` and ``html`` empty (and ``edited_at``
    null: a tombstone tells nothing but its deletion)."""
    payload: dict[str, Any] = {
        "type": "message",
        "room": room_slug or message.room.slug,
        "seq": message.seq,
        "id": str(message.pk),
        "message": message.text,
        "username": message.username,
        "created_at": timestamp(message.created_at),
        "html": message.html,
        "edited_at": timestamp(message.edited_at) if message.edited_at else None,
        "reactions": reactions or [],
    }
    if message.client_id:
        payload["client_id"] = message.client_id
    if message.deleted_at is not None:
        payload.update(message="", html="", edited_at=None, deleted=True, reactions=[])
    return payload


def reaction_summaries(rows: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """``[{"emoji", "count", "usernames"}]`` from ``(emoji, username)`` rows in
    the order reactions were made (an emoji listed at its first reaction)."""
    by_emoji: dict[str, list[str]] = {}
    for emoji, username in rows:
        by_emoji.setdefault(emoji, []).append(username)
    return [{"emoji": e, "count": len(u), "usernames": u} for e, u in by_emoji.items()]


def event_payload(event: RoomEvent, room_slug: str, message_pk: int) -> dict[str, Any]:
    """The frame of a stored ``edit``, ``delete`` or ``reaction`` event, as
    stored (PROTOCOL.md section 3)."""
    payload: dict[str, Any] = {
        "type": event.kind,
        "room": room_slug,
        "seq": event.seq,
        "id": str(message_pk),
    }
    data = event.data
    if event.kind == RoomEvent.EDIT:
        payload.update(
            message=data.get("message", ""),
            html=data.get("html", ""),
            username=event.username,
            edited_at=data.get("edited_at"),
        )
    elif event.kind == RoomEvent.REACTION:
        payload.update(emoji=data["emoji"], username=event.username, on=data["on"])
    return payload


def event_frame(event: RoomEvent, room_slug: str, message_pk: int) -> str:
    """``event_payload``, encoded."""
    return encode(event_payload(event, room_slug, message_pk))


def encode(payload: dict[str, Any]) -> str:
    """One JSON text frame (UTF-8, no spaces)."""
    return orjson.dumps(payload).decode()


def message_frame(message: Message, room_slug: str | None = None) -> str:
    """The ``message`` frame of ``message``, encoded."""
    return encode(message_payload(message, room_slug))


def error_frame(code: str, detail: str, client_id: str | None = None) -> str:
    """An ``error`` frame: ``code`` from PROTOCOL.md section 3, human
    ``detail``, and the ``client_id`` of the ``message`` frame it answers."""
    payload = {"type": "error", "code": code, "detail": detail}
    if client_id is not None:
        payload["client_id"] = client_id
    return encode(payload)


PONG_FRAME = encode({"type": "pong"})

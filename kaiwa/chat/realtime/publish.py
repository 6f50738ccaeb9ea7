"""The bridge from the domain (services, receivers, retention: sync code,
most of it on database threads) into the fan-out: the one real-time module
the domain imports (tests/test_layering.py).

Each ``publish_*`` is called from ``transaction.on_commit`` (only committed
room events are published) and returns at once: it schedules the hub's call
on the hub's loop, or, in a process with no hub (a management command, a
Celery worker), sends the event through the channel layer itself."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from kaiwa import metrics
from kaiwa.chat import frames
from kaiwa.chat.models import Message
from kaiwa.chat.realtime.hub import Hub, running_hub
from kaiwa.chat.realtime.layer import (
    ROOM_FORGET,
    ROOM_MESSAGE,
    ROOM_PURGE,
    ROOM_REVALIDATE,
    SESSION_REVOKE,
    USER_EVENT,
    USER_REVALIDATE,
    USERS_GROUP,
    channel_layer,
    room_group,
)
from kaiwa.chat.realtime.relay import relay_write

logger = logging.getLogger(__name__)


def _publish(hub_call: Callable[[Hub], None], group: str, event: dict[str, Any]) -> None:
    """Run ``hub_call`` on the hub's loop (thread-safe, not waiting), or, with no
    hub in this process (a management command, a Celery worker, a test's sync
    client), send ``event`` to ``group`` through the channel layer directly."""
    hub = running_hub()
    if hub is not None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is hub.loop:
            hub_call(hub)
        else:
            # A fresh context: the caller's (a database thread's) would make the
            # hub's tasks look nested inside asgiref's single-thread executor.
            hub.loop.call_soon_threadsafe(hub_call, hub, context=contextvars.Context())
        return
    layer = channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        # This process shares no layer with the server: relay through the database.
        if event.get("type") in RELAYED:
            try:
                relay_write(event=event)
            except Exception:
                logger.exception("relaying %s failed", event.get("type"))
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:
        logger.exception("group_send to %s failed", group)


# What a process without a shared layer relays (kaiwa.chat.realtime.relay): access
# changes and forgotten rows. Messages need not be: the seq check finds them.
RELAYED = frozenset({ROOM_FORGET, ROOM_PURGE, ROOM_REVALIDATE, USER_REVALIDATE, SESSION_REVOKE})


def publish_message(message: Message, room_slug: str) -> None:
    """Broadcast a committed message to its room (called from ``on_commit``)."""
    frame = frames.message_frame(message, room_slug)
    seq = message.seq
    metrics.MESSAGES_STORED.inc()
    metrics.ROOM_EVENTS_STORED.labels("message").inc()
    _publish(
        lambda hub: hub.publish_room(room_slug, seq, frame),
        room_group(room_slug),
        {"type": ROOM_MESSAGE, "room": room_slug, "seq": seq, "frame": frame},
    )


def publish_frame(room_slug: str, seq: int, frame: str) -> None:
    """Broadcast a committed room event (``edit``, ``delete``, ``reaction``)
    of sequence number ``seq`` to its room (called from ``on_commit``)."""
    metrics.ROOM_EVENTS_STORED.labels(metrics.frame_type(frame)).inc()
    _publish(
        lambda hub: hub.publish_room(room_slug, seq, frame),
        room_group(room_slug),
        {"type": ROOM_MESSAGE, "room": room_slug, "seq": seq, "frame": frame},
    )


def publish_purge(room_slug: str, seq: int) -> None:
    """Tell every process that retention deleted the room events of
    ``room_slug`` up to ``seq`` (call on commit), so that no feed serves
    them from memory."""
    event = {"type": ROOM_PURGE, "room": room_slug, "seq": seq}
    _publish(lambda hub: hub.publish_forget(event), room_group(room_slug), event)


def publish_forget(room_slug: str, seq: int) -> None:
    """Tell every process that message ``seq`` of ``room_slug`` is no longer
    stored (its row was deleted), so that no feed serves it from memory."""
    event = {"type": ROOM_FORGET, "room": room_slug, "seq": seq}
    _publish(lambda hub: hub.publish_forget(event), room_group(room_slug), event)


def _publish_control(group: str, event: dict[str, Any]) -> None:
    _publish(lambda hub: hub.publish_control(group, event), group, event)


def publish_room_revalidate(room_slug: str, user_id: int | None = None) -> None:
    """Make the sockets in ``room_slug`` (only ``user_id``'s, when given), in
    every process, re-check their access (call on commit)."""
    event = {"type": ROOM_REVALIDATE, "room": room_slug, "user": user_id}
    _publish_control(room_group(room_slug), event)


def publish_user_revalidate(user_id: int) -> None:
    """Make every socket of ``user_id``, in every process, re-check its access."""
    _publish_control(USERS_GROUP, {"type": USER_REVALIDATE, "user": user_id})


def publish_session_revoke(user_id: int, session_key: str) -> None:
    """Close (4401) every socket of ``user_id`` signed in with session ``session_key``."""
    event = {"type": SESSION_REVOKE, "user": user_id, "session": session_key}
    _publish_control(USERS_GROUP, event)


def publish_read(user_id: int, room_slug: str, seq: int, origin: str | None = None) -> None:
    """Tell the sockets of ``user_id`` but ``origin`` (a socket_id) that the user's
    read position in ``room_slug`` is now ``seq``."""
    frame = frames.encode({"type": "read", "room": room_slug, "seq": seq})
    event = {"type": USER_EVENT, "user": user_id, "frame": frame, "origin": origin}
    _publish(lambda hub: hub.publish_user(event), USERS_GROUP, event)

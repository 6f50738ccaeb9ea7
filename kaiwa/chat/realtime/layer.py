"""What crosses the channel layer between processes: the message types,
the groups they go to, and the layer itself."""

from __future__ import annotations

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

ROOM_MESSAGE = "room.message"
ROOM_FORGET = "room.forget"
ROOM_PURGE = "room.purge"
# Frames for a room's sockets that are never stored and carry no seq
# (``typing``, ``presence``): {"room", "frames" (a list: one channel-layer
# message carries all of a moment's frames for a room), "user" (the sender's
# id, whose own sockets skip them; None: every socket), "process"}.
ROOM_TRANSIENT = "room.transient"
# Access may have changed: the sockets concerned re-run their admission
# (``ChatConsumer.revalidate``) and close with 4401, 4403 or 4404 if it fails.
# {"room": slug, "user": id or None} to a room's group; {"user": id} to USERS_GROUP.
ROOM_REVALIDATE = "room.revalidate"
USER_REVALIDATE = "user.revalidate"
# A session ended (logout): {"user": id, "session": key}; its sockets close with 4401.
SESSION_REVOKE = "session.revoke"

USER_EVENT = "user.event"
USER_EVENTS = "user.events"  # a batch: {"events": [USER_EVENT, ...], "process": id}
# User events bound for other processes wait this long (seconds) to travel in
# one channel-layer message: a room of readers sends hundreds of `read` frames
# a second, and one Redis PUBLISH each would cost more than the reads.
USER_EVENTS_BATCH_SECONDS = 0.02


def room_group(slug: str) -> str:
    """The channel-layer group of a room's feeds: ``room.<slug>``."""
    return f"room.{slug}"


def channel_layer() -> BaseChannelLayer:
    """The default channel layer (CHANNEL_LAYERS: Kaiwa's settings always name
    one); raises ImproperlyConfigured without it."""
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer.")
    return layer


# One channel-layer group carries every user event (``read``) to every process,
# each delivering it to its own sockets of that user. A group per user would
# cost a Redis SUBSCRIBE (and its confirmation) per user per process, which
# dominated a connect storm; one group costs one subscription per process, and
# each process parses the few user events that are not for its sockets.
USERS_GROUP = "users"
SNAPSHOT_BATCH_MAX = 1000  # feed snapshots per call on the read pool

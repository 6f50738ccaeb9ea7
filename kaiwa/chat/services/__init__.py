"""Writes of the chat app (HackSoft's services), one module per sub-domain:

- ``rooms``: joining, creating rooms, memberships, direct messages;
- ``messages``: posts;
- ``room_events``: edits, deletions, reactions;
- ``read_positions``: read positions.

Each service runs under ``transaction.atomic`` and queues its broadcast with
``transaction.on_commit`` through ``kaiwa.chat.realtime.publish``, so nothing
is broadcast that is not stored. Callers use the names re-exported here
(``services.message_create``)."""

from kaiwa.chat.services.messages import (
    Post,
    message_create,
    message_create_batch,
    message_html_render,
    posts_refused,
)
from kaiwa.chat.services.read_positions import (
    READ_BATCH_ROWS,
    membership_read,
    membership_read_batch,
)
from kaiwa.chat.services.room_events import (
    EventRequest,
    message_delete,
    message_edit,
    reaction_set,
    room_event_batch,
)
from kaiwa.chat.services.rooms import (
    Creator,
    RoomRequest,
    dm_open,
    membership_create_batch,
    room_create_batch,
    room_join,
)

__all__ = [
    "READ_BATCH_ROWS",
    "Creator",
    "EventRequest",
    "Post",
    "RoomRequest",
    "dm_open",
    "membership_create_batch",
    "membership_read",
    "membership_read_batch",
    "message_create",
    "message_create_batch",
    "message_delete",
    "message_edit",
    "message_html_render",
    "posts_refused",
    "reaction_set",
    "room_create_batch",
    "room_event_batch",
    "room_join",
]

"""Retention: old room events deleted in batches, ``seq`` still gapless.

A room keeps its messages ``Room.retention_days`` days, or
KAIWA_RETENTION_DAYS when that is empty (0 in either: forever). The sweep
(``tasks.retention_sweep``, from the beat of ``kaiwa worker``, or ``kaiwa
manage retention_apply``) moves each room's purge point ``Room.purged_seq``
up to ``S``, the highest seq of its room events older than the cutoff, in
batches of KAIWA_RETENTION_BATCH seqs, one transaction each:

1. the room's row is locked (``SELECT ... FOR UPDATE``), as every writer of
   room events locks it, so that no edit or reaction of a message being
   deleted can commit meanwhile;
2. the room events (edits, deletions, reactions) with seq in the batch are
   deleted, and every message with seq <= the batch's top whose room events
   are all at or below it, with its reactions and versions, in SQL over the
   seq range (no row loaded; its pending missed-message rows are let go as
   their foreign key says, SET_NULL, and the email re-check skips them as
   deleted);
3. ``purged_seq`` becomes the batch's top, and on commit every process's
   room feed drops what it remembers at or below it (``publish.publish_purge``;
   the hub's seq check applies it too, should the event be lost).

So every seq above ``purged_seq`` is still stored, and a resume with
``after`` at or above it replays exactly as before; a resume from below it
gets ``reset`` (``selectors.message_backlog``): what it missed is gone. A
message with an edit or reaction newer than the cutoff stays (below
``purged_seq``, listed over REST) until that event ages out too, since
deleting it would delete the newer event and leave a hole in ``seq``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet

from kaiwa.chat.models import Message, Room, RoomEvent
from kaiwa.chat.realtime import publish

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    """What one room's retention did: ``purged_seq`` now, and how many rows
    of messages and of other room events were deleted."""

    room: str
    purged_seq: int
    messages: int
    events: int


def room_retention_days(*, room: Room) -> int:
    """Days ``room`` keeps its messages: its own ``retention_days``, else
    KAIWA_RETENTION_DAYS; 0 means forever."""
    if room.retention_days is not None:
        return room.retention_days
    return settings.KAIWA_RETENTION_DAYS


def rooms_with_retention() -> list[Room]:
    """The rooms that retention applies to (a positive number of days, their
    own or the global one), by id."""
    rooms = Room.objects.filter(retention_days__gt=0)
    if settings.KAIWA_RETENTION_DAYS > 0:
        rooms = Room.objects.filter(Q(retention_days__isnull=True) | Q(retention_days__gt=0))
    return list(rooms.order_by("pk"))


def purge_point(*, room: Room, cutoff: datetime) -> int:
    """The highest seq of ``room``'s room events (messages or other) created
    before ``cutoff``, and at least its ``purged_seq``. Two indexed queries."""
    above = {"room_id": room.pk, "seq__gt": room.purged_seq, "created_at__lt": cutoff}
    messages = Message.objects.filter(**above).aggregate(top=Max("seq"))["top"]
    events = RoomEvent.objects.filter(**above).aggregate(top=Max("seq"))["top"]
    return max(room.purged_seq, messages or 0, events or 0)


def room_retention_apply(*, room: Room, now: datetime, batch_size: int | None = None) -> Purged:
    """Apply retention to ``room`` as of ``now`` (an aware datetime): delete
    its room events older than its retention, in transactions of at most
    ``batch_size`` seqs (default KAIWA_RETENTION_BATCH). Returns what it did;
    nothing when the room keeps its messages forever. Raises the database's
    errors (a batch already committed stays done: the next sweep goes on)."""
    days = room_retention_days(room=room)
    if days <= 0:
        return Purged(room.slug, room.purged_seq, 0, 0)
    top = purge_point(room=room, cutoff=now - timedelta(days=days))
    size = batch_size or settings.KAIWA_RETENTION_BATCH
    messages = events = 0
    purged = room.purged_seq
    while purged < top:
        purged, deleted_messages, deleted_events = _batch_delete(room.pk, top, size)
        messages += deleted_messages
        events += deleted_events
    if messages or events:
        logger.info(
            "retention: room %s purged to seq %d (%d messages, %d other room events)",
            room.slug,
            purged,
            messages,
            events,
        )
    return Purged(room.slug, purged, messages, events)


def _batch_delete(room_id: int, top: int, size: int) -> tuple[int, int, int]:
    """One batch of ``room_retention_apply``: returns (purged_seq now, messages
    deleted, other room events deleted). About eight statements, each over
    the batch's seq range: no row is loaded into Python."""
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room_id)
        high = min(top, room.purged_seq + size)
        events = RoomEvent.objects.filter(room_id=room_id, seq__gt=room.purged_seq, seq__lte=high)
        deleted_events = events._raw_delete(events.db)
        newer = RoomEvent.objects.filter(message=OuterRef("pk"), seq__gt=high)
        doomed = Message.objects.filter(room_id=room_id, seq__lte=high).exclude(Exists(newer))
        _dependents_release(doomed)
        # Rows deleted in SQL send no pre_delete: the feeds are told once, on commit.
        deleted_messages = doomed._raw_delete(doomed.db)
        Room.objects.filter(pk=room_id).update(purged_seq=high)
        transaction.on_commit(partial(publish.publish_purge, room.slug, high))
    return high, deleted_messages, deleted_events


def _dependents_release(messages: QuerySet[Message]) -> None:
    """What ``messages.delete()`` would do to the rows that point at them,
    in one statement per relation and without loading them: CASCADE ones
    (reactions, versions, room events) deleted, SET_NULL ones (another app's,
    such as pending missed-message rows, whose relation is hidden) let go.
    Raises ImproperlyConfigured for any other ``on_delete``, which retention
    does not honour. The relations are those Django's own deletion collector
    walks (``get_fields(include_hidden=True)``, reverse one-to-many ones)."""
    relations = [
        f
        for f in Message._meta.get_fields(include_hidden=True)
        if f.auto_created and not f.concrete and (f.one_to_many or f.one_to_one)
    ]
    for relation in relations:
        field = relation.field  # type: ignore[union-attr]
        model: type[models.Model] = relation.related_model  # type: ignore[assignment]
        pointing = model._base_manager.filter(**{f"{field.name}__in": messages})
        if field.remote_field.on_delete is models.CASCADE:
            pointing._raw_delete(pointing.db)
        elif field.remote_field.on_delete is models.SET_NULL:
            pointing.update(**{field.name: None})
        else:
            raise ImproperlyConfigured(f"retention cannot delete messages under {relation}")


def retention_apply(*, now: datetime) -> list[Purged]:
    """``room_retention_apply`` for every room with retention
    (``rooms_with_retention``); returns what it did in the rooms where it
    deleted anything."""
    done = [room_retention_apply(room=room, now=now) for room in rooms_with_retention()]
    return [purged for purged in done if purged.messages or purged.events]

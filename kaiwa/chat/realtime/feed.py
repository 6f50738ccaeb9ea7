"""The ordered feed of one room in one process (``RoomFeed``), and the
sockets it feeds (``Subscriber``): how a stored room event reaches every
socket of its room, in ``seq`` order, with no gap and no duplicate.

One ``Hub`` per process (per event loop) holds one ``RoomFeed`` per room that
has local sockets, and one channel-layer channel for the whole process. The
hub joins the channel-layer group ``room.<slug>`` once per room, not once per
socket (as Phoenix PubSub's fastlane and channels_redis's pub/sub layer do),
so a broadcast costs one channel-layer message per process, one JSON encode
per message, and one in-place write per local socket (no task switch per
recipient; see ``Outbox``). With the in-memory layer (one process) the hub
skips the channel layer altogether.

Invariants (PROTOCOL.md section 4):

1. Only committed messages enter a feed: services call ``publish_message``
   from ``transaction.on_commit``; gap filling reads committed rows.
2. Order, no gap, no duplicate: a feed delivers ``seq`` exactly in order.
   A ``seq`` at or below the feed's high-water mark is a duplicate (our own
   publish echoed back by the channel layer, or a refill) and is dropped. A
   ``seq`` above the next one waits in ``pending``; when the gap is not
   closed within KAIWA_GAP_GRACE_SECONDS, the feed reads the missing rows
   from the database (the publishing process may have died between commit and
   publish, or the channel layer dropped the message) and delivers them first.
   A lost *last* broadcast, with nothing after it, is found by the hub's
   watcher, which compares every feed with its room's ``last_seq`` every
   KAIWA_SEQ_CHECK_SECONDS (one query per process, not per room).
3. Bounded memory: each socket's ``Outbox`` holds at most
   KAIWA_OUTBOUND_MAX_MESSAGES frames and KAIWA_OUTBOUND_MAX_BYTES bytes;
   on overflow the socket is closed with 4408 and resumes with ``after=``.
   Each feed keeps its last KAIWA_FEED_MEMORY_MESSAGES frames.
4. Backlogs from memory: a feed's ``recent`` frames are exactly the room's
   stored room events with seq in (``floor``, ``hwm``], in order, each
   message in its current state (loaded with the feed's starting seq in one
   database call, then appended as delivered; an ``edit``, ``delete`` or
   ``reaction`` event updates the frame of its message in memory as the
   database row was updated, and a deletion empties the text of the
   message's earlier ``edit`` frames too; a row deleted from the database
   outside the services is dropped from every process's feed by
   ``publish_forget``, and what retention deleted by ``publish_purge``). A join or resume that this window answers costs no
   query (``RoomFeed.backlog``); any other falls back to the database.
5. Holes: a seq whose row is gone (deleted outside the services before
   tombstones existed, or since in a shell) is skipped by gap filling once
   a later seq is known to be committed, instead of being waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Protocol

import orjson
from django.conf import settings

from kaiwa import metrics
from kaiwa.chat import frames
from kaiwa.chat.realtime import executors
from kaiwa.chat.selectors import room_event_range, room_member_count

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    """A socket fed by the hub (the chat consumer)."""

    def deliver(self, seq: int, frame: str) -> None:
        """Take the room frame ``frame`` of sequence number ``seq``; must not block."""

    socket_id: str
    room_slug: str
    user_id: int | None  # None for a guest
    session_key: str | None

    async def revalidate(self) -> None:
        """Re-check the socket's access; close it if it has none any more."""

    async def revoke(self, code: int) -> None:
        """Close the socket with ``code`` (its credentials are no longer valid)."""

    def deliver_event(self, frame: str) -> None:
        """Take a frame addressed to the socket's user (e.g. ``read``)."""


class Remembered:
    """One room event in a feed's memory: its seq, its frame, and for a
    message its id and whether it is live (not deleted)."""

    __slots__ = ("frame", "kind", "live", "message_id", "seq")

    def __init__(self, seq: int, frame: str) -> None:
        data = orjson.loads(frame)
        self.seq = seq
        self.frame = frame
        self.kind: str = data.get("type", "")
        self.message_id: str | None = data.get("id")
        self.live = self.kind == "message" and not data.get("deleted")


def frame_patched(frame: str, event: dict[str, Any]) -> str:
    """The frame ``frame`` (a ``message`` or an ``edit``) after the room event
    ``event`` on its message: the message's current state as the services
    stored it (edited text, deletion, reactions)."""
    data = orjson.loads(frame)
    kind = event["type"]
    if kind == "delete":
        data.update(message="", html="", edited_at=None)
        if data["type"] == "message":
            data.update(deleted=True, reactions=[])
    elif kind == "edit" and data["type"] == "message":
        data.update(message=event["message"], html=event["html"], edited_at=event["edited_at"])
    elif kind == "reaction" and data["type"] == "message":
        data["reactions"] = reactions_patched(data.get("reactions", []), event)
    return frames.encode(data)


def reactions_patched(
    reactions: list[dict[str, Any]], event: dict[str, Any]
) -> list[dict[str, Any]]:
    """A message's ``reactions`` after the ``reaction`` event ``event``."""
    emoji, username = event["emoji"], event["username"]
    result = [dict(r, usernames=list(r["usernames"])) for r in reactions]
    entry = next((r for r in result if r["emoji"] == emoji), None)
    if event["on"]:
        if entry is None:
            result.append({"emoji": emoji, "count": 1, "usernames": [username]})
        elif username not in entry["usernames"]:
            entry["usernames"].append(username)
            entry["count"] = len(entry["usernames"])
    elif entry is not None and username in entry["usernames"]:
        entry["usernames"].remove(username)
        entry["count"] = len(entry["usernames"])
        if not entry["usernames"]:
            result.remove(entry)
    return result


class RoomFeed:
    """The in-order stream of one room's events inside one process."""

    def __init__(self, slug: str) -> None:
        self.slug = slug
        self.subscribers: set[Subscriber] = set()
        self.hwm: int | None = None  # highest seq delivered; None until initialised
        # seq -> frame, or None for a hole (a committed seq whose row is gone)
        self.pending: dict[int, str | None] = {}
        self.known_seq = 0  # highest seq known to be committed (from the database)
        self.ready = asyncio.Event()
        self._gap_task: asyncio.Task[None] | None = None
        # Invariant 4: every stored room event with floor < seq <= hwm, in order.
        self.recent: deque[Remembered] = deque()
        self.recent_max = settings.KAIWA_FEED_MEMORY_MESSAGES
        self.floor = 0
        # The room's member count as last read (members_within), and until when.
        self._members: tuple[int, float] | None = None
        self._members_read: asyncio.Future[int] | None = None

    async def members_within(self, room_id: int, max_age: float) -> int:
        """How many members room ``room_id`` (this feed's) has, read from the
        database at most once per ``max_age`` seconds by this process: the
        sockets of a room share one count (``typing`` asks it of rooms of
        any size), and callers that come while it is read share that read.
        Raises the database error."""
        now = time.monotonic()
        if self._members is not None and now < self._members[1]:
            return self._members[0]
        if self._members_read is None:
            self._members_read = asyncio.ensure_future(
                executors.run_read(room_member_count, room_id=room_id)
            )
            self._members_read.add_done_callback(lambda _: setattr(self, "_members_read", None))
        count = await asyncio.shield(self._members_read)
        self._members = (count, time.monotonic() + max_age)
        return count

    def start(self, hwm: int, recent: list[tuple[int, str]] | None = None, purged: int = 0) -> None:
        """Open the feed at the room's current ``seq`` and flush what arrived meanwhile.

        ``recent``: every room event with seq in (max(``purged``, ``hwm`` -
        KAIWA_FEED_MEMORY_MESSAGES), ``hwm``] as ``(seq, frame)``, ascending
        (``selectors.room_snapshots``); None when unknown. ``purged``: the
        room's ``purged_seq`` (retention), below which memory answers nothing.
        """
        self.hwm = hwm
        if recent is None or not self.recent_max:
            self.floor = hwm
        else:
            self.floor = max(0, purged, hwm - self.recent_max)
            self.recent.extend(Remembered(seq, f) for seq, f in recent if seq > self.floor)
        self.ready.set()
        self._advance()

    def _remember(self, seq: int, frame: str) -> None:
        if not self.recent_max:
            self.floor = seq
            return
        entry = Remembered(seq, frame)
        if entry.kind in ("edit", "delete", "reaction"):
            self._apply(entry)
        while self.recent and self.recent[0].seq <= seq - self.recent_max:
            self.floor = self.recent.popleft().seq
        if len(self.recent) >= self.recent_max:
            self.floor = self.recent.popleft().seq
        self.recent.append(entry)

    def _apply(self, entry: Remembered) -> None:
        """Update the remembered frames of ``entry``'s message (invariant 4)."""
        event = orjson.loads(entry.frame)
        for kept in self.recent:
            if kept.message_id != entry.message_id:
                continue
            if kept.kind == "message" or (kept.kind == "edit" and event["type"] == "delete"):
                kept.frame = frame_patched(kept.frame, event)
                if event["type"] == "delete":
                    kept.live = False

    def purge(self, seq: int) -> None:
        """Drop every remembered room event with seq <= ``seq`` (retention
        deleted them, kaiwa.chat.retention): a resume from below answers from
        the database, which says ``reset``."""
        if seq <= self.floor:
            return
        self.floor = seq
        while self.recent and self.recent[0].seq <= seq:
            self.recent.popleft()

    def forget(self, seq: int) -> None:
        """Drop room event ``seq`` from ``recent`` (its row was deleted)."""
        if any(e.seq == seq for e in self.recent):
            self.recent = deque(e for e in self.recent if e.seq != seq)

    def backlog(
        self, after: int | None, count: int, resume_limit: int
    ) -> tuple[list[str], int | None, int] | None:
        """What a socket joining now is sent before ``ready``, from memory.

        Mirrors ``selectors.message_backlog`` at seq ``hwm``: without
        ``after``, the last ``count`` live messages; with it, every room
        event after ``after``, or a reset when more than ``resume_limit``
        are missing. Returns ``(frames, reset_seq, latest_seq)``, or None
        when memory cannot answer (the caller reads the database).
        """
        if self.hwm is None:
            return None
        latest = self.hwm
        if after is None:
            live = [e.frame for e in self.recent if e.live]
            if len(live) < count and self.floor > 0:
                return None
            return (live[-count:] if count else []), None, latest
        if after > latest:
            return None  # maybe committed, not yet here: the database knows
        if latest - after > resume_limit:
            return [], latest, latest
        if after < self.floor:
            return None
        return [e.frame for e in self.recent if e.seq > after], None, latest

    def offer(self, seq: int, frame: str | None) -> None:
        """Take room event ``seq`` (None: a hole) from any source; delivers in
        seq order (invariant 2)."""
        if self.hwm is not None and seq <= self.hwm:
            return
        self.pending[seq] = frame
        if self.hwm is not None:
            self._advance()

    def catch_up(self, latest: int) -> None:
        """The database says the room is at ``latest``: fetch what never arrived
        (the last broadcast was lost and nothing came after it)."""
        self.known_seq = max(self.known_seq, latest)
        if self.hwm is not None and latest > self.hwm:
            self._fill_later()

    def _advance(self) -> None:
        assert self.hwm is not None
        pending = self.pending
        while self.hwm + 1 in pending:
            self.hwm += 1
            frame = pending.pop(self.hwm)
            if frame is None:  # a hole: nothing to deliver (invariant 5)
                continue
            self._remember(self.hwm, frame)
            subscribers = tuple(self.subscribers)
            for subscriber in subscribers:
                subscriber.deliver(self.hwm, frame)
            if subscribers:
                metrics.DELIVERIES.inc(len(subscribers))
                metrics.sent(frame, len(subscribers))
        for stale in [s for s in pending if s <= self.hwm]:
            del pending[stale]
        if pending:
            self._fill_later()

    def _missing_before(self) -> int | None:
        """The seq bounding the next gap (exclusive), or None when there is none."""
        assert self.hwm is not None
        if self.pending:
            return min(self.pending) if min(self.pending) > self.hwm + 1 else None
        return self.known_seq + 1 if self.known_seq > self.hwm else None

    def _fill_later(self) -> None:
        if self._gap_task is None:
            self._gap_task = asyncio.get_running_loop().create_task(self._fill_gap())

    async def _fill_gap(self) -> None:

        try:
            # The missing broadcast is usually just late: give it a moment.
            await asyncio.sleep(settings.KAIWA_GAP_GRACE_SECONDS)
            while self.hwm is not None and (before := self._missing_before()) is not None:
                try:
                    rows = await executors.run_read(
                        room_event_range, room_slug=self.slug, after=self.hwm, before=before
                    )
                except Exception:
                    logger.exception("gap fill of room %s failed; retrying", self.slug)
                    await asyncio.sleep(1.0)
                    continue
                metrics.GAP_FILLS.inc()
                logger.warning(
                    "room %s: filled seq %d..%d from the database",
                    self.slug,
                    self.hwm + 1,
                    before - 1,
                )
                for seq, frame in rows:
                    self.pending.setdefault(seq, frame)
                # Every seq below `before` is committed (a later one is): one
                # with no row is a hole, not a broadcast still on its way.
                for seq in range(self.hwm + 1, before):
                    self.pending.setdefault(seq, None)
                self._gap_task = None
                self._advance()
                return
        finally:
            if self._gap_task is asyncio.current_task():
                self._gap_task = None

    def close(self) -> None:
        if self._gap_task is not None:
            self._gap_task.cancel()

"""The fan-out hub: how a stored message reaches every socket of its room.

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
import contextvars
import logging
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import orjson
from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from kaiwa import metrics

from . import db, frames, loops
from .models import Message
from .relay import relay_latest_id, relay_read, relay_write
from .selectors import room_event_range, room_last_seqs, room_member_count, room_snapshots

logger = logging.getLogger(__name__)

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
# Scope key of the server's own ASGI send: fan-out frames skip the middleware
# wrappers (Channels' session middleware inspects every message it forwards).
RAW_SEND_KEY = "kaiwa.raw_send"


def RawSendMiddleware(application: Any) -> Any:  # an ASGI middleware factory, named as one
    """Keep the server's ``send`` in the scope under RAW_SEND_KEY."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await application({**scope, RAW_SEND_KEY: send}, receive, send)

    return middleware


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


class OutboxOverflow(Exception):
    """The socket's outbound buffer is full: the client is too slow (close 4408)."""


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
    """Drive ``coro``, which suspended on ``yielded``, to its end as an
    asyncio Task would (Task.__step), through public calls only: wait for
    the future it yielded, then resume it with ``send``. Python 3.12's
    ``asyncio.eager_task_factory`` does the same for a whole task; on 3.12
    ``Outbox._write`` may become ``eager_start=True`` tasks."""
    while True:
        if isinstance(yielded, asyncio.Future):
            await asyncio.wait({yielded})
        else:  # a bare yield, as in asyncio.sleep(0)
            await asyncio.sleep(0)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class Outbox:
    """A socket's writer: writes each frame at once, queues while a write waits.

    ``send`` is the socket's ASGI send callable. A write normally completes
    without suspending (the transport is writable), so ``put`` runs it in the
    caller: no task and no task switch per recipient. Only when the transport
    pushes back (the client reads slowly) does a task take over; frames put
    meanwhile wait in a queue bounded by ``limit_messages`` (frames) and
    ``limit_bytes`` (characters, an upper bound on what is held), beyond which
    ``put`` raises OutboxOverflow.
    """

    __slots__ = ("busy", "frames", "limit_bytes", "limit_messages", "send", "size")

    def __init__(
        self, send: Callable[[dict[str, Any]], Any], limit_messages: int, limit_bytes: int
    ) -> None:
        self.send = send
        self.frames: deque[str] = deque()
        self.size = 0
        self.limit_messages = limit_messages
        self.limit_bytes = limit_bytes
        self.busy: asyncio.Task[None] | None = None

    def put(self, frame: str) -> None:
        """Write ``frame`` now, or queue it behind a pending write."""
        if self.busy is None:
            self._write(frame)
            return
        if len(self.frames) >= self.limit_messages or self.size + len(frame) > self.limit_bytes:
            raise OutboxOverflow
        self.frames.append(frame)
        self.size += len(frame)

    def _write(self, frame: str) -> None:
        coro = self.send({"type": "websocket.send", "text": frame})
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 (the socket is gone; its disconnect event follows)
            return
        self.busy = asyncio.get_running_loop().create_task(self._drain(coro, yielded))

    async def _drain(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        try:
            await _finish(coro, yielded)
            while self.frames:
                frame = self.frames.popleft()
                self.size -= len(frame)
                await self.send({"type": "websocket.send", "text": frame})
        except Exception:
            logger.debug("socket write failed", exc_info=True)
        finally:
            self.busy = None

    def close(self) -> None:
        """Drop queued frames and stop a pending write."""
        self.frames.clear()
        self.size = 0
        if self.busy is not None:
            self.busy.cancel()


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
                db.run_read(room_member_count, room_id=room_id)
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
                    rows = await db.run_read(
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


class Hub:
    """One process's fan-out: room feeds, user sockets, one channel-layer channel.

    Create with ``get_hub()`` inside the server's event loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = channel_layer()
        # An in-process layer reaches no other process: skip the round trip.
        self.remote = not isinstance(self.layer, InMemoryChannelLayer)
        self.feeds: dict[str, RoomFeed] = {}
        self.user_sockets: dict[int, set[Subscriber]] = {}
        self.channel_name: str | None = None
        # One lock per group orders its group_add/group_discard and a feed's
        # opening; a lock lives while someone holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._users_joined = False
        self._user_events: list[dict[str, Any]] = []  # bound for other processes
        self._revalidator: asyncio.Task[None] | None = None
        # Feed snapshots asked for while one read runs: the next read's batch.
        self._snapshots = loops.Batcher(loop, self._read_snapshots, SNAPSHOT_BATCH_MAX)
        self.process_id = secrets.token_hex(8)  # tells our own batches apart

    def _lock(self, group: str) -> asyncio.Lock:
        lock = self._locks.get(group)
        if lock is None:
            lock = self._locks[group] = asyncio.Lock()
        return lock

    async def _channel(self) -> str:
        if self.channel_name is None:
            # Every layer takes a prefix (in-memory, channels_redis); the stubs'
            # abstract BaseChannelLayer.new_channel has none.
            self.channel_name = await self.layer.new_channel("kaiwa-hub.")  # type: ignore[call-arg]
            self._reader = self.loop.create_task(self._read())
        return self.channel_name

    async def _group_add(self, group: str) -> None:
        """Subscribe this process to ``group`` (a no-op on the in-memory layer,
        where ``publish_*`` deliver locally)."""
        if self._watcher is None:
            self._watcher = self.loop.create_task(self._watch())
        if self._revalidator is None and settings.KAIWA_REVALIDATE_SECONDS > 0:
            self._revalidator = self.loop.create_task(self.revalidate_all())
        if self.remote:
            await self.layer.group_add(group, await self._channel())

    async def _watch(self) -> None:
        """Every KAIWA_SEQ_CHECK_SECONDS, compare each feed with its room's seq
        in the database (one query for all rooms of this process), so that a
        lost last broadcast is filled even when no later message comes."""

        relayed = None if self.remote else await db.run_read(relay_latest_id)
        while True:
            await asyncio.sleep(settings.KAIWA_SEQ_CHECK_SECONDS)
            if relayed is not None:  # no shared layer: events from other processes
                relayed = await self._relayed(relayed)
            slugs = [slug for slug, feed in self.feeds.items() if feed.hwm is not None]
            if not slugs:
                continue
            try:
                latest = await db.run_read(room_last_seqs, slugs=slugs)
            except Exception:
                logger.exception("seq check failed; retrying")
                continue
            for slug, (seq, purged) in latest.items():
                feed = self.feeds.get(slug)
                if feed is not None:
                    feed.purge(purged)  # a lost purge event, too
                    feed.catch_up(seq)

    async def _relayed(self, after: int) -> int:
        """Apply the events other processes relayed through the database
        (kaiwa.chat.relay) since id ``after``; returns the newest id seen."""
        try:
            after, events = await db.run_write(relay_read, after=after)
        except Exception:
            logger.exception("reading relayed events failed; retrying")
            return after
        for event in events:
            self.dispatch(event)
        return after

    async def _read(self) -> None:
        assert self.channel_name is not None
        while True:
            try:
                event = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            self.dispatch(event)

    def dispatch(self, event: dict[str, Any]) -> None:
        """Route a channel-layer event to the local feed or user sockets."""
        if event.get("type") == ROOM_MESSAGE:
            feed = self.feeds.get(event["room"])
            if feed is not None:
                feed.offer(event["seq"], event["frame"])
        elif event.get("type") == ROOM_FORGET:
            feed = self.feeds.get(event["room"])
            if feed is not None:
                feed.forget(event["seq"])
        elif event.get("type") == ROOM_PURGE:
            feed = self.feeds.get(event["room"])
            if feed is not None:
                feed.purge(event["seq"])
        elif event.get("type") == ROOM_TRANSIENT:
            if event.get("process") != self.process_id:  # ours was delivered when sent
                self._deliver_transient(event)
        elif event.get("type") == USER_EVENT:
            self._deliver_user_event(event)
        elif event.get("type") in (ROOM_REVALIDATE, USER_REVALIDATE, SESSION_REVOKE):
            if event.get("process") != self.process_id:  # ours was applied when sent
                self._apply_control(event)
        elif event.get("type") == USER_EVENTS and event.get("process") != self.process_id:
            for one in event["events"]:
                self._deliver_user_event(one)

    def _apply_control(self, event: dict[str, Any]) -> None:
        """Revalidate or revoke the local sockets an access event concerns."""
        kind, user, room = event["type"], event.get("user"), event.get("room")
        sockets: list[Subscriber] = []
        if kind == ROOM_REVALIDATE:
            feed = self.feeds.get(room or "")
            sockets = [s for s in (feed.subscribers if feed else ()) if user in (None, s.user_id)]
        elif user is not None:
            sockets = list(self.user_sockets.get(user, ()))
        for socket in sockets:
            if kind == SESSION_REVOKE:
                if socket.session_key == event.get("session"):
                    self.spawn(socket.revoke(4401))
            else:
                self.spawn(socket.revalidate())

    def publish_control(self, group: str, event: dict[str, Any]) -> None:
        """Apply an access event to this process's sockets now, and send it to
        the others through ``group``."""
        self._apply_control(event)
        if self.remote:
            remote = {**event, "process": self.process_id}
            self.spawn(self._group_send(group, remote))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task kept referenced until it is done (``loops.spawn``)."""
        loops.spawn(coro)

    async def revalidate_all(self) -> None:
        """Every KAIWA_REVALIDATE_SECONDS, every local socket re-checks its
        session or token and room (defence in depth behind the events; the
        checks go through the admitter in batches of 500)."""
        while True:
            await asyncio.sleep(settings.KAIWA_REVALIDATE_SECONDS)
            for feed in list(self.feeds.values()):
                for socket in list(feed.subscribers):
                    self.spawn(socket.revalidate())

    def publish_transient(
        self,
        slug: str,
        frames: list[str],
        user_id: int | None,
        skip: list[int | None] | None = None,
    ) -> None:
        """Send ``frames`` (never stored, no seq: ``typing``, ``presence``) to
        the sockets of room ``slug`` in every process, in one channel-layer
        message, but to those of user ``user_id`` (None: to all). ``skip``,
        one entry per frame: the user whose sockets do not get that frame
        (None: all do), so that one message carries the news of several
        users, each left out of his own."""
        event: dict[str, Any] = {
            "type": ROOM_TRANSIENT,
            "room": slug,
            "frames": frames,
            "user": user_id,
            "process": self.process_id,
        }
        if skip is not None:
            event["skip"] = skip
        self._deliver_transient(event)
        if self.remote:
            self.spawn(self._group_send(room_group(slug), event))

    def _deliver_transient(self, event: dict[str, Any]) -> None:
        feed = self.feeds.get(event["room"])
        if feed is None:
            return
        sender = event.get("user")
        room_frames: list[str] = event["frames"]
        skip: list[int | None] = event.get("skip") or [None] * len(room_frames)
        counts = [0] * len(room_frames)
        for subscriber in tuple(feed.subscribers):
            if sender is not None and subscriber.user_id == sender:
                continue
            for n, (frame, skipped) in enumerate(zip(room_frames, skip, strict=True)):
                if skipped is None or subscriber.user_id != skipped:
                    counts[n] += 1
                    subscriber.deliver_event(frame)
        if any(counts):
            metrics.DELIVERIES.inc(sum(counts))
            for frame, count in zip(room_frames, counts, strict=True):
                if count:
                    metrics.sent(frame, count)

    def _deliver_user_event(self, event: dict[str, Any]) -> None:
        origin = event.get("origin")
        count = 0
        for subscriber in tuple(self.user_sockets.get(event["user"], ())):
            if subscriber.socket_id != origin:
                count += 1
                subscriber.deliver_event(event["frame"])
        if count:
            metrics.DELIVERIES.inc(count)
            metrics.sent(event["frame"], count)

    # --- membership -----------------------------------------------------------

    async def join_room(self, slug: str, subscriber: Subscriber) -> RoomFeed:
        """Add ``subscriber`` to the room's feed, opening the feed if needed.

        Returns the feed, already started: its next delivery is the seq after
        the room's latest committed one at the time it opened. Raises the
        database or channel-layer error when the feed cannot open. Opening a
        feed reads the room's seq and last KAIWA_FEED_MEMORY_MESSAGES room
        events on the read pool, in one call with the other feeds opening
        meanwhile (``_snapshot``); joining an open one costs nothing.
        """
        feed = self.feeds.get(slug)
        if feed is None:
            async with self._lock(room_group(slug)):
                feed = self.feeds.get(slug)
                if feed is None:
                    feed = RoomFeed(slug)
                    self.feeds[slug] = feed
                    try:
                        await self._group_add(room_group(slug))
                        # Subscribed first: nothing committed after this read is missed.
                        feed.start(*await self._snapshot(slug, feed.recent_max))
                    except BaseException:
                        del self.feeds[slug]
                        feed.close()
                        raise
        await feed.ready.wait()
        feed.subscribers.add(subscriber)
        return feed

    async def _snapshot(self, slug: str, limit: int) -> tuple[int, list[tuple[int, str]], int]:
        """``selectors.room_snapshots`` of one room, read in a batch with the
        snapshots that other feeds ask for while a read runs (as
        kaiwa.chat.joins batches joins): a storm opening 500 feeds costs a
        few calls on the read pool, not 500. Returns ``(latest seq, recent
        (seq, frame) ascending, purged_seq)``; raises RoomNotFound, or the
        database error of the batch."""
        result: tuple[int, list[tuple[int, str]], int] = await self._snapshots.ask((slug, limit))
        return result

    @staticmethod
    async def _read_snapshots(requests: list[tuple[str, int]]) -> list[Any]:
        return await db.run_read(room_snapshots, requests=requests)

    async def leave_room(self, slug: str, subscriber: Subscriber) -> None:
        """Remove ``subscriber``; the last one out closes the feed and leaves the group."""
        feed = self.feeds.get(slug)
        if feed is None:
            return
        feed.subscribers.discard(subscriber)
        if feed.subscribers:
            return
        async with self._lock(room_group(slug)):
            if feed.subscribers or self.feeds.get(slug) is not feed:
                return
            del self.feeds[slug]
            feed.close()
            await self._group_discard(room_group(slug))

    async def join_user(self, user_id: int, subscriber: Subscriber) -> None:
        """Route frames for user ``user_id`` (e.g. ``read``) to ``subscriber``.

        The first call subscribes this process to USERS_GROUP (once, for good).
        """
        if not self._users_joined:
            async with self._lock(USERS_GROUP):
                if not self._users_joined:
                    await self._group_add(USERS_GROUP)
                    self._users_joined = True
        self.user_sockets.setdefault(user_id, set()).add(subscriber)

    async def leave_user(self, user_id: int, subscriber: Subscriber) -> None:
        """Undo ``join_user``."""
        sockets = self.user_sockets.get(user_id)
        if sockets is not None:
            sockets.discard(subscriber)
            if not sockets:
                del self.user_sockets[user_id]

    async def _group_discard(self, group: str) -> None:
        if not self.remote:
            return
        try:
            await self.layer.group_discard(group, await self._channel())
        except Exception:
            logger.exception("group_discard %s failed", group)

    # --- publishing -----------------------------------------------------------

    def publish_room(self, slug: str, seq: int, frame: str) -> None:
        """Deliver message ``seq`` to local sockets now and to other processes."""
        feed = self.feeds.get(slug)
        if feed is not None:
            feed.offer(seq, frame)
        if self.remote:
            event = {"type": ROOM_MESSAGE, "room": slug, "seq": seq, "frame": frame}
            self.spawn(self._group_send(room_group(slug), event))

    def publish_forget(self, event: dict[str, Any]) -> None:
        """Apply a ROOM_FORGET event here and send it to the other processes."""
        self.dispatch(event)
        if self.remote:
            self.spawn(self._group_send(room_group(event["room"]), event))

    def publish_user(self, event: dict[str, Any]) -> None:
        """Send a USER_EVENT to every socket of its user in every process but its
        origin: this process's sockets now, the other processes' in one batch
        per USER_EVENTS_BATCH_SECONDS."""
        self._deliver_user_event(event)
        if not self.remote:
            return
        self._user_events.append(event)
        if len(self._user_events) == 1:
            self.loop.call_later(USER_EVENTS_BATCH_SECONDS, self._flush_user_events)

    def _flush_user_events(self) -> None:
        events, self._user_events = self._user_events, []
        batch = {"type": USER_EVENTS, "events": events, "process": self.process_id}
        self.spawn(self._group_send(USERS_GROUP, batch))

    async def _group_send(self, group: str, event: dict[str, Any]) -> None:
        # A lost publish is repaired by gap filling (invariant 2).
        started = time.perf_counter()
        try:
            await self.layer.group_send(group, event)
        except Exception:
            metrics.PUBLISH_SECONDS.labels("error").observe(time.perf_counter() - started)
            logger.exception("group_send to %s failed", group)
        else:
            metrics.PUBLISH_SECONDS.labels("ok").observe(time.perf_counter() - started)

    async def close(self) -> None:
        """Stop the hub's tasks (channel-layer reader, watcher, revalidator)
        and its feeds' gap fills; called at process shutdown (kaiwa.chat.lifespan)."""
        for task in (self._reader, self._watcher, self._revalidator):
            if task is not None:
                task.cancel()
        for feed in self.feeds.values():
            feed.close()


def get_hub() -> Hub:
    """The hub of the running event loop, created on first use (kaiwa.chat.loops)."""
    return loops.loop_local("hub", Hub)


def _running_hub() -> Hub | None:
    hub: Hub | None = loops.serving("hub")
    return hub


def _publish(hub_call: Callable[[Hub], None], group: str, event: dict[str, Any]) -> None:
    """Run ``hub_call`` on the hub's loop (thread-safe, not waiting), or, with no
    hub in this process (a management command, a Celery worker, a test's sync
    client), send ``event`` to ``group`` through the channel layer directly."""
    hub = _running_hub()
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


# What a process without a shared layer relays (kaiwa.chat.relay): access
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

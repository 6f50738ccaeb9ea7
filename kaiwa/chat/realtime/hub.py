"""One process's fan-out (``Hub``): a ``RoomFeed`` per room with local
sockets, the user sockets, and one channel-layer channel for the process.

The invariants of the fan-out path are at the top of ``feed.py``."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from collections.abc import Coroutine
from typing import Any

from channels.layers import InMemoryChannelLayer
from django.conf import settings

from kaiwa import metrics
from kaiwa.chat.realtime import executors, loops
from kaiwa.chat.realtime.feed import RoomFeed, Subscriber
from kaiwa.chat.realtime.layer import (
    ROOM_FORGET,
    ROOM_MESSAGE,
    ROOM_PURGE,
    ROOM_REVALIDATE,
    ROOM_TRANSIENT,
    SESSION_REVOKE,
    SNAPSHOT_BATCH_MAX,
    USER_EVENT,
    USER_EVENTS,
    USER_EVENTS_BATCH_SECONDS,
    USER_REVALIDATE,
    USERS_GROUP,
    channel_layer,
    room_group,
)
from kaiwa.chat.realtime.relay import relay_latest_id, relay_read
from kaiwa.chat.selectors import room_last_seqs, room_snapshots

logger = logging.getLogger(__name__)


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

        relayed = None if self.remote else await executors.run_read(relay_latest_id)
        while True:
            await asyncio.sleep(settings.KAIWA_SEQ_CHECK_SECONDS)
            if relayed is not None:  # no shared layer: events from other processes
                relayed = await self._relayed(relayed)
            slugs = [slug for slug, feed in self.feeds.items() if feed.hwm is not None]
            if not slugs:
                continue
            try:
                latest = await executors.run_read(room_last_seqs, slugs=slugs)
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
        (kaiwa.chat.realtime.relay) since id ``after``; returns the newest id seen."""
        try:
            after, events = await executors.run_write(relay_read, after=after)
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

    async def subscribe_room(self, slug: str, subscriber: Subscriber) -> RoomFeed:
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
        kaiwa.chat.realtime.admission batches joins): a storm opening 500 feeds costs a
        few calls on the read pool, not 500. Returns ``(latest seq, recent
        (seq, frame) ascending, purged_seq)``; raises RoomNotFound, or the
        database error of the batch."""
        result: tuple[int, list[tuple[int, str]], int] = await self._snapshots.ask((slug, limit))
        return result

    @staticmethod
    async def _read_snapshots(requests: list[tuple[str, int]]) -> list[Any]:
        return await executors.run_read(room_snapshots, requests=requests)

    async def unsubscribe_room(self, slug: str, subscriber: Subscriber) -> None:
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

    async def subscribe_user(self, user_id: int, subscriber: Subscriber) -> None:
        """Route frames for user ``user_id`` (e.g. ``read``) to ``subscriber``.

        The first call subscribes this process to USERS_GROUP (once, for good).
        """
        if not self._users_joined:
            async with self._lock(USERS_GROUP):
                if not self._users_joined:
                    await self._group_add(USERS_GROUP)
                    self._users_joined = True
        self.user_sockets.setdefault(user_id, set()).add(subscriber)

    async def unsubscribe_user(self, user_id: int, subscriber: Subscriber) -> None:
        """Undo ``subscribe_user``."""
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
        and its feeds' gap fills; called at process shutdown (kaiwa.chat.realtime.lifespan)."""
        for task in (self._reader, self._watcher, self._revalidator):
            if task is not None:
                task.cancel()
        for feed in self.feeds.values():
            feed.close()


def get_hub() -> Hub:
    """The hub of the running event loop, created on first use (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("hub", Hub)


def running_hub() -> Hub | None:
    hub: Hub | None = loops.serving("hub")
    return hub

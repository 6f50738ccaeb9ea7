"""Presence: who is ``online``, ``away`` or ``offline`` (PROTOCOL.md section 3).

The model follows Centrifugo's Redis presence (entries that expire unless
their holder refreshes them) with Kaiwa's grace period on top:

- Each process sums up its own open sockets of a user: ``online`` when one
  of them is active, ``away`` when all are idle or hidden (the ``presence``
  frame). It writes that as the user's *entry* for this process, which
  lapses KAIWA_PRESENCE_GRACE_SECONDS after it was written, and rewrites the
  entries of its connected users every grace / 3 seconds.
- When a user's last socket on a process closes, his entry is written once
  more and then left to lapse: a reconnect within the grace period, to any
  process, does not flap; a process killed with SIGKILL leaves its users
  online for at most the grace period (plus one sweep).
- A user's status is the best of his live entries (``online`` over
  ``away``), else ``offline``. The store keeps the last status announced:
  the write, or the sweep noticing a lapse, that changes it returns the
  change once, atomically, and this process announces it as ``presence``
  frames to the rooms the user is a member of, up to
  KAIWA_PRESENCE_MAX_MEMBERS members (one channel-layer message per room).

With ``REDIS_URL`` the entries live in Redis (a hash per user, one field per
process, and a sorted set of the users due to lapse; the update and sweep run
as Lua scripts, atomic across processes); otherwise in this process (the
embedded defaults run one process). Presence never blocks the chat: a Redis
or database error is logged and the changes are retried on the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Set
from functools import cache
from typing import Any, Protocol

from django.conf import settings

from kaiwa.chat import frames, selectors
from kaiwa.chat.realtime import executors, loops
from kaiwa.chat.realtime.hub import get_hub

logger = logging.getLogger(__name__)

ONLINE, AWAY, OFFLINE = "online", "away", "offline"
# What a socket may say of itself (the ``presence`` frame's ``status``).
SOCKET_STATUSES = (ONLINE, AWAY)
# A change is written at most this often per process (seconds): a client
# toggling away and back many times a second costs a few writes and
# announcements, not one each.
FLUSH_SECONDS = 0.25
# How often a process looks for lapsed entries (seconds).
SWEEP_SECONDS = 1.0
# Users per store call, per announcement query (a connect storm's thousands).
BATCH_MAX = 500

Change = tuple[int, str]  # (user id, new status)


def best(statuses: Iterable[str]) -> str | None:
    """The status of a set of sockets: ``online`` if one is, ``away`` if all
    are, None for no socket."""
    found = None
    for status in statuses:
        if status == ONLINE:
            return ONLINE
        found = AWAY
    return found


class PresenceStore(Protocol):
    async def write(self, entries: list[tuple[int, str]]) -> list[Change]:
        """Set this process's entry of each ``(user id, status)`` to lapse in
        the grace period; returns the users whose status changed."""

    async def sweep(self) -> list[Change]:
        """Drop lapsed entries; returns the users whose status changed."""

    def statuses(self, user_ids: list[int]) -> dict[int, str]:
        """From any thread: the announced status of those of ``user_ids``
        who are not offline."""

    async def close(self) -> None:
        """Release connections."""


class MemoryPresenceStore:
    """Entries of the one process there is (the embedded defaults)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.entries: dict[int, tuple[str, float]] = {}  # user -> (status, lapses at)
        self.announced: dict[int, str] = {}  # users not offline
        self.due: list[tuple[float, int]] = []  # heap of (lapses at, user)

    async def write(self, entries: list[tuple[int, str]]) -> list[Change]:
        now = time.monotonic()
        changes = []
        for user, status in entries:
            self.entries[user] = (status, now + self.grace)
            heapq.heappush(self.due, (now + self.grace, user))
            changes.extend(self._settle(user, now))
        return changes

    async def sweep(self) -> list[Change]:
        now = time.monotonic()
        changes = []
        while self.due and self.due[0][0] <= now:
            _, user = heapq.heappop(self.due)
            changes.extend(self._settle(user, now))
        return changes

    def _settle(self, user: int, now: float) -> list[Change]:
        entry = self.entries.get(user)
        if entry is not None and entry[1] <= now:
            del self.entries[user]
            entry = None
        status = entry[0] if entry is not None else OFFLINE
        if status == self.announced.get(user, OFFLINE):
            return []
        if status == OFFLINE:
            del self.announced[user]
        else:
            self.announced[user] = status
        return [(user, status)]

    def statuses(self, user_ids: list[int]) -> dict[int, str]:
        announced = self.announced
        return {u: announced[u] for u in user_ids if u in announced}

    async def close(self) -> None:
        return None


# Redis layout under <prefix>:presence: — "u:<user>", a hash: one field per
# process ("<status>:<lapses at, ms of Redis's clock>") and "~", the announced
# status; "due", a sorted set of users scored by their earliest lapse.
# Redis's own clock (TIME) decides lapses, so processes' clocks may differ.
_SETTLE_LUA = """
local function settle(h, due, user)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local status, soonest, latest = 'offline', nil, 0
  local fields = redis.call('HGETALL', h)
  for i = 1, #fields, 2 do
    local f, v = fields[i], fields[i + 1]
    if f ~= '~' then
      local sep = string.find(v, ':', 1, true)
      local s, lapses = string.sub(v, 1, sep - 1), tonumber(string.sub(v, sep + 1))
      if lapses <= now then
        redis.call('HDEL', h, f)
      else
        if s == 'online' or status == 'offline' then status = s end
        if soonest == nil or lapses < soonest then soonest = lapses end
        if lapses > latest then latest = lapses end
      end
    end
  end
  local announced = redis.call('HGET', h, '~') or 'offline'
  if soonest then
    redis.call('ZADD', due, soonest, user)
    redis.call('HSET', h, '~', status)
    -- Gone a minute after its last lapse even if no process sweeps any more.
    redis.call('PEXPIREAT', h, latest + 60000)
  else
    redis.call('ZREM', due, user)
    redis.call('DEL', h)
  end
  if status ~= announced then return status end
  return false
end
"""
# KEYS: the user's hash, "due"; ARGV: user, process, status, grace (ms).
_WRITE_LUA = (
    _SETTLE_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3] .. ':' .. (now + tonumber(ARGV[4])))
return settle(KEYS[1], KEYS[2], ARGV[1])
"""
)
# KEYS: "due"; ARGV: the users' hash key prefix, how many at most.
# (The hashes' names are built here: Kaiwa runs on one Redis or a Sentinel
# pair, not on Redis Cluster.)
_SWEEP_LUA = (
    _SETTLE_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local changes = {}
for _, user in ipairs(users) do
  local status = settle(ARGV[1] .. user, KEYS[1], user)
  if status then
    table.insert(changes, user)
    table.insert(changes, status)
  end
end
return changes
"""
)


class RedisPresenceStore:
    """Entries of every process, in Redis (REDIS_URL)."""

    def __init__(self, url: str, prefix: str, grace: float) -> None:
        from kaiwa import redis_conn

        self.url = url
        self.client = redis_conn.async_client(url)  # the Sentinel master, with REDIS_SENTINELS
        self.prefix = f"{prefix}:presence:"
        self.grace_ms = max(1, round(grace * 1000))
        self.process = secrets.token_hex(8)
        self._write = self.client.register_script(_WRITE_LUA)
        self._sweep = self.client.register_script(_SWEEP_LUA)

    async def write(self, entries: list[tuple[int, str]]) -> list[Change]:
        async with self.client.pipeline(transaction=False) as pipe:
            for user, status in entries:
                await self._write(
                    keys=[f"{self.prefix}u:{user}", f"{self.prefix}due"],
                    args=[user, self.process, status, self.grace_ms],
                    client=pipe,
                )
            results = await pipe.execute()
        return [(user, r.decode()) for (user, _), r in zip(entries, results, strict=True) if r]

    async def sweep(self) -> list[Change]:
        flat = await self._sweep(keys=[f"{self.prefix}due"], args=[f"{self.prefix}u:", BATCH_MAX])
        return [(int(flat[i]), flat[i + 1].decode()) for i in range(0, len(flat), 2)]

    def statuses(self, user_ids: list[int]) -> dict[int, str]:
        return redis_statuses(self.url, self.prefix, user_ids)

    async def close(self) -> None:
        await self.client.aclose()


@cache
def _sync_redis(url: str) -> Any:
    from kaiwa import redis_conn

    return redis_conn.sync_client(url)


def redis_statuses(url: str, prefix: str, user_ids: list[int]) -> dict[int, str]:
    """The announced status of those of ``user_ids`` who are not offline, read
    from the Redis at ``url`` with a blocking client (REST views); raises
    redis's errors."""
    pipe = _sync_redis(url).pipeline(transaction=False)
    for user in user_ids:
        pipe.hget(f"{prefix}u:{user}", "~")
    found = pipe.execute()
    return {u: s.decode() for u, s in zip(user_ids, found, strict=True) if s}


def make_store() -> PresenceStore:
    """Redis when REDIS_URL is set, else this process's memory."""
    grace = settings.KAIWA_PRESENCE_GRACE_SECONDS
    if settings.REDIS_URL:
        return RedisPresenceStore(settings.REDIS_URL, settings.KAIWA_REDIS_PREFIX, grace)
    return MemoryPresenceStore(grace)


class Presence:
    """This process's sockets' presence: what they say, written to the store,
    refreshed, swept, and announced (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.store = make_store()
        self.sockets: dict[int, dict[str, str]] = {}  # user -> {socket id: status}
        self.written: dict[int, str] = {}  # user -> this process's entry, as last written
        self.dirty: set[int] = set()
        # (user id, room slug) of memberships made since the last round.
        self.joined: list[tuple[int, str]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # --- from the consumers (never block) ---------------------------------------

    def open(self, user_id: int, socket_id: str) -> None:
        """A socket of ``user_id`` is ready: it counts as ``online``."""
        self.sockets.setdefault(user_id, {})[socket_id] = ONLINE
        self._touch(user_id)

    def member_joined(self, user_id: int, slug: str) -> None:
        """``user_id`` just became a member of room ``slug`` (his first join):
        the room hears his status in the next round, unless it changes then
        (the change is announced to all his rooms, this one included). The
        room's members would otherwise learn of him only when his status
        next changes."""
        self.joined.append((user_id, slug))
        self._touch(user_id)

    def set(self, user_id: int, socket_id: str, status: str) -> None:
        """The socket says it is ``online`` or ``away`` (SOCKET_STATUSES)."""
        mine = self.sockets.get(user_id)
        if mine is not None and socket_id in mine and mine[socket_id] != status:
            mine[socket_id] = status
            self._touch(user_id)

    def close(self, user_id: int, socket_id: str) -> None:
        """The socket closed."""
        mine = self.sockets.get(user_id)
        if mine is not None and mine.pop(socket_id, None) is not None:
            if not mine:
                del self.sockets[user_id]
            self._touch(user_id)

    def statuses(self, user_ids: list[int]) -> dict[int, str]:
        """See PresenceStore.statuses."""
        return self.store.statuses(user_ids)

    def _touch(self, user_id: int) -> None:
        self.dirty.add(user_id)
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        self.wake.set()

    # --- the process's presence task --------------------------------------------

    async def _run(self) -> None:
        grace = settings.KAIWA_PRESENCE_GRACE_SECONDS
        next_refresh = time.monotonic() + grace / 3
        next_sweep = time.monotonic() + SWEEP_SECONDS
        while True:
            # Not asyncio.wait_for: in Python 3.11 it swallows a cancellation
            # that comes as the event is set (a socket closing at shutdown).
            with contextlib.suppress(TimeoutError):  # no change: time to sweep
                async with asyncio.timeout(SWEEP_SECONDS):
                    await self.wake.wait()
            self.wake.clear()
            now = time.monotonic()
            try:
                changes = await self._flush(refresh=now >= next_refresh)
                if now >= next_refresh:
                    next_refresh = now + grace / 3
                if now >= next_sweep:
                    changes += await self.store.sweep()
                    next_sweep = now + SWEEP_SECONDS
                await self._announce(changes)
                await self._announce_joins({user for user, _ in changes})
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("presence update failed; retrying")
            await asyncio.sleep(FLUSH_SECONDS)

    async def _flush(self, refresh: bool) -> list[Change]:
        """Write what changed (and, on ``refresh``, every connected user's
        entry); returns the changes of status. The users stay dirty until
        written."""
        dirty, self.dirty = self.dirty, set()
        entries: dict[int, str] = {}
        for user in dirty:
            status = best(self.sockets.get(user, {}).values())
            if status is None:  # his last socket here closed: one last write, then lapse
                last = self.written.get(user)
                if last is not None:
                    entries[user] = last
            elif status != self.written.get(user):
                entries[user] = status
        if refresh:
            for user, mine in self.sockets.items():
                entries.setdefault(user, best(mine.values()) or AWAY)
        changes: list[Change] = []
        items = list(entries.items())
        try:
            for start in range(0, len(items), BATCH_MAX):
                changes += await self.store.write(items[start : start + BATCH_MAX])
        except BaseException:
            self.dirty |= dirty  # written again next round (a write is idempotent)
            raise
        for user, status in items:
            if user in self.sockets:
                self.written[user] = status
            else:
                self.written.pop(user, None)
        return changes

    async def _announce(self, changes: list[Change]) -> None:
        """``presence`` frames for ``changes`` to the rooms of each user that
        have at most KAIWA_PRESENCE_MAX_MEMBERS members, one channel-layer
        message per room."""
        limit = settings.KAIWA_PRESENCE_MAX_MEMBERS
        if not changes or limit <= 0:
            return
        status = dict(changes)  # the latest change of each user
        users = list(status)
        by_room: dict[str, list[str]] = defaultdict(list)
        for start in range(0, len(users), BATCH_MAX):
            rows = await executors.run_read(
                selectors.presence_rooms,
                user_ids=users[start : start + BATCH_MAX],
                max_members=limit,
            )
            for user, username, slug in rows:
                frame = {
                    "type": "presence",
                    "room": slug,
                    "username": username,
                    "status": status[user],
                }
                by_room[slug].append(frames.encode(frame))
        hub = get_hub()
        for slug, room_frames in by_room.items():
            hub.publish_transient(slug, room_frames, None)

    async def _announce_joins(self, changed: Set[int]) -> None:
        """A ``presence`` frame of each new member's status (as this process
        wrote it) to the room he joined, if it has at most
        KAIWA_PRESENCE_MAX_MEMBERS members and his status did not just change
        (``_announce`` told that room already). One query for all of them,
        one channel-layer message per room."""
        joined, self.joined = self.joined, []
        limit = settings.KAIWA_PRESENCE_MAX_MEMBERS
        wanted = {(u, slug) for u, slug in joined if u not in changed and u in self.written}
        if not wanted or limit <= 0:
            return
        rows = await executors.run_read(
            selectors.presence_rooms, user_ids=sorted({u for u, _ in wanted}), max_members=limit
        )
        # One channel-layer message per room, each frame left out of its own
        # user's sockets: a connect storm makes thousands of new members at
        # once, and a message each cost half a second of the event loop in
        # storm-5000 (docs/performance.md).
        by_room: dict[str, tuple[list[str], list[int | None]]] = {}
        for user, username, slug in rows:
            if (user, slug) in wanted:
                frame = {
                    "type": "presence",
                    "room": slug,
                    "username": username,
                    "status": self.written[user],
                }
                room_frames, skip = by_room.setdefault(slug, ([], []))
                room_frames.append(frames.encode(frame))
                skip.append(user)
        hub = get_hub()
        for slug, (room_frames, skip) in by_room.items():
            hub.publish_transient(slug, room_frames, None, skip)

    async def shutdown(self) -> None:
        """Stop the task; write the entries of users whose sockets closed
        meanwhile, so that they lapse a whole grace period from now."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        try:
            await self._flush(refresh=False)
        except Exception:  # their entries lapse from the last refresh instead
            logger.warning("presence: last write failed", exc_info=True)
        await self.store.close()


def get_presence() -> Presence:
    """The presence of the running event loop, created on first use (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("presence", Presence)


def room_presence(user_ids: list[int]) -> dict[int, str]:
    """From any thread (REST views): the status of those of ``user_ids`` who
    are not offline. Reads Redis when REDIS_URL is set (raises its errors),
    else the serving process's memory (nobody is online without a server)."""
    if settings.REDIS_URL:
        prefix = f"{settings.KAIWA_REDIS_PREFIX}:presence:"
        return redis_statuses(settings.REDIS_URL, prefix, user_ids)
    presence: Presence | None = loops.serving("presence")
    return presence.statuses(user_ids) if presence is not None else {}

"""Flood limits counted across every process, in Redis (with ``REDIS_URL``).

Without Redis each ``kaiwa serve`` counts alone (``kaiwa.chat.realtime.limits``), and
the embedded defaults run one process anyway. With it, N processes behind a
load balancer would otherwise allow N times each limit; here they share:

- the message rate per user (``user:<id>``, or ``guest-ip:<address>``): a
  moving window of KAIWA_RATE_BURST messages per KAIWA_RATE_BURST /
  KAIWA_RATE_MESSAGES_PER_SECOND seconds (at least 1 s), which lets a burst
  through and holds the rate over time as the in-process token bucket does;
  sockets (asynchronous client) and REST posts (blocking client) hit the
  same window;
- the connect rate per client IP: KAIWA_CONNECT_BURST_PER_IP handshakes per
  KAIWA_CONNECT_BURST_PER_IP / KAIWA_CONNECT_RATE_PER_IP seconds, the same way;
- the open sockets per user: a sorted set per user of its sockets' ids,
  scored by when each lapses unless its process refreshes it (every
  SOCKET_REFRESH_SECONDS), so that a process killed with SIGKILL frees its
  users' slots within SOCKET_TTL_SECONDS. A socket is added and counted in
  one script, which Redis runs alone: when two processes race for the last
  slot, exactly one gets it.

The windows are the ``limits`` library's moving-window strategy on its Redis
storage (https://limits.readthedocs.io, "Moving Window"), keys under
``<KAIWA_REDIS_PREFIX>:limits``. A Redis error lets the request through
(logged at most every LOG_EVERY_SECONDS): flood limits must never stop the
chat; the in-process limits then still bound each process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from typing import Any

from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import RedisStorage
from redis.exceptions import NoScriptError, RedisError

from kaiwa import redis_conn
from kaiwa.chat.realtime import loops

logger = logging.getLogger(__name__)

SOCKET_TTL_SECONDS = 90.0
SOCKET_REFRESH_SECONDS = 30.0
LOG_EVERY_SECONDS = 10.0
BATCH_MAX = 1000  # requests per trip to the limits thread
STRICT_MAX = 10_000  # strict senders remembered before the lapsed ones are dropped
# A Redis that takes longer than this (seconds) to connect or answer counts as
# down: the request is let through.
REDIS_TIMEOUT_SECONDS = 1.0
_last_logged = 0.0


def enabled() -> bool:
    """True when the limits are counted in Redis: REDIS_URL is set and
    KAIWA_CLUSTER_LIMITS is on (the default)."""
    return bool(settings.REDIS_URL) and settings.KAIWA_CLUSTER_LIMITS


def window(rate: float, burst: int) -> RateLimitItem:
    """The moving window standing for a token bucket of ``rate`` per second
    and ``burst`` tokens: ``burst`` hits per ``burst / rate`` seconds
    (rounded, at least 1 s)."""
    burst = max(1, burst)
    return RateLimitItemPerSecond(burst, max(1, round(burst / rate)))


def _prefix() -> str:
    return f"{settings.KAIWA_REDIS_PREFIX}:limits"


def _log_failure() -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= LOG_EVERY_SECONDS:
        _last_logged = now
        logger.warning("flood limits: Redis unavailable; letting requests through", exc_info=True)


@cache
def _blocking_client() -> Any:
    return redis_conn.sync_client(
        settings.REDIS_URL,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )


@cache
def _blocking_storage() -> RedisStorage:
    # RedisStorage, or behind Sentinel its subclass RedisSentinelStorage.
    storage: RedisStorage = redis_conn.limits_storage(
        settings.REDIS_URL,
        key_prefix=_prefix(),
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )
    return storage


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="kaiwa-limits")


def _socket_key(slot: str) -> str:
    return f"{_prefix()}:sockets:{slot}"


# What a batch holds: ("hit", (item, key)), ("acquire", (slot, member, cap)),
# ("release", (slot, member)), ("refresh", {slot: members}).
Request = tuple[str, Any]


def _run_batch(requests: list[Request]) -> list[bool]:
    """Run a batch of limit requests on the limits thread, blocking, in one
    Redis round trip for the whole batch (two when Redis must first learn
    the scripts); one answer each (True: allowed,
    or let through when Redis fails)."""
    try:
        return _pipelined(requests)
    except RedisError:
        _log_failure()
        return [True] * len(requests)


# A socket's admission to its user's set, in one atomic step (Redis runs a
# script alone, https://redis.io/docs/latest/develop/interact/programmability/eval-intro/):
# drop the lapsed members, add this one, and take it out again if that makes
# more than the cap. KEYS[1]: the set; ARGV: now, lapse (epoch seconds),
# member, cap, TTL of the key (seconds). Returns 1 when admitted, else 0.
ACQUIRE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[4]) then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 0
end
return 1
"""
ACQUIRE_SHA = hashlib.sha1(ACQUIRE_SCRIPT.encode()).hexdigest()


def _pipelined(requests: list[Request]) -> list[bool]:
    """The whole batch in one pipeline, one Redis round trip: a hit is the
    ``limits`` library's moving-window script (``MovingWindowRateLimiter.hit``
    is ``storage.acquire_entry``: that script on the prefixed key), an acquire
    ``ACQUIRE_SCRIPT``, both called by their SHA1; a Redis that does not know
    them (restarted, or flushed) gets them loaded and the batch once more.
    Raises RedisError when Redis fails."""
    client = _blocking_client()
    storage = _blocking_storage() if any(kind == "hit" for kind, _ in requests) else None
    for attempt in range(2):
        results = _send(client, storage, requests)
        missing = any(isinstance(r, NoScriptError) for r in results)
        if missing and attempt == 0:
            assert client.script_load(ACQUIRE_SCRIPT) == ACQUIRE_SHA
            if storage is not None:
                client.script_load(storage.lua_acquire_moving_window.script)
            continue
        break
    answers = []
    for (kind, _), result in zip(requests, results, strict=True):
        if isinstance(result, Exception):
            raise result
        answers.append(bool(result) if kind in ("hit", "acquire") else True)
    return answers


def _send(client: Any, storage: RedisStorage | None, requests: list[Request]) -> list[Any]:
    """One pipeline of ``requests``, one result per request (an exception
    for a request that failed: Redis runs the others anyway)."""
    ttl = math.ceil(SOCKET_TTL_SECONDS)
    now = time.time()
    lapse = now + SOCKET_TTL_SECONDS
    with client.pipeline(transaction=False) as pipe:
        for kind, args in requests:
            if kind == "hit":
                item, key = args
                assert storage is not None
                key = storage.prefixed_key(item.key_for(key))
                sha = storage.lua_acquire_moving_window.sha
                pipe.evalsha(sha, 1, key, now, item.amount, item.get_expiry(), 1)
            elif kind == "acquire":
                slot, member, cap = args
                pipe.evalsha(ACQUIRE_SHA, 1, _socket_key(slot), now, lapse, member, cap, ttl)
            elif kind == "release":
                slot, member = args
                pipe.zrem(_socket_key(slot), member)
            else:  # refresh: {slot: members}, one command per slot
                for slot, members in args.items():
                    pipe.zadd(_socket_key(slot), dict.fromkeys(members, lapse))
                    pipe.expire(_socket_key(slot), ttl)
        results: list[Any] = pipe.execute(raise_on_error=False)
    # A refresh sent two commands per slot: fold them into its one result.
    folded: list[Any] = []
    position = 0
    for kind, args in requests:
        width = 2 * len(args) if kind == "refresh" else 1
        part = results[position : position + width]
        position += width
        errors = [r for r in part if isinstance(r, Exception)]
        folded.append(errors[0] if errors else (part[0] if part else True))
    return folded


class LoopLimits:
    """The cluster limits as one event loop uses them: the requests of the
    moment (every handshake of a connect storm, every post) queue and go to
    the limits thread as one batch, so that the loop pays one thread hop per
    batch, never a Redis round trip per request (the ``limits`` library's
    calls and the socket sets then run there, blocking, one after the other).
    Also keeps this loop's sockets in the per-user sets alive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[tuple[Request, asyncio.Future[bool]]] = []
        self.task: asyncio.Task[None] | None = None
        self.sockets: dict[str, set[str]] = {}  # user slot -> this loop's socket members
        self.process = secrets.token_hex(6)
        self.strict: dict[str, float] = {}  # sender key -> monotonic end of strict mode
        self._refresher: asyncio.Task[None] | None = None

    async def _ask(self, request: Request) -> bool:
        future: asyncio.Future[bool] = self.loop.create_future()
        self.queue.append((request, future))
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue[:BATCH_MAX], self.queue[BATCH_MAX:]
                try:
                    answers = await self.loop.run_in_executor(
                        _executor(), _run_batch, [request for request, _ in batch]
                    )
                except Exception:  # never leave a handshake waiting
                    logger.exception("flood limits: batch failed; letting it through")
                    answers = [True] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self.task = None

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        """Count one hit of ``key`` in ``item``'s window; False when over it."""
        return await self._ask(("hit", (item, key)))

    async def message_allowed(self, key: str) -> bool:
        """The message window of sender ``key``, counted without making a
        sender who keeps within it wait: his hit goes into the next batch
        and his message on at once. Once a hit of his is refused (the window
        is full across processes), he is *strict* for a window's length:
        each of his messages then waits for its own hit's answer, so the
        window holds; what got past before the first refusal is at most one
        batch's worth of his messages per process."""
        item = message_item()
        now = time.monotonic()
        if self.strict.get(key, 0.0) > now:
            allowed = await self.hit(item, key)
            if not allowed:
                self.strict[key] = time.monotonic() + item.get_expiry()
            return allowed
        if self.strict.pop(key, None) is None and len(self.strict) > STRICT_MAX:
            self.strict = {k: end for k, end in self.strict.items() if end > now}
        task = loops.spawn(self.hit(item, key))
        task.add_done_callback(partial(self._counted, key, item.get_expiry()))
        return True

    def _counted(self, key: str, expiry: int, task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and task.exception() is None and not task.result():
            self.strict[key] = time.monotonic() + expiry

    async def socket_acquire(self, slot: str, socket_id: str, cap: int) -> bool:
        """Add socket ``socket_id`` to ``slot``'s set unless that makes more
        than ``cap`` live ones; True when added."""
        member = f"{self.process}:{socket_id}"
        if not await self._ask(("acquire", (slot, member, cap))):
            return False
        self.sockets.setdefault(slot, set()).add(member)
        if self._refresher is None:
            self._refresher = self.loop.create_task(self._refresh())
        return True

    async def socket_release(self, slot: str, socket_id: str) -> None:
        """Undo ``socket_acquire`` (a lost release lapses within SOCKET_TTL_SECONDS)."""
        member = f"{self.process}:{socket_id}"
        mine = self.sockets.get(slot)
        if mine is None or member not in mine:
            return
        mine.discard(member)
        if not mine:
            del self.sockets[slot]
        await self._ask(("release", (slot, member)))

    async def _refresh(self) -> None:
        """Every SOCKET_REFRESH_SECONDS, push the lapse of this loop's live sockets."""
        while True:
            await asyncio.sleep(SOCKET_REFRESH_SECONDS)
            if self.sockets:
                await self._ask(("refresh", {k: set(v) for k, v in self.sockets.items()}))


def loop_limits() -> LoopLimits:
    """The cluster limits of the running event loop (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("cluster_limits", LoopLimits)


def message_item() -> RateLimitItem:
    return window(settings.KAIWA_RATE_MESSAGES_PER_SECOND, settings.KAIWA_RATE_BURST)


def connect_item() -> RateLimitItem:
    return window(settings.KAIWA_CONNECT_RATE_PER_IP, settings.KAIWA_CONNECT_BURST_PER_IP)


def message_hit_blocking(key: str) -> bool:
    """The message window of ``key`` from a request thread (REST posts)."""
    return _run_batch([("hit", (message_item(), key))])[0]


class RedisLimitStore:
    """The flood limits counted across every process in Redis (a
    ``limits.LimitStore``): moving windows for messages and connects, a
    sorted set per user for his sockets, through this loop's ``LoopLimits``
    (one round trip per batch). Answers True when Redis cannot be reached
    (``LoopLimits``: the limits fail open, the process's own still hold)."""

    def message_hit_blocking(self, key: str) -> bool:
        return message_hit_blocking(key)

    async def message_allowed(self, key: str) -> bool:
        return await loop_limits().message_allowed(key)

    async def socket_acquire(self, slot: str, socket_id: str, cap: int) -> bool:
        return await loop_limits().socket_acquire(slot, socket_id, cap)

    async def socket_release(self, slot: str, socket_id: str) -> None:
        await loop_limits().socket_release(slot, socket_id)

    async def connect_hit(self, ip: str) -> bool:
        return await loop_limits().hit(connect_item(), f"ip:{ip}")

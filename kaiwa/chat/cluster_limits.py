"""Flood limits counted across every process, in Redis (with ``REDIS_URL``).

Without Redis each ``kaiwa serve`` counts alone (``kaiwa.chat.limits``), and
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
  users' slots within SOCKET_TTL_SECONDS. A socket is added first and
  counted after, in one MULTI: when two processes race for the last slot,
  both may be refused, never both admitted.

The windows are the ``limits`` library's moving-window strategy on its Redis
storage (https://limits.readthedocs.io, "Moving Window"), keys under
``<KAIWA_REDIS_PREFIX>:limits``. A Redis error lets the request through
(logged at most every LOG_EVERY_SECONDS): flood limits must never stop the
chat; the in-process limits then still bound each process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from functools import cache
from typing import Any

from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from . import loops

logger = logging.getLogger(__name__)

SOCKET_TTL_SECONDS = 90.0
SOCKET_REFRESH_SECONDS = 30.0
LOG_EVERY_SECONDS = 10.0
_last_logged = 0.0


def enabled() -> bool:
    """True when the limits are counted in Redis (REDIS_URL is set)."""
    return bool(settings.REDIS_URL)


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
def _blocking_limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(RedisStorage(settings.REDIS_URL, key_prefix=_prefix()))


class LoopLimits:
    """The asynchronous side of one event loop: its Redis client (bound to
    the loop), the moving windows, and the loop's sockets in the per-user sets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        storage = AsyncRedisStorage(
            "async+" + settings.REDIS_URL, implementation="redispy", key_prefix=_prefix()
        )
        self.limiter = AsyncMovingWindow(storage)
        self.storage = storage
        self.sockets: dict[str, set[str]] = {}  # user slot -> this loop's socket ids
        self.process = secrets.token_hex(6)
        self._client: Any = None
        self._refresher: asyncio.Task[None] | None = None
        self.loop = loop

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        return self._client

    def _key(self, slot: str) -> str:
        return f"{_prefix()}:sockets:{slot}"

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        """Count one hit of ``key`` in ``item``'s window; False when over it."""
        try:
            return bool(await self.limiter.hit(item, key))
        except RedisError:
            _log_failure()
            return True

    async def socket_acquire(self, slot: str, socket_id: str, cap: int) -> bool:
        """Add socket ``socket_id`` to ``slot``'s set unless that makes more
        than ``cap`` live ones; True when added."""
        member = f"{self.process}:{socket_id}"
        key = self._key(slot)
        now = time.time()
        try:
            async with self.client().pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zadd(key, {member: now + SOCKET_TTL_SECONDS})
                pipe.zcard(key)
                pipe.expire(key, math.ceil(SOCKET_TTL_SECONDS))
                count = (await pipe.execute())[2]
            if count > cap:
                await self.client().zrem(key, member)
                return False
        except RedisError:
            _log_failure()
            return True
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
        try:
            await self.client().zrem(self._key(slot), member)
        except RedisError:
            _log_failure()

    async def _refresh(self) -> None:
        """Every SOCKET_REFRESH_SECONDS, push the lapse of this loop's live sockets."""
        while True:
            await asyncio.sleep(SOCKET_REFRESH_SECONDS)
            lapse = time.time() + SOCKET_TTL_SECONDS
            try:
                async with self.client().pipeline(transaction=False) as pipe:
                    for slot, members in self.sockets.items():
                        pipe.zadd(self._key(slot), dict.fromkeys(members, lapse))
                        pipe.expire(self._key(slot), math.ceil(SOCKET_TTL_SECONDS))
                    await pipe.execute()
            except RedisError:
                _log_failure()


def loop_limits() -> LoopLimits:
    """The cluster limits of the running event loop (kaiwa.chat.loops)."""
    return loops.loop_local("cluster_limits", LoopLimits)


def message_item() -> RateLimitItem:
    return window(settings.KAIWA_RATE_MESSAGES_PER_SECOND, settings.KAIWA_RATE_BURST)


def connect_item() -> RateLimitItem:
    return window(settings.KAIWA_CONNECT_RATE_PER_IP, settings.KAIWA_CONNECT_BURST_PER_IP)


def message_hit_blocking(key: str) -> bool:
    """The message window of ``key`` from a request thread (REST posts)."""
    try:
        return bool(_blocking_limiter().hit(message_item(), key))
    except RedisError:
        _log_failure()
        return True

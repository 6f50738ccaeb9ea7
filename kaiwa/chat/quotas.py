"""Quotas of the domain: keyed token buckets, and the room-creation rate per
user (or per IP for guests).

Room creation: each user (each IP for guests) has a token bucket of
KAIWA_ROOM_CREATE_RATE_PER_MINUTE new rooms, refilled at that many per minute;
a join that would create a room over it is closed with 4429, a new direct
message over REST gets 429 (``services.room_create_batch``,
``services.dm_open``). The bucket is per process; the cap on rooms per user is
counted from stored rows instead, so that it holds across processes
(KAIWA_MAX_ROOMS_PER_USER). The sockets' flood limits
(``kaiwa.chat.realtime.limits``) use the same buckets.

The token bucket is the falconry ``token-bucket`` package (``token_bucket.Limiter``
with an in-memory store), the algorithm of
https://en.wikipedia.org/wiki/Token_bucket: a bucket holds at most ``capacity``
tokens, gains ``rate`` tokens per second, and each event takes one; an event
that finds no token is refused. A burst of ``capacity`` events passes at once,
then ``rate`` per second.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import token_bucket
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from kaiwa import metrics


class ForgetfulMemoryStorage(token_bucket.StorageBase):
    """A ``token_bucket`` storage in memory that forgets idle buckets, so that
    a store keyed by IP address or user stays bounded.

    Written on the package's public ``StorageBase`` (its extension point);
    the refill arithmetic is ``token_bucket.MemoryStorage``'s: a bucket holds
    ``[tokens, last refill (monotonic seconds)]`` and gains ``rate`` tokens
    per second up to ``capacity``. A bucket untouched for ``capacity / rate``
    seconds is full again, which is exactly what a missing bucket means to
    the limiter (it creates it full), so forgetting it changes no answer.
    Idle buckets are swept at most once per ``sweep_seconds`` (seconds), when
    a bucket is replenished. Not thread-safe: callers hold a lock or stay on
    one event loop.
    """

    def __init__(self, sweep_seconds: float = 60.0) -> None:
        self.buckets: dict[str | bytes, list[float]] = {}
        self.sweep_seconds = sweep_seconds
        self._next_sweep = time.monotonic() + sweep_seconds

    def get_token_count(self, key: str | bytes) -> float:
        """Tokens in bucket ``key`` at its last refill (0 for an unknown key)."""
        bucket = self.buckets.get(key)
        return bucket[0] if bucket is not None else 0

    def replenish(self, key: str | bytes, rate: float, capacity: int) -> None:
        """Refill bucket ``key`` for the time since its last refill (a new one
        starts full), after forgetting idle buckets once per sweep."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_seconds
            idle = capacity / rate
            stale = [k for k, (_, last) in self.buckets.items() if now - last >= idle]
            for k in stale:
                del self.buckets[k]
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = [capacity, now]
        elif now >= bucket[1]:
            bucket[0] = min(capacity, bucket[0] + rate * (now - bucket[1]))
            bucket[1] = now

    def consume(self, key: str | bytes, num_tokens: int) -> bool:
        """Take ``num_tokens`` from bucket ``key`` if it holds that many."""
        bucket = self.buckets.get(key)
        if bucket is None or bucket[0] < num_tokens:
            return False
        bucket[0] -= num_tokens
        return True

    def __len__(self) -> int:
        return len(self.buckets)


def bucket(rate: float, capacity: int) -> token_bucket.Limiter | None:
    """A keyed token-bucket limiter: ``rate`` tokens per second, at most
    ``capacity`` tokens (at least 1). None when ``rate`` <= 0 (limit off)."""
    if rate <= 0:
        return None
    return token_bucket.Limiter(rate, max(1, capacity), ForgetfulMemoryStorage())


def refused(limit: str) -> bool:
    """Count one refusal by ``limit`` (message, connect, sockets,
    room_create) in kaiwa_rate_limit_refusals_total; returns False."""
    metrics.RATE_LIMITED.labels(limit).inc()
    return False


# --- room creation rate per user or IP ---------------------------------------------------


class RoomCreateRate:
    """The room-creation buckets of this process: KAIWA_ROOM_CREATE_RATE_PER_MINUTE
    new rooms per minute per key, in bursts of as many (None when off)."""

    def __init__(self) -> None:
        per_minute = settings.KAIWA_ROOM_CREATE_RATE_PER_MINUTE
        self.limiter = bucket(per_minute / 60, math.ceil(per_minute))


_room_creates: RoomCreateRate | None = None
# Rooms are created on the write thread (sockets) and on Django's request
# threads (direct messages), and ForgetfulMemoryStorage sweeps its dict: one lock.
_room_creates_lock = threading.Lock()


def room_create_allowed(key: str) -> bool:
    """Take a token from the room-creation bucket of ``key`` (``user:<id>``, or
    ``ip:<address>`` for a guest); True when one more room may be created.

    Always True with the limit off. Thread-safe: any thread of the process
    shares the same buckets.
    """
    global _room_creates
    with _room_creates_lock:
        if _room_creates is None:
            _room_creates = RoomCreateRate()
        limiter = _room_creates.limiter
        allowed = limiter is None or limiter.consume(key)
    return allowed or refused("room_create")


def room_create_limits_reset() -> None:
    """Forget every room-creation bucket (tests, a changed setting)."""
    global _room_creates
    with _room_creates_lock:
        _room_creates = None


@receiver(setting_changed)
def _room_create_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "KAIWA_ROOM_CREATE_RATE_PER_MINUTE":
        room_create_limits_reset()

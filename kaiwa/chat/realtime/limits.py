"""Flood limits: a message rate per user, a connect rate per IP, a cap on sockets
per user, a room-creation rate per user (or per IP for guests).

Without Redis they are per process (each ``kaiwa serve`` keeps its own
counts, and the embedded defaults run one process). With ``REDIS_URL`` the
message rate, the connect rate and the socket cap are counted across every
process in Redis (``kaiwa.chat.realtime.cluster_limits``), so that N processes do not
allow N times a limit; the room-creation rate stays per process (its cap on
rooms per user is counted from stored rows, across processes).

- Message rate (PROTOCOL.md sections 3 and 6): each user has a token bucket of
  KAIWA_RATE_BURST messages refilled at KAIWA_RATE_MESSAGES_PER_SECOND,
  shared by his sockets and his REST posts (``message_post_allowed``). A
  message posted over WebSocket with the bucket empty is not stored and gets
  error ``rate_limited``; after KAIWA_RATE_STRIKES refused messages in a row
  the socket is closed with 4429. Over REST it gets 429 ``rate_limited``.
- Connect rate: each client IP (the address uvicorn reports: the peer, or
  ``X-Forwarded-For`` from a proxy in FORWARDED_ALLOW_IPS) has a token bucket
  of KAIWA_CONNECT_BURST_PER_IP handshakes refilled at
  KAIWA_CONNECT_RATE_PER_IP. A handshake over it is refused with HTTP 429 and
  ``Retry-After`` before any authentication or database work.
- Sockets per user: at most KAIWA_MAX_CONNECTIONS_PER_USER open sockets per
  signed-in user; one more is accepted, then closed with 4429 (reason
  ``too many connections``).
- Guests (KAIWA_ALLOW_GUESTS) have no account to count by: the guests of one
  client IP share one message bucket and one socket cap, as a user's sockets do.
- Room creation: a rate per user and a cap of rooms, in ``kaiwa.chat.quotas``.

A rate or cap of 0 turns that limit off.

The token buckets are ``kaiwa.chat.quotas.bucket``'s (its docstring gives the
algorithm and its source).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import token_bucket
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from kaiwa.chat.quotas import bucket, refused
from kaiwa.chat.realtime import cluster_limits, loops

logger = logging.getLogger(__name__)

CLOSE_TOO_MANY = 4429
HTTP_TOO_MANY_REQUESTS = 429

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Any]


class Limits:
    """The limits of one process (one event loop), built from settings.

    ``connects`` is a keyed token bucket (None when off);
    ``sockets`` counts open sockets per user id.
    """

    def __init__(self) -> None:
        self.connects = bucket(
            settings.KAIWA_CONNECT_RATE_PER_IP, settings.KAIWA_CONNECT_BURST_PER_IP
        )
        self.sockets: dict[int | str, int] = {}


def get_limits() -> Limits:
    """The limits of the running event loop, created on first use (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("limits", lambda loop: Limits())


# --- where the counts live -----------------------------------------------------------


class LimitStore(Protocol):
    """Where the limits are counted, as presence's ``PresenceStore``: in this
    process only (``ProcessLimitStore``) or across every process in Redis
    (``cluster_limits.RedisLimitStore``). The process's own socket cap and
    message bucket are checked first in both cases (``SenderLimit``,
    ``user_socket_acquire``); a store answers for the rest."""

    def message_hit_blocking(self, key: str) -> bool:
        """A message of ``key`` from a request thread (REST posts); True: allowed."""

    async def message_allowed(self, key: str) -> bool:
        """A socket's message of ``key``, after this process's bucket passed it."""

    async def socket_acquire(self, slot: str, socket_id: str, cap: int) -> bool:
        """Count ``socket_id`` against ``slot``'s ``cap`` (>= 1); True: admitted."""

    async def socket_release(self, slot: str, socket_id: str) -> None:
        """Undo one ``socket_acquire`` that returned True."""

    async def connect_hit(self, ip: str) -> bool:
        """A handshake from ``ip``; True: allowed."""


class ProcessLimitStore:
    """The limits of one process: its own buckets and counts decide alone."""

    def message_hit_blocking(self, key: str) -> bool:
        return _message_post_allowed_here(key)

    async def message_allowed(self, key: str) -> bool:
        return True  # the process's bucket, checked first, is the limit

    async def socket_acquire(self, slot: str, socket_id: str, cap: int) -> bool:
        return True  # the process's count, checked first, is the limit

    async def socket_release(self, slot: str, socket_id: str) -> None:
        return None

    async def connect_hit(self, ip: str) -> bool:
        connects = get_limits().connects
        return connects is None or bool(connects.consume(ip))


_PROCESS_STORE = ProcessLimitStore()
_REDIS_STORE = cluster_limits.RedisLimitStore()


def limit_store() -> LimitStore:
    """The store of the limits now: Redis with REDIS_URL and KAIWA_CLUSTER_LIMITS
    on (``cluster_limits.enabled``), else this process; read on every call,
    so that a changed setting takes effect at once."""
    return _REDIS_STORE if cluster_limits.enabled() else _PROCESS_STORE


# --- message rate -------------------------------------------------------------------


class SenderLimit:
    """One socket's view of its sender's message bucket.

    ``key`` names the bucket: ``user:<id>`` (shared by the user's sockets in
    this process) or ``guest:<socket id>``. ``check()`` takes a token for one
    message and returns True when it may be stored; a refusal counts a
    strike, a pass clears them. ``exhausted`` is True once more than
    KAIWA_RATE_STRIKES messages in a row were refused (close with 4429).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.strikes = 0

    async def check(self) -> bool:
        if await message_post_allowed_async(self.key):
            self.strikes = 0
            return True
        self.strikes += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.strikes > settings.KAIWA_RATE_STRIKES

    @staticmethod
    def retry_after_seconds() -> int:
        """Whole seconds until an empty message bucket holds a token again (>= 1)."""
        rate = settings.KAIWA_RATE_MESSAGES_PER_SECOND
        return max(1, math.ceil(1 / rate)) if rate > 0 else 1

    @staticmethod
    def detail() -> str:
        """The human text of the ``rate_limited`` error frame."""
        rate = settings.KAIWA_RATE_MESSAGES_PER_SECOND
        return f"Too many messages: at most {rate:g} per second; this one was not stored."


_messages: token_bucket.Limiter | None = None
_messages_built = False
# Sockets post from the event loop, REST posts from Django's request threads,
# and ForgetfulMemoryStorage sweeps its dict: one lock (uncontended: ~0.1 µs).
_messages_lock = threading.Lock()


def message_post_allowed(key: str) -> bool:
    """Take a token from the message bucket ``key`` (``user:<id>``, or
    ``guest:<socket id>``); True when the message may be stored. One bucket
    per key in the process, whichever thread asks: a user's sockets and his
    ``POST /api/rooms/<room>/messages/`` share it; with ``REDIS_URL``, one
    window per key across every process (blocking: for request threads).
    Always True with KAIWA_RATE_MESSAGES_PER_SECOND at 0."""
    if settings.KAIWA_RATE_MESSAGES_PER_SECOND <= 0:
        return True
    return limit_store().message_hit_blocking(key) or refused("message")


async def message_post_allowed_async(key: str) -> bool:
    """``message_post_allowed`` from the event loop (sockets): this process's
    bucket, and with ``REDIS_URL`` the window across processes without
    making a well-behaved sender wait for Redis (``cluster_limits.LoopLimits.message_allowed``)."""
    if not _message_post_allowed_here(key):
        return refused("message")
    if settings.KAIWA_RATE_MESSAGES_PER_SECOND <= 0:
        return True
    return await limit_store().message_allowed(key) or refused("message")


def _message_post_allowed_here(key: str) -> bool:
    global _messages, _messages_built
    with _messages_lock:
        if not _messages_built:
            _messages = bucket(settings.KAIWA_RATE_MESSAGES_PER_SECOND, settings.KAIWA_RATE_BURST)
            _messages_built = True
        return _messages is None or _messages.consume(key)


def message_limits_reset() -> None:
    """Forget every message bucket (tests, a changed setting)."""
    global _messages, _messages_built
    with _messages_lock:
        _messages, _messages_built = None, False


# --- sockets per user -----------------------------------------------------------------


async def user_socket_acquire(user_id: int | str, socket_id: str) -> bool:
    """Count socket ``socket_id`` as one more open socket of user ``user_id``
    (or of the guests of one IP, keyed ``"ip:<address>"``).

    Returns False (and counts nothing) when the user already has
    KAIWA_MAX_CONNECTIONS_PER_USER sockets open: in this process, and with
    ``REDIS_URL`` in all processes together. Pair every True with one
    ``user_socket_release``.
    """
    cap = settings.KAIWA_MAX_CONNECTIONS_PER_USER
    sockets = get_limits().sockets
    count = sockets.get(user_id, 0)
    if cap > 0 and count >= cap:
        return refused("sockets")
    if cap > 0 and not await limit_store().socket_acquire(str(user_id), socket_id, cap):
        return refused("sockets")
    sockets[user_id] = sockets.get(user_id, 0) + 1
    return True


async def user_socket_release(user_id: int | str, socket_id: str) -> None:
    """Undo one ``user_socket_acquire`` that returned True."""
    sockets = get_limits().sockets
    count = sockets.get(user_id, 0) - 1
    if count > 0:
        sockets[user_id] = count
    else:
        sockets.pop(user_id, None)
    await limit_store().socket_release(str(user_id), socket_id)


# --- connect rate per IP ---------------------------------------------------------------


def client_ip(scope: Mapping[str, Any]) -> str | None:
    """The client address of an ASGI scope (``scope["client"][0]``), or None."""
    client = scope.get("client")
    return str(client[0]) if client else None


async def connect_allowed(ip: str | None) -> bool:
    """Take a token from ``ip``'s connect bucket (with ``REDIS_URL``: a hit in
    its window across every process); True when the handshake may go on.

    Always True without an address or with the limit off.
    """
    if ip is None or get_limits().connects is None:
        return True
    return await limit_store().connect_hit(ip) or refused("connect")


def retry_after_seconds() -> int:
    """Whole seconds until an empty connect bucket holds one token again (>= 1)."""
    rate = settings.KAIWA_CONNECT_RATE_PER_IP
    return max(1, math.ceil(1 / rate)) if rate > 0 else 1


def ConnectRateLimit(application: ASGIApp) -> ASGIApp:  # named like Channels' own wrappers
    """ASGI middleware for WebSocket handshakes: the per-IP connect rate.

    A handshake over the limit is refused with HTTP 429, ``Retry-After`` and a
    text body, through the ASGI ``websocket.http.response`` extension
    (uvicorn has it); a server without it gets a plain refusal (HTTP 403).
    Put it outermost, so that a refused handshake costs no database work.
    """

    async def limiter(scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket" or await connect_allowed(client_ip(scope)):
            return await application(scope, receive, send)
        logger.info("connect rate of %s exceeded: refused with 429", client_ip(scope))
        await receive()  # websocket.connect
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return None
        headers = [
            (b"retry-after", str(retry_after_seconds()).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
        ]
        await send(
            {
                "type": "websocket.http.response.start",
                "status": HTTP_TOO_MANY_REQUESTS,
                "headers": headers,
            }
        )
        body = b"Too many connections from your address: retry later.\n"
        await send({"type": "websocket.http.response.body", "body": body})
        return None

    return limiter


@receiver(setting_changed)
def _message_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("KAIWA_RATE_MESSAGES_PER_SECOND", "KAIWA_RATE_BURST"):
        message_limits_reset()

"""uvicorn's h11 HTTP/1.1 protocol with a deadline on every request head.

Why h11 rather than uvicorn's default httptools: h11 bounds the bytes it
buffers for an incomplete request head (uvicorn's
``h11_max_incomplete_event_size``, Kaiwa's KAIWA_MAX_HEADER_BYTES) and uvicorn
answers 400 beyond it; with httptools (llhttp) uvicorn collects a head of any
size (a 64 MB header was accepted). The cost in requests per second is measured in docs/performance.md ("Figures
once kept in the code"): small beside a rendered page. Once upgraded, WebSockets no longer go
through the HTTP parser.

Why a subclass: none of uvicorn's HTTP protocols closes a connection that never
completes its request head. uvicorn arms its keep-alive timer
(``timeout_keep_alive``) only after a response, and disarms it on the next
byte received, so a client that connects and sends nothing, or sends a header
byte every few seconds (slowloris), holds its socket forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from django.conf import settings
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutH11Protocol(H11Protocol):
    """H11Protocol that closes a connection whose request head (request line
    and headers) is not complete KAIWA_HEADER_TIMEOUT_SECONDS (seconds) after
    it started: after the connection is made for the first request, after the
    first byte of the next one on a keep-alive connection. Between requests
    uvicorn's keep-alive timer still applies. This is nginx's
    ``client_header_timeout`` (a deadline for the whole head, not a gap between
    reads) on uvicorn's own timer pattern (``loop.call_later``). The connection
    is closed without a response.

    Relies only on the asyncio protocol callbacks (``connection_made``,
    ``data_received``, ``connection_lost``) and on two public attributes that
    H11Protocol sets: ``transport`` and ``conn``, its ``h11.Connection``, whose
    ``their_state`` is ``h11.IDLE`` exactly while no complete head has arrived.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout: float = settings.KAIWA_HEADER_TIMEOUT_SECONDS
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_timer_arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.head_timer_arm()
        else:  # a complete head (or an error, or a WebSocket upgrade)
            self.head_timer_cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_timer_cancel()
        super().connection_lost(exc)

    def head_timer_arm(self) -> None:
        """Start the deadline unless it is already running."""
        if self.head_timer is None:
            loop = asyncio.get_running_loop()
            self.head_timer = loop.call_later(self.head_timeout, self.transport.close)

    def head_timer_cancel(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

"""The benchmark's load generator: many WebSocket clients on picows.

picows (a Cython WebSocket library) parses frames in C, so one load-generator
process can receive well over 100,000 frames/s and the client is not what is
measured. Every sent message carries its send time; each receiver computes
end-to-end latency = receive time - send time (same host, same clock:
``time.perf_counter_ns``).

Message text: ``"<sender>:<n>:<send time ns>"``, sent as ``{"message": text}``
(the tutorial's frame, which Kaiwa and the raw app accept as well).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

CONNECT_BATCH = 50  # concurrent handshakes at a time (the tutorial's pool dislikes more)


@dataclass
class Tally:
    """What all clients of one run received."""

    latencies_ns: list[int] = field(default_factory=list)
    deliveries: int = 0
    last_receive_ns: int = 0
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, sent_ns: int) -> None:
        now = time.perf_counter_ns()
        self.latencies_ns.append(now - sent_ns)
        self.deliveries += 1
        self.last_receive_ns = now
        if self.expected and self.deliveries >= self.expected:
            self.done.set()


class Client(WSListener):
    """One benchmark client; counts chat messages into a shared ``Tally``."""

    def __init__(self, tally: Tally, needs_ready: bool) -> None:
        self.tally = tally
        self.transport: WSTransport | None = None
        self.ready = asyncio.Event()
        if not needs_ready:
            self.ready.set()
        self.closed_code: Any = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.closed_code = frame.get_close_code()
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        data = orjson.loads(frame.get_payload_as_bytes())
        text = data.get("message")
        if isinstance(text, str):
            self.tally.add(int(text.rsplit(":", 1)[1]))
        elif data.get("type") == "ready":
            self.ready.set()

    def send_message(self, sender: int, n: int) -> None:
        text = f"{sender}:{n}:{time.perf_counter_ns()}"
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps({"message": text}))


@dataclass
class Fleet:
    """Connected clients of one run, grouped by room."""

    rooms: list[list[Client]]
    connect_seconds: float
    failures: int


async def connect_fleet(
    url_for_room: Sequence[str],
    members: int,
    tokens: Sequence[str] | None,
    tally: Tally,
    needs_ready: bool,
    batch_size: int = CONNECT_BATCH,
) -> Fleet:
    """Open ``members`` clients in each room URL of ``url_for_room``,
    ``batch_size`` handshakes at a time.

    ``tokens``: Bearer tokens, one per client (None: anonymous). Waits until
    each Kaiwa client got ``ready`` (``needs_ready``). Returns the fleet; the
    failures are clients that could not connect or were closed.
    """
    started = time.perf_counter()
    plan = [(r, m) for r in range(len(url_for_room)) for m in range(members)]
    rooms: list[list[Client]] = [[] for _ in url_for_room]
    failures = 0

    async def one(index: int, room: int) -> Client | None:
        headers = {"Authorization": f"Bearer {tokens[index]}"} if tokens else None
        try:
            _, listener = await ws_connect(
                lambda: Client(tally, needs_ready),
                url_for_room[room],
                extra_headers=headers,
                websocket_handshake_timeout=30,
            )
            assert isinstance(listener, Client)
            await asyncio.wait_for(listener.ready.wait(), 30)
            return listener
        except Exception:
            return None

    for start in range(0, len(plan), batch_size):
        batch = plan[start : start + batch_size]
        results = await asyncio.gather(*(one(start + i, r) for i, (r, _) in enumerate(batch)))
        for (room, _), client in zip(batch, results, strict=True):
            if client is None:
                failures += 1
            else:
                rooms[room].append(client)
    return Fleet(rooms, time.perf_counter() - started, failures)


async def close_fleet(fleet: Fleet) -> None:
    for room in fleet.rooms:
        for client in room:
            if client.transport is not None:
                client.transport.send_close()
                client.transport.disconnect()
    await asyncio.sleep(0.2)


def percentile(sorted_values: Sequence[int], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted values, nearest-rank method."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def summarize(tally: Tally, started_ns: int, sent: int, fleet: Fleet) -> dict[str, float]:
    """Deliveries/s, latency percentiles (ms), loss, connect figures of one run."""
    lat = sorted(tally.latencies_ns)
    elapsed = max(1, tally.last_receive_ns - started_ns) / 1e9
    return {
        "sent": sent,
        "expected": tally.expected,
        "delivered": tally.deliveries,
        "lost": max(0, tally.expected - tally.deliveries),
        "deliveries_per_s": tally.deliveries / elapsed if tally.deliveries else 0.0,
        "p50_ms": percentile(lat, 50) / 1e6,
        "p90_ms": percentile(lat, 90) / 1e6,
        "p99_ms": percentile(lat, 99) / 1e6,
        "max_ms": (lat[-1] / 1e6) if lat else float("nan"),
        "connect_s": fleet.connect_seconds,
        "connect_failures": fleet.failures,
    }


async def run_burst(
    urls: Sequence[str],
    members: int,
    messages_per_room: int,
    tokens: Sequence[str] | None,
    needs_ready: bool,
    wait_s: float = 60.0,
    on_start: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Burst: in every room, ``messages_per_room`` distinct members each send one
    message at the same instant; wait for every delivery (or ``timeout`` s)."""
    tally = Tally()
    fleet = await connect_fleet(urls, members, tokens, tally, needs_ready)
    senders = [(c, i) for room in fleet.rooms for i, c in enumerate(room[:messages_per_room])]
    tally.expected = sum(min(messages_per_room, len(r)) * len(r) for r in fleet.rooms)
    await asyncio.sleep(0.5)  # let joins settle
    on_start()
    started = time.perf_counter_ns()
    for client, i in senders:
        client.send_message(i, 0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.done.wait(), wait_s)
    result = summarize(tally, started, len(senders), fleet)
    await close_fleet(fleet)
    return result


async def run_paced(
    url: str,
    members: int,
    messages_per_s: float,
    seconds: float,
    tokens: Sequence[str] | None,
    needs_ready: bool,
    on_start: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Fixed rate: ``messages_per_s`` messages into one room of ``members``
    for ``seconds`` (deliveries/s = messages_per_s x members)."""
    tally = Tally()
    fleet = await connect_fleet([url], members, tokens, tally, needs_ready)
    room = fleet.rooms[0]
    total = int(messages_per_s * seconds)
    tally.expected = total * len(room)
    await asyncio.sleep(0.5)
    on_start()
    started = time.perf_counter_ns()
    interval = 1.0 / messages_per_s
    t0 = time.perf_counter()
    for n in range(total):
        delay = t0 + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        room[n % len(room)].send_message(n % len(room), n)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.done.wait(), 30)
    result = summarize(tally, started, total, fleet)
    await close_fleet(fleet)
    return result


async def run_idle(
    url: str,
    count: int,
    tokens: Sequence[str] | None,
    needs_ready: bool,
    rss_of: Callable[[], int],
    batch_size: int = CONNECT_BATCH,
) -> dict[str, float]:
    """Open ``count`` idle connections, ``batch_size`` handshakes at a time
    (``count`` at once: a connect storm); ``rss_of()`` returns the server's
    RSS (bytes), read before and after. Returns connects, failures, seconds
    and bytes per connection."""
    tally = Tally()
    before = rss_of()
    fleet = await connect_fleet([url], count, tokens, tally, needs_ready, batch_size)
    await asyncio.sleep(1.0)
    after = rss_of()
    connected = sum(len(r) for r in fleet.rooms)
    await close_fleet(fleet)
    return {
        "connections": connected,
        "connect_failures": fleet.failures,
        "connect_s": fleet.connect_seconds,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "bytes_per_connection": (after - before) / max(1, connected),
    }

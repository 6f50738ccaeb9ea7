"""Slow consumers (PROTOCOL.md section 6, close 4408): readers that never read
while a room floods. The server's outbound buffer per socket is bounded
(KAIWA_OUTBOUND_MAX_MESSAGES / _BYTES, set small here), so its memory stays
bounded whatever the flood; the slow sockets are closed with 4408 and resume
with ``after=`` missing nothing; the other members receive everything.

A client that never reads first fills the TCP buffers (its receive buffer is
set small here, as a phone on a bad network would have), then the server's
transport pushes back, then the socket's outbound queue fills up.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
import statistics
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.kaiwa_process import KaiwaServer, base_env, create_users
from tests.reliability.faults import rss_kib
from tests.wsclient import Client, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

OUTBOUND_MESSAGES = 64
OUTBOUND_BYTES = 256 * 1024  # characters, counted by the server as an upper bound on bytes
# A long message of random emoji: 8,000 bytes of UTF-8, which permessage-deflate
# cannot shrink; its frame carries it twice (``message`` and ``html``): 16 KB.
# The whole flood must take less than uvicorn's keepalive (20 s ping + 20 s
# pong), which would fail the never-reading sockets before their 4408.
_rng = random.Random(7)
TEXT = "".join(chr(0x1F300 + _rng.randrange(0x300)) for _ in range(2000))
WARMUP = 500  # messages before the measurement: the heap of a fresh process grows, then levels
FLOOD = 1500  # messages measured: 24 MB to each reader
SLOW = 4  # readers that never read
FAST = ("bob", "carol")  # readers that read everything
POSTERS = ("alice", "dave")
# Stated bound: once warm, the server's peak resident memory grows by less than
# this during the flood. Held: SLOW x (outbound queue + the transport's 64 KiB
# high-water mark) is under 2 MiB. A server that kept the flood for the slow
# readers would hold FLOOD x 16 KB = 23 MiB more.
RSS_GROWTH_BOUND_MIB = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[KaiwaServer]:
    tmp = tmp_path_factory.mktemp("slow")
    env = base_env(
        # Production mode: with DEBUG on, Django keeps the last 9,000 SQL queries
        # (each INSERT with its 16 KB text) in memory, which would drown the measure.
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        KAIWA_DATA_DIR=str(tmp / "data"),
        KAIWA_OUTBOUND_MAX_MESSAGES=str(OUTBOUND_MESSAGES),
        KAIWA_OUTBOUND_MAX_BYTES=str(OUTBOUND_BYTES),
        KAIWA_RATE_MESSAGES_PER_SECOND="0",
        KAIWA_RESUME_LIMIT=str(FLOOD),
        KAIWA_CONNECT_RATE_PER_IP="0",
    )
    create_users(env, *POSTERS, *FAST, "erin")
    server = KaiwaServer(env, tmp / "serve.log").start()
    yield server
    server.stop()


async def open_slow_reader(server: KaiwaServer, room: str, token: str) -> ClientConnection:
    """A socket with a 4 KiB receive buffer whose client reads nothing after
    ``ready``: the websockets client stops reading its socket when one frame is
    queued (``max_queue=1``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    client = await Client.open(server, room, token=token, sock=sock, max_queue=1, compression=None)
    await client.until_ready()
    return client.ws


async def drain_until_closed(ws: ClientConnection) -> tuple[list[int], int | None]:
    """Read everything left, return the seqs received and the close code."""
    import json

    seqs = []
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] == "message":
                seqs.append(frame["seq"])
    except ConnectionClosed as closed:
        return seqs, closed.rcvd.code if closed.rcvd else None


async def test_slow_readers_are_closed_with_4408_and_memory_stays_bounded(server):
    assert server.proc is not None
    room = room_name("slow")
    tokens = {name: server.token(name) for name in (*POSTERS, *FAST, "erin")}
    fast = [await Client.join(server, room, token=tokens[name]) for name in FAST]
    posters = [await Client.join(server, room, token=tokens[name]) for name in POSTERS]
    sent_at: dict[str, float] = {}
    latencies: list[float] = []

    async def post(client: Client, name: str, start: int, count: int) -> None:
        for i in range(start, start + count):
            cid = f"{name}-{i}"
            sent_at[cid] = time.monotonic()
            await client.say(TEXT, client_id=cid)
            # Wait for the ack every 8 messages: a steady flood, not one burst.
            if i % 8 == 7 or i == start + count - 1:
                while (await client.recv())["client_id"] != cid:
                    pass

    async def read_all(client: Client, count: int) -> list[int]:
        seqs = []
        while len(seqs) < count:
            frame = await client.recv(timeout=60)
            assert frame["type"] == "message", frame
            seqs.append(frame["seq"])
            latencies.append(time.monotonic() - sent_at[frame["client_id"]])
        return seqs

    peak_rss = 0

    async def sample_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, rss_kib(server.proc.pid)["VmRSS"])
            await asyncio.sleep(0.05)

    async def flood(start: int, count: int) -> list[list[int]]:
        each = count // len(posters)
        results = await asyncio.gather(
            *(
                post(client, name, start // len(posters), each)
                for client, name in zip(posters, POSTERS, strict=True)
            ),
            *(read_all(client, count) for client in fast),
        )
        return results[len(posters) :]

    for seqs in await flood(0, WARMUP):
        assert seqs == list(range(1, WARMUP + 1))
    latencies.clear()
    slow = [await open_slow_reader(server, room, tokens["erin"]) for _ in range(SLOW)]
    before = rss_kib(server.proc.pid)
    sampler = asyncio.create_task(sample_rss())
    started = time.monotonic()
    measured = await flood(WARMUP, FLOOD)
    elapsed = time.monotonic() - started
    sampler.cancel()
    after = rss_kib(server.proc.pid)

    # The other members received everything, in order, without a gap.
    for seqs in measured:
        assert seqs == list(range(WARMUP + 1, WARMUP + FLOOD + 1))

    # The slow readers: what was in the pipes, then 4408; then they resume.
    resumed_figures = []
    for ws in slow:
        seqs, code = await drain_until_closed(ws)
        assert code == 4408, f"closed with {code} after {len(seqs)} messages"
        assert seqs == list(range(WARMUP + 1, WARMUP + len(seqs) + 1))
        last = WARMUP + len(seqs)
        resumed = await Client.join(server, room, token=tokens["erin"], after=last)
        assert [f["seq"] for f in resumed.backlog] == list(range(last + 1, WARMUP + FLOOD + 1))
        await resumed.close()
        resumed_figures.append(len(seqs))

    growth_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
    sampled_growth_mib = (peak_rss - before["VmRSS"]) / 1024
    flood_mib = FLOOD * 2 * len(TEXT.encode()) / 2**20  # text and html in each frame
    latencies.sort()
    print(
        f"\nFIGURES slow-consumers: after a warm-up of {WARMUP}, flood={FLOOD} messages of "
        f"16,000 bytes of text and html ({flood_mib:.0f} MiB) "
        f"in {elapsed:.1f} s to {len(FAST)} fast readers and {SLOW} that never read; "
        f"outbound queue {OUTBOUND_MESSAGES} frames / {OUTBOUND_BYTES // 1024} KiB; "
        f"RSS before {before['VmRSS'] / 1024:.0f} MiB, peak growth {growth_mib:.1f} MiB "
        f"(VmHWM; sampled {sampled_growth_mib:.1f} MiB), bound {RSS_GROWTH_BOUND_MIB} MiB; "
        f"slow readers got {resumed_figures} messages, then 4408, then resumed the rest; "
        f"fast readers: lost=0, duplicated=0, latency p50 "
        f"{statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    assert flood_mib > 2 * RSS_GROWTH_BOUND_MIB  # holding the flood would break the bound
    assert growth_mib < RSS_GROWTH_BOUND_MIB
    for client in fast:
        await client.ping()  # nothing left queued for the fast readers
    for client in fast + posters:
        await client.close()

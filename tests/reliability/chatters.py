"""Chat clients that behave as PROTOCOL.md asks under faults, and check it.

A ``Chatter`` is one user in one room: it posts its messages one at a time
with ``client_id``s, each acknowledged by its own broadcast, and reports
what it has read with ``read`` frames as the room page does (at most one a
second, READ_INTERVAL_SECONDS); on error
``unavailable`` it re-sends the same ``client_id`` after a backoff; when its
connection drops it reconnects (its home server first, then the others) with
exponential backoff and jitter, resumes with ``after=<highest seq seen>``,
and re-sends what was not acknowledged. All the while it checks that its
stream of ``message`` frames never skips nor repeats a ``seq``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.kaiwa_process import KaiwaServer
from tests.wsclient import Rest, bearer

RECV_TIMEOUT = 45.0  # seconds without any frame before a chatter gives up
READ_INTERVAL_SECONDS = 1.0  # the page's read throttle (client.js)


@dataclass
class Progress:
    """Acknowledged messages of all chatters, to time a fault mid-run."""

    acked: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def ack(self) -> None:
        self.acked += 1
        self.changed.set()

    async def reach(self, count: int) -> None:
        while self.acked < count:
            self.changed.clear()
            await self.changed.wait()


class Chatter:
    """One user posting ``count`` messages to ``room`` over WebSocket.

    ``servers``: the home server first, then where to go when it is down.
    After ``run()``: ``stream`` holds every message frame received in order,
    one per seq, and the counters say what happened on the way.
    """

    def __init__(
        self,
        name: str,
        token: str,
        servers: Sequence[KaiwaServer],
        room: str,
        count: int,
        prefix: str,
        progress: Progress,
        pace: float = 0.01,
    ) -> None:
        self.name = name
        self.token = token
        self.servers = list(servers)
        self.room = room
        self.count = count
        self.prefix = prefix
        self.progress = progress
        self.pace = pace
        self.stream: list[dict[str, Any]] = []
        self.next = 0  # index of the next message to send
        self.pending: str | None = None  # client_id sent, not yet acknowledged
        self.sent_ids: set[str] = set()  # client_ids sent at least once
        self.retried: set[str] = set()  # client_ids sent more than once
        self.sends = 0  # frames sent, first tries and retries
        self.unavailable = 0  # error frames `unavailable`
        self.reconnects = 0
        self.close_codes: Counter[int | None] = Counter()
        self.servers_used: Counter[int] = Counter()  # port -> sessions
        self.retry_echoes = 0  # a retried message seen twice: as the retry's ack and in-stream
        self.read_seq = 0  # highest seq reported with a read frame
        self.read_at = 0.0  # loop time of the last read frame (s)
        self.reads_sent = 0

    @property
    def last_seq(self) -> int:
        return self.stream[-1]["seq"] if self.stream else 0

    def client_id(self, i: int) -> str:
        return f"{self.prefix}-{self.name}-{i}"

    async def run(self, total: int) -> None:
        """Post every message, then read until the room's seq reaches ``total``."""
        backoff = 0.05
        while True:
            ws = await self._connect()
            try:
                await self._session(ws, total)
                await ws.close()
                return
            except ConnectionClosed as closed:
                self.close_codes[closed.rcvd.code if closed.rcvd else None] += 1
            self.reconnects += 1
            await asyncio.sleep(backoff * (1 + random.random()))
            backoff = min(backoff * 2, 1.0)

    async def _connect(self) -> ClientConnection:
        backoff = 0.05
        while True:
            for server in self.servers:
                url = f"{server.ws}/ws/chat/{self.room}/?after={self.last_seq}"
                try:
                    ws = await connect(
                        url,
                        additional_headers=bearer(self.token),
                        proxy=None,
                        open_timeout=10,
                        close_timeout=2,
                    )
                except (OSError, InvalidHandshake, TimeoutError):
                    continue
                self.servers_used[server.port] += 1
                return ws
            await asyncio.sleep(backoff * (1 + random.random()))
            backoff = min(backoff * 2, 1.0)

    async def _session(self, ws: ClientConnection, total: int) -> None:
        while True:  # the backlog, then ready
            frame = await self._recv(ws)
            if frame["type"] == "ready":
                break
            self._take(frame)
        if self.pending is not None:  # not acknowledged before the drop: re-send
            if any(f.get("client_id") == self.pending for f in self.stream):
                self._acked()  # the backlog holds it: it was stored
            else:
                await self._send(ws)
        while True:
            if self.pending is None and self.next < self.count:
                await asyncio.sleep(self.pace)
                self.pending = self.client_id(self.next)
                await self._send(ws)
            if self.next >= self.count and self.last_seq >= total:
                return
            frame = await self._recv(ws)
            if frame["type"] == "error":
                assert frame["code"] in ("unavailable", "rate_limited"), frame
                self.unavailable += frame["code"] == "unavailable"
                if self.pending is not None:
                    await asyncio.sleep(0.1 + 0.2 * random.random())
                    await self._send(ws)
                continue
            self._take(frame)
            await self._read(ws)

    async def _read(self, ws: ClientConnection) -> None:
        """Report the highest seq seen, at most once per READ_INTERVAL_SECONDS."""
        now = asyncio.get_running_loop().time()
        if self.last_seq > self.read_seq and now - self.read_at >= READ_INTERVAL_SECONDS:
            self.read_seq, self.read_at = self.last_seq, now
            self.reads_sent += 1
            await ws.send(json.dumps({"type": "read", "seq": self.read_seq}))

    async def _send(self, ws: ClientConnection) -> None:
        assert self.pending is not None
        i = int(self.pending.rsplit("-", 1)[1])
        if self.pending in self.sent_ids:
            self.retried.add(self.pending)
        self.sent_ids.add(self.pending)
        self.sends += 1
        frame = {"type": "message", "message": f"{self.name} says {i}", "client_id": self.pending}
        await ws.send(json.dumps(frame))

    async def _recv(self, ws: ClientConnection) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no frame for {RECV_TIMEOUT} s at seq {self.last_seq}, "
                f"sent {self.next}/{self.count}, pending {self.pending}"
            ) from None
        frame = json.loads(raw)
        assert isinstance(frame, dict), frame
        return frame

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind in ("pong", "read"):
            return
        assert kind == "message", f"{self.name}: unexpected frame {frame}"
        own = frame.get("client_id") == self.pending and frame["username"] == self.name
        seq = frame["seq"]
        if seq == self.last_seq + 1:
            self.stream.append(frame)
        elif own and self.pending in self.retried:
            # The ack of a retry (PROTOCOL.md: the original, to the sender only),
            # out of the stream's order; the stream brings it in order too.
            known = [f for f in self.stream if f["seq"] == seq]
            if known:
                assert known[0] == frame, (known[0], frame)
                self.retry_echoes += 1
        elif seq <= self.last_seq and frame == self.stream[seq - 1] and self._is_retried(frame):
            self.retry_echoes += 1  # in-stream copy of a retry already acknowledged
        else:
            raise AssertionError(
                f"{self.name}: seq {seq} after {self.last_seq}: "
                f"{'a gap' if seq > self.last_seq else 'a duplicate'} ({frame})"
            )
        if own:
            self._acked()

    def _is_retried(self, frame: dict[str, Any]) -> bool:
        return frame["username"] == self.name and frame.get("client_id") in self.retried

    def _acked(self) -> None:
        self.pending = None
        self.next += 1
        self.progress.ack()


def make_chatters(
    names_tokens: Sequence[tuple[str, str]],
    homes: Sequence[Sequence[KaiwaServer]],
    room: str,
    count: int,
    prefix: str,
    progress: Progress,
    pace: float = 0.01,
) -> list[Chatter]:
    """One Chatter per (name, token), the i-th homed on ``homes[i % len(homes)]``."""
    return [
        Chatter(name, token, homes[i % len(homes)], room, count, prefix, progress, pace=pace)
        for i, (name, token) in enumerate(names_tokens)
    ]


@dataclass
class Outcome:
    """What a fault run produced, as printed in docs/reliability.md."""

    sent: int  # distinct messages (client_ids) posted
    frames_sent: int  # message frames sent, retries included
    stored: int
    lost: int
    duplicated: int
    unavailable: int
    reconnects: int
    retry_echoes: int
    close_codes: Counter[int | None]

    def line(self, name: str) -> str:
        codes = ", ".join(f"{code}x{n}" for code, n in sorted(self.close_codes.items(), key=str))
        return (
            f"FIGURES {name}: messages sent={self.sent} (frames incl. retries="
            f"{self.frames_sent}), stored={self.stored}, lost={self.lost}, "
            f"duplicated={self.duplicated}, 'unavailable' errors={self.unavailable}, "
            f"reconnects={self.reconnects} (close codes seen: {codes or 'none'}), "
            f"retry acks also seen in-stream={self.retry_echoes}"
        )


async def check_outcome(server: KaiwaServer, token: str, chatters: list[Chatter]) -> Outcome:
    """Every chatter holds the same gapless stream 1..N; the database holds each
    client_id exactly once (read over REST from ``server``)."""
    expected = {c.client_id(i) for c in chatters for i in range(c.count)}
    first = chatters[0].stream
    for chatter in chatters:
        assert [f["seq"] for f in chatter.stream] == list(range(1, len(chatter.stream) + 1))
        assert chatter.stream == first, f"{chatter.name} holds another stream"
    stored: list[dict[str, Any]] = []
    async with Rest(server, token) as rest:
        while page := await rest.list_messages(chatters[0].room, after=len(stored), limit=200):
            stored.extend(page)
    assert stored == first, "the database and the clients disagree"
    ids = Counter(f.get("client_id") for f in stored)
    duplicated = sum(n - 1 for n in ids.values() if n > 1)
    lost = len(expected - set(ids))
    assert (lost, duplicated) == (0, 0), (lost, duplicated)
    assert set(ids) == expected, set(ids) ^ expected
    close_codes: Counter[int | None] = Counter()
    for chatter in chatters:
        close_codes.update(chatter.close_codes)
    return Outcome(
        sent=len(expected),
        frames_sent=sum(c.sends for c in chatters),
        stored=len(stored),
        lost=lost,
        duplicated=duplicated,
        unavailable=sum(c.unavailable for c in chatters),
        reconnects=sum(c.reconnects for c in chatters),
        retry_echoes=sum(c.retry_echoes for c in chatters),
        close_codes=close_codes,
    )

"""The benchmark's load generator: many WebSocket clients on picows.

picows (a Cython WebSocket library) parses frames in C, so one load-generator
process can receive well over 100,000 frames/s and the client is not what is
measured. Every sent message carries its send time; each receiver computes
end-to-end latency = receive time - send time (same host, same clock:
``time.perf_counter_ns``).

Message text: ``"<sender>:<n>:<send time ns>"``, sent as ``{"message": text}``
(the tutorial's frame, which Kaiwa and the raw app accept as well), or with a
``client_id`` when the run measures post-to-acknowledgement latency.

Clients behave like the room page (``kaiwa/chat/static/chat/client.js``) when
``reads`` is ``"page"``: after each message shown they acknowledge with
``{"type": "read", "seq": N}``, at most once per READ_INTERVAL_SECONDS per
room (a leading send, then one trailing send with the latest seq), exactly as
the page's ``markRead`` does. ``"each"`` sends one ``read`` per message, as a
naive bot or the version-1 page did.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

CONNECT_BATCH = 50  # concurrent handshakes at a time (the tutorial's pool dislikes more)
# The page's read throttle (client.js READ_INTERVAL_MS), seconds.
READ_INTERVAL_SECONDS = 1.0


@dataclass
class Tally:
    """What all clients of one run received."""

    latencies_ns: list[int] = field(default_factory=list)
    ack_latencies_ns: list[int] = field(default_factory=list)
    deliveries: int = 0
    reads_sent: int = 0
    errors: int = 0
    gaps: int = 0  # seqs a client skipped (a lost delivery)
    resets: int = 0
    events: int = 0  # edit, delete and reaction frames received (room events with a seq)
    typing: int = 0  # typing frames received
    presence: int = 0  # presence frames received
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
    """One benchmark client; counts chat messages into a shared ``Tally``.

    ``reads``: None (only listens), ``"page"`` or ``"each"`` (see the module
    docstring). ``seq`` is the highest room seq seen (for a resume with
    ``after=``); ``ready_ns`` the perf_counter_ns of its ``ready`` frame.
    """

    def __init__(self, tally: Tally, needs_ready: bool, reads: str | None = None) -> None:
        self.tally = tally
        self.reads = reads
        self.transport: WSTransport | None = None
        self.ready = asyncio.Event()
        if not needs_ready:
            self.ready.set()
        self.ready_ns = 0
        self.closed_code: WSCloseCode | None = None
        self.closed = asyncio.Event()
        self.seq = 0
        self.read_seq = 0
        self.read_at = -1e9  # loop time of the last read sent (s)
        self.read_timer: asyncio.TimerHandle | None = None
        self.acks: dict[str, int] = {}  # client_id -> send time (ns)
        self.last_id: str | None = None  # the newest message seen (to react to)
        self.own_ids: list[str] = []  # this client's own messages (to edit)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.ready.is_set():  # a server without `ready`: connected is ready
            self.ready_ns = time.perf_counter_ns()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed.set()
        if self.read_timer is not None:
            self.read_timer.cancel()

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
            self._on_message(data, text)
        elif data.get("type") == "ready":
            self.seq = max(self.seq, data.get("seq", 0))
            self.ready_ns = time.perf_counter_ns()
            self.ready.set()
        elif data.get("type") in ("reaction", "delete"):
            self._on_event(data)
        elif data.get("type") == "typing":
            self.tally.typing += 1
        elif data.get("type") == "presence":
            self.tally.presence += 1
        elif data.get("type") == "error":
            self.tally.errors += 1
        elif data.get("type") == "reset":  # the page reloads history over REST
            self.tally.resets += 1
            self.seq = max(self.seq, data.get("seq", 0))

    def _on_event(self, data: dict[str, Any]) -> None:
        """A room event without text: counted, its seq tracked like a message's."""
        seq = data.get("seq")
        if isinstance(seq, int) and seq > self.seq:
            if self.seq and seq > self.seq + 1:
                self.tally.gaps += seq - self.seq - 1
            self.seq = seq
            self.tally.events += 1

    def _on_message(self, data: dict[str, Any], text: str) -> None:
        if data.get("type") == "edit":
            self._on_event(data)
            return
        if data.get("type", "message") == "message" and isinstance(data.get("id"), str):
            self.last_id = data["id"]
        seq = data.get("seq")
        if isinstance(seq, int):
            if self.seq and seq > self.seq + 1:
                self.tally.gaps += seq - self.seq - 1
            if seq <= self.seq:
                return  # a duplicate would not be shown twice by the page
            self.seq = seq
        sent_ns = self.acks.pop(data.get("client_id") or "", None)
        if sent_ns is not None and isinstance(data.get("id"), str):
            self.own_ids.append(data["id"])
            del self.own_ids[:-5]
        if sent_ns is not None:
            self.tally.ack_latencies_ns.append(time.perf_counter_ns() - sent_ns)
        if self.ready.is_set():
            # A message that is not the benchmark's carries no send time.
            with contextlib.suppress(ValueError, IndexError):
                self.tally.add(int(text.rsplit(":", 1)[1]))
        if self.reads == "each":
            self.send_read()
        elif self.reads == "page":
            self._read_soon()

    def _read_soon(self) -> None:
        """client.js seen(): send now if the last read is a second old, else once later."""
        if self.read_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self.read_at + READ_INTERVAL_SECONDS - loop.time()
        if delay <= 0:
            self.send_read()
        else:
            self.read_timer = loop.call_later(delay, self._read_timer_fired)

    def _read_timer_fired(self) -> None:
        self.read_timer = None
        self.send_read()

    def send_read(self) -> None:
        if self.transport is None or self.closed.is_set() or self.seq <= self.read_seq:
            return
        self.read_seq = self.seq
        self.read_at = asyncio.get_running_loop().time()
        self.tally.reads_sent += 1
        self.transport.send(WSMsgType.TEXT, orjson.dumps({"type": "read", "seq": self.seq}))

    def send_message(self, sender: int, n: int, client_id: str | None = None) -> None:
        now = time.perf_counter_ns()
        text = f"{sender}:{n}:{now}"
        assert self.transport is not None
        frame: dict[str, Any] = {"message": text}
        if client_id is not None:
            frame["client_id"] = client_id
            self.acks[client_id] = now
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Send any frame (typing, react, edit), if the socket is open."""
        if self.transport is not None and not self.closed.is_set():
            self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))

    def close(self) -> None:
        if self.transport is not None and not self.closed.is_set():
            self.transport.send_close()
            self.transport.disconnect()


@dataclass
class Fleet:
    """Connected clients of one run, grouped by room."""

    rooms: list[list[Client]]
    connect_seconds: float
    failures: int


async def open_client(
    url: str,
    token: str | None,
    tally: Tally,
    needs_ready: bool,
    reads: str | None = None,
    timeout_s: float = 30.0,
    after: int | None = None,
) -> Client | None:
    """Connect one client to ``url`` (Bearer ``token`` when given) and wait for
    its ``ready``; None when that fails or takes over ``timeout_s`` seconds.
    With ``after`` (a seq) the client resumes: ``?after=<seq>``."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    listener: Client | None = None

    def make() -> Client:
        client = Client(tally, needs_ready, reads)
        if after is not None:
            client.seq = client.read_seq = after
        return client

    if after is not None:
        url = f"{url}?after={after}"
    try:
        async with asyncio.timeout(timeout_s):
            _, made = await ws_connect(
                make,
                url,
                extra_headers=headers,
                websocket_handshake_timeout=timeout_s,
            )
            assert isinstance(made, Client)
            listener = made
            await listener.ready.wait()
        return listener
    except Exception:  # noqa: BLE001 (any failure to connect counts as a failed client)
        if listener is not None:
            listener.close()
        return None


async def connect_fleet(
    url_for_room: Sequence[str],
    members: int,
    tokens: Sequence[str] | None,
    tally: Tally,
    needs_ready: bool,
    batch_size: int = CONNECT_BATCH,
    reads: str | None = None,
) -> Fleet:
    """Open ``members`` clients in each room URL of ``url_for_room``,
    ``batch_size`` handshakes at a time.

    ``tokens``: Bearer tokens, one per client, so that every client is a
    distinct user (None: anonymous). Waits until each Kaiwa client got
    ``ready`` (``needs_ready``). ``reads``: see Client. Returns the fleet; the
    failures are clients that could not connect or were closed.
    """
    started = time.perf_counter()
    plan = [(r, m) for r in range(len(url_for_room)) for m in range(members)]
    rooms: list[list[Client]] = [[] for _ in url_for_room]
    failures = 0
    for start in range(0, len(plan), batch_size):
        batch = plan[start : start + batch_size]
        results = await asyncio.gather(
            *(
                open_client(
                    url_for_room[r],
                    tokens[start + i] if tokens else None,
                    tally,
                    needs_ready,
                    reads,
                )
                for i, (r, _) in enumerate(batch)
            )
        )
        for (room, _), client in zip(batch, results, strict=True):
            if client is None:
                failures += 1
            else:
                rooms[room].append(client)
    return Fleet(rooms, time.perf_counter() - started, failures)


async def close_fleet(fleet: Fleet) -> None:
    for room in fleet.rooms:
        for client in room:
            client.close()
    await asyncio.sleep(0.2)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted values, nearest-rank method."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def summarize(tally: Tally, started_ns: int, sent: int, fleet: Fleet) -> dict[str, float]:
    """Deliveries/s, latency percentiles (ms), loss, connect figures of one run."""
    lat = sorted(tally.latencies_ns)
    acks = sorted(tally.ack_latencies_ns)
    elapsed = max(1, tally.last_receive_ns - started_ns) / 1e9
    return {
        "sent": sent,
        "expected": tally.expected,
        "delivered": tally.deliveries,
        "lost": max(0, tally.expected - tally.deliveries) + tally.gaps,
        "reads_sent": tally.reads_sent,
        "errors": tally.errors,
        "ack_p99_ms": percentile(acks, 99) / 1e6,
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
    reads: str | None = None,
) -> dict[str, float]:
    """Burst: in every room, ``messages_per_room`` distinct members each send one
    message at the same instant; wait for every delivery (or ``wait_s``
    seconds). ``reads``: how clients acknowledge (see Client)."""
    tally = Tally()
    fleet = await connect_fleet(urls, members, tokens, tally, needs_ready, reads=reads)
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
    if reads == "page":
        await asyncio.sleep(READ_INTERVAL_SECONDS + 0.2)  # the trailing reads, as a page sends
        result["reads_sent"] = tally.reads_sent
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
    reads: str | None = None,
) -> dict[str, float]:
    """Fixed rate: ``messages_per_s`` messages into one room of ``members``
    for ``seconds`` (deliveries/s = messages_per_s x members)."""
    tally = Tally()
    fleet = await connect_fleet([url], members, tokens, tally, needs_ready, reads=reads)
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


# --- connect storms -------------------------------------------------------------------

STORM_TIMEOUT_SECONDS = 10.0  # a handshake + ready slower than this counts as a failure


@dataclass
class Storm:
    """One connect storm: every client connecting at the same instant."""

    clients: list[Client | None]
    ready_ms: list[float]  # time to ready of each client that made it, from the storm's start
    seconds: float  # until the last client was ready (or failed)

    def figures(self, prefix: str) -> dict[str, float]:
        ready = sorted(self.ready_ms)
        return {
            f"{prefix}_connections": len(ready),
            f"{prefix}_failures": sum(c is None for c in self.clients),
            f"{prefix}_all_ready_s": self.seconds,
            f"{prefix}_p50_ms": percentile(ready, 50),
            f"{prefix}_p99_ms": percentile(ready, 99),
            f"{prefix}_per_s": len(ready) / self.seconds if self.seconds else 0.0,
        }


async def storm(
    urls: Sequence[str],
    tokens: Sequence[str] | None,
    tally: Tally,
    needs_ready: bool,
    afters: Sequence[int | None] | None = None,
) -> Storm:
    """Connect one client per URL in ``urls`` at once (``tokens[i]`` for the
    i-th; ``afters[i]`` to resume). Each gets STORM_TIMEOUT_SECONDS to be ready."""
    started = time.perf_counter_ns()
    clients = await asyncio.gather(
        *(
            open_client(
                url,
                tokens[i] if tokens else None,
                tally,
                needs_ready,
                timeout_s=STORM_TIMEOUT_SECONDS,
                after=afters[i] if afters else None,
            )
            for i, url in enumerate(urls)
        )
    )
    seconds = (time.perf_counter_ns() - started) / 1e9
    ready = [(c.ready_ns - started) / 1e6 for c in clients if c is not None and c.ready_ns]
    return Storm(list(clients), ready, seconds)


async def run_storm(
    urls: Sequence[str],
    members: int,
    tokens: Sequence[str] | None,
    needs_ready: bool,
    restart: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, float]:
    """``members`` clients in each room URL (distinct users) connect at once;
    then, with ``restart``, the server is restarted (SIGTERM) and every client
    reconnects at once, resuming with ``after=`` its last seq. Returns the
    figures of both storms (``storm_*`` and ``resume_*``): connections,
    failures, seconds until all were ready, p50/p99 time to ready (ms),
    connections per second."""
    tally = Tally()
    plan = [url for url in urls for _ in range(members)]
    first = await storm(plan, tokens, tally, needs_ready)
    result = first.figures("storm")
    if restart is not None:
        await restart()
        for client in first.clients:
            if client is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.closed.wait(), 30)
        afters = [c.seq if c is not None else None for c in first.clients]
        second = await storm(plan, tokens, tally, needs_ready, afters)
        result |= second.figures("resume")
        await close_fleet(Fleet([[c for c in second.clients if c is not None]], 0, 0))
    else:
        await close_fleet(Fleet([[c for c in first.clients if c is not None]], 0, 0))
    result["resets"] = tally.resets
    return result


# --- team-day: a paced mixed load -------------------------------------------------------


def zipf_room_sizes(rooms: int, largest: int, smallest: int) -> list[int]:
    """Room sizes after Zipf's law (s = 1): the k-th room has ``largest / k``
    members, at least ``smallest``: a few large rooms and many small ones."""
    return [max(smallest, round(largest / k)) for k in range(1, rooms + 1)]


@dataclass
class TeamDay:
    """The shape of a team-day run (defaults: the ``team-day`` scenario)."""

    users: int = 2000
    rooms: int = 300
    largest: int = 500
    smallest: int = 5
    seconds: float = 20.0
    post_every_s: float = 60.0  # mean seconds between two posts of one member in one room
    churn_per_s: float = 0.003  # share of sockets that leave and resume each second
    # Kaiwa targets only (PROTOCOL.md v2): a post is preceded by `typing`, as
    # the page sends it while one types; one reaction per `react_every` posts
    # and one edit per `edit_every` posts, by random members.
    typing: bool = True
    react_every: int = 4  # 0: none
    edit_every: int = 20  # 0: none
    # Each user's tab goes hidden once per `away_every_s` on average (the page
    # then sends `presence` `away` on his sockets, and `online` when he comes
    # back 2 to 10 s later); 0: never.
    away_every_s: float = 60.0
    seed: int = 1


async def run_team_day(
    url_of: Callable[[int], str],
    day: TeamDay,
    tokens: Sequence[str] | None,
    needs_ready: bool,
    on_start: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """A working day in ``day.seconds``: ``day.users`` distinct users in
    ``day.rooms`` rooms of Zipf sizes (``url_of(room index)``), one socket per
    membership, each acknowledging with page-like reads. Members post at a
    human rate (Poisson, one post per ``post_every_s`` per membership, with a
    ``client_id``); sockets leave and come back resuming with ``after=``
    (``churn_per_s``). Returns deliveries/s, delivery and acknowledgement
    latency percentiles (ms), posts, reads, resumes, and lost (gaps and
    clients short of their room's last seq at the end)."""
    rng = random.Random(day.seed)
    sizes = [min(day.users, n) for n in zipf_room_sizes(day.rooms, day.largest, day.smallest)]
    plan = [
        (room, user) for room, n in enumerate(sizes) for user in rng.sample(range(day.users), n)
    ]
    tally = Tally()
    sockets: list[Client | None] = [None] * len(plan)

    async def connect(i: int, after: int | None = None) -> None:
        room, user = plan[i]
        token = tokens[user] if tokens else None
        sockets[i] = await open_client(url_of(room), token, tally, needs_ready, "page", 30, after)

    connect_started = time.perf_counter()
    for start in range(0, len(plan), 100):
        await asyncio.gather(*(connect(i) for i in range(start, min(len(plan), start + 100))))
    connect_s = time.perf_counter() - connect_started
    failures = sum(s is None for s in sockets)
    await asyncio.sleep(0.5)
    on_start()
    started = time.perf_counter_ns()
    resume_ms: list[float] = []
    posts = reactions = edits = 0

    async def post_loop() -> None:
        nonlocal posts
        rate = len(plan) / day.post_every_s  # posts per second, all members
        loop = asyncio.get_running_loop()
        end = loop.time() + day.seconds
        at = loop.time()
        while True:
            at += rng.expovariate(rate)
            if at >= end:
                return
            await asyncio.sleep(max(0.0, at - loop.time()))
            i = rng.randrange(len(plan))
            client = sockets[i]
            if client is not None and not client.closed.is_set():
                posts += 1
                if needs_ready and day.typing:  # Kaiwa: what the page sends as one types
                    client.send_frame({"type": "typing"})
                client.send_message(i, posts, f"td-{posts}")
                if needs_ready:
                    extras(posts)

    def extras(n: int) -> None:
        """A reaction every ``react_every`` posts, an edit every ``edit_every``."""
        nonlocal reactions, edits
        picked = sockets[rng.randrange(len(plan))]
        if picked is None or picked.closed.is_set():
            return
        if day.react_every and n % day.react_every == 0 and picked.last_id is not None:
            reactions += 1
            emoji = rng.choice(["+1", "🎉", "👀"])
            picked.send_frame({"type": "react", "id": picked.last_id, "emoji": emoji, "on": True})
        if day.edit_every and n % day.edit_every == 0 and picked.own_ids:
            edits += 1
            picked.send_frame({"type": "edit", "id": picked.own_ids[-1], "message": "edited"})

    async def churn_one(i: int) -> None:
        client = sockets[i]
        if client is None:
            return
        client.close()
        await asyncio.sleep(rng.uniform(0.1, 1.0))  # a tab switched away and back
        begun = time.perf_counter_ns()
        await connect(i, client.seq)
        if sockets[i] is not None:
            resume_ms.append((time.perf_counter_ns() - begun) / 1e6)

    async def churn_loop() -> None:
        rate = len(plan) * day.churn_per_s
        loop = asyncio.get_running_loop()
        end = loop.time() + day.seconds
        tasks = set()
        while loop.time() < end:
            await asyncio.sleep(rng.expovariate(rate))
            task = loop.create_task(churn_one(rng.randrange(len(plan))))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    sockets_of: dict[int, list[int]] = {}
    for i, (_, user) in enumerate(plan):
        sockets_of.setdefault(user, []).append(i)
    presence_sent = 0

    def say_presence(user: int, status: str) -> None:
        nonlocal presence_sent
        for i in sockets_of.get(user, ()):
            client = sockets[i]
            if client is not None and not client.closed.is_set():
                client.send_frame({"type": "presence", "status": status})
                presence_sent += 1

    async def away_spell(user: int, end: float) -> None:
        """Away for 2 to 10 s, back by the end of the day (which it must not stretch)."""
        say_presence(user, "away")
        loop = asyncio.get_running_loop()
        await asyncio.sleep(min(rng.uniform(2.0, 10.0), max(0.0, end - loop.time())))
        say_presence(user, "online")

    async def presence_loop() -> None:
        if not (needs_ready and day.away_every_s):
            return
        rate = len(sockets_of) / day.away_every_s  # away spells per second, all users
        loop = asyncio.get_running_loop()
        end = loop.time() + day.seconds
        tasks = set()
        users = list(sockets_of)
        while loop.time() < end:
            await asyncio.sleep(rng.expovariate(rate))
            task = loop.create_task(away_spell(rng.choice(users), end))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    await asyncio.gather(post_loop(), churn_loop(), presence_loop())
    elapsed = (time.perf_counter_ns() - started) / 1e9
    await asyncio.sleep(3.0)  # the last deliveries and trailing reads
    lost = tally.gaps
    by_room: dict[int, list[Client]] = {}
    for i, client in enumerate(sockets):
        if client is not None and not client.closed.is_set():
            by_room.setdefault(plan[i][0], []).append(client)
    for clients in by_room.values():
        top = max(c.seq for c in clients)
        lost += sum(top - c.seq for c in clients)
    lat = sorted(tally.latencies_ns)
    acks = sorted(tally.ack_latencies_ns)
    resumes = sorted(resume_ms)
    result = {
        "users": day.users,
        "rooms": len(sizes),
        "sockets": len(plan),
        "posts": posts,
        "delivered": tally.deliveries,
        "deliveries_per_s": tally.deliveries / elapsed,
        "p50_ms": percentile(lat, 50) / 1e6,
        "p99_ms": percentile(lat, 99) / 1e6,
        "ack_p50_ms": percentile(acks, 50) / 1e6,
        "ack_p99_ms": percentile(acks, 99) / 1e6,
        "reads_sent": tally.reads_sent,
        "reactions_sent": reactions,
        "edits_sent": edits,
        "events_received": tally.events,
        "typing_sent": posts if needs_ready and day.typing else 0,
        "typing_received": tally.typing,
        "presence_sent": presence_sent,
        "presence_received": tally.presence,
        "resumes": len(resumes),
        "resume_p99_ms": percentile(resumes, 99),
        "lost": lost,
        "errors": tally.errors,
        "connect_s": connect_s,
        "connect_failures": failures,
    }
    await close_fleet(Fleet([[c for c in sockets if c is not None]], 0, 0))
    return result

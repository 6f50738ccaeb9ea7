"""Redis failover under Sentinel (docs/operations.md, "Redis Sentinel failover").

A Redis primary, its replica and three sentinels (quorum 2) of this test's
own, on free ports; two ``kaiwa serve`` processes find the primary through
the sentinels only (REDIS_SENTINELS: their REDIS_URL names no reachable
host). Clients on both processes post and listen; the primary is killed
with SIGKILL mid-conversation; the sentinels promote the replica; posting
goes on. At the end every client, on either process, has seen the same
gapless ``seq`` 1..N, every acknowledged message exactly once, and the
database holds the same N: nothing acknowledged was lost.

A poster retries a message with the same ``client_id`` when it gets an
``unavailable`` error or no echo within ACK_SECONDS (the server answers a
retry with the original); a socket that closes resumes with ``after=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import fresh_postgres_database
from tests.kaiwa_process import KaiwaServer, create_users, free_port, services_env
from tests.wsclient import Client, Rest, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

MASTER = "kaiwa-failover"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
ACK_SECONDS = 3.0  # a post not echoed within this is sent again (same client_id)
POST_EVERY = 0.1  # seconds between one poster's messages
BEFORE_KILL = 3.0  # seconds of conversation before the primary dies
AFTER_PROMOTION = 3.0  # seconds of conversation after the replica is promoted
USERS = ("alice", "bob", "carol", "dave")


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if Path(p).exists()), None
    )


@dataclass
class RedisGroup:
    """Primary, replica and sentinels of this test (their processes and ports)."""

    tmp: Path
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sentinels_env(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the process)
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def start(self, server: str, sentinel: str) -> RedisGroup:
        for name, port, extra in (
            ("primary", self.primary_port, []),
            ("replica", self.replica_port, ["--replicaof", "127.0.0.1", str(self.primary_port)]),
        ):
            work = self.tmp / name
            work.mkdir()
            self._spawn(name, [
                server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(work), *extra,
            ])  # fmt: skip
        for i, port in enumerate(self.sentinel_ports):
            conf = self.tmp / f"sentinel-{i}.conf"  # sentinels rewrite their own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.tmp}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self._spawn(f"sentinel-{i}", [sentinel, str(conf)])
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the replica is in sync and every sentinel knows the replica
        and the two other sentinels (a failover needs them); raises
        RuntimeError with the logs otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                replica = redis.Redis(port=self.replica_port, socket_timeout=1)
                synced = replica.info("replication").get("master_link_status") == "up"
                known = all(
                    len(s.sentinel_slaves(MASTER)) == 1 and len(s.sentinel_sentinels(MASTER)) == 2
                    for s in (redis.Redis(port=p, socket_timeout=1) for p in self.sentinel_ports)
                )
                if synced and known:
                    return
            time.sleep(0.2)
        raise RuntimeError("the Redis group did not come up:\n" + self.logs())

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                found = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    MASTER
                )
                if found:
                    return int(found[1])
        return None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


@pytest.fixture
def redis_group(tmp_path) -> Iterator[RedisGroup]:
    server, sentinel = _binary("redis-server"), _binary("redis-sentinel")
    if server is None or sentinel is None:
        reason = "redis-sentinel is not installed (apt-get install redis-sentinel)"
        print(reason)
        pytest.skip(reason)
    group = RedisGroup(tmp_path)
    try:
        yield group.start(server, sentinel)
    finally:
        group.stop()


@pytest.fixture
def cluster(postgres_url, redis_group, tmp_path) -> Iterator[list[KaiwaServer]]:
    with fresh_postgres_database("kaiwa_failover") as database_url:
        env = services_env(
            tmp_path,
            database_url,
            # Only the database number counts: the host is the sentinels' to tell.
            "redis://not-a-redis-host.invalid/0",
            REDIS_SENTINELS=redis_group.sentinels_env,
            REDIS_SENTINEL_MASTER=MASTER,
        )
        create_users(env, *USERS)
        servers: list[KaiwaServer] = []
        try:
            for name in ("a", "b"):
                servers.append(KaiwaServer(env, tmp_path / f"serve-{name}.log").launch())
            for server in servers:
                server.wait_ready()
            yield servers
        finally:
            for server in servers:
                server.stop()


class Participant:
    """One user's socket to one process that keeps going: every ``message``
    frame it receives is kept in order (``frames``, backlogs of resumes
    included), a closed socket resumes with ``after=`` the last seq seen,
    and (for a poster) each post is resent with its ``client_id`` until
    echoed."""

    def __init__(self, server: KaiwaServer, room: str, token: str, name: str) -> None:
        self.server, self.room, self.token, self.name = server, room, token, name
        self.client: Client | None = None
        self.frames: list[dict[str, Any]] = []
        self.arrived: dict[int, float] = {}  # seq -> monotonic time it first arrived
        self.acked: dict[str, dict[str, Any]] = {}  # client_id -> its message frame
        self.acked_at: dict[str, float] = {}  # client_id -> monotonic time of the echo
        self.retried: set[str] = set()
        self.unavailable = 0  # `unavailable` error frames received
        self.resumes = 0
        self.waiting: dict[str, asyncio.Event] = {}
        self.connected = asyncio.Event()
        self.stopping = False

    @property
    def last_seq(self) -> int:
        return max((f["seq"] for f in self.frames), default=0)

    def _keep(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "message":
            self.frames.append(frame)
            self.arrived.setdefault(frame["seq"], time.monotonic())
            client_id = frame.get("client_id")
            if frame["username"] == self.name and client_id in self.waiting:
                self.acked.setdefault(client_id, frame)
                self.acked_at.setdefault(client_id, time.monotonic())
                self.waiting[client_id].set()
        elif frame["type"] == "error":
            if frame.get("code") == "unavailable":
                self.unavailable += 1
            client_id = frame.get("client_id")
            if client_id in self.waiting:
                self.waiting[client_id].set()  # resend now

    async def _connect(self) -> None:
        after = self.last_seq if self.client is not None else None
        client = await Client.open(self.server, self.room, token=self.token, after=after)
        try:
            backlog, _ = await client.until_ready()
        except BaseException:
            await client.close()
            raise
        self.client = client
        for frame in backlog:
            self._keep(frame)
        self.connected.set()

    async def run(self) -> None:
        """Read frames until ``stopping``; reconnect (resume) on a close."""
        while not self.stopping:
            try:
                if self.client is None or self.client.ws.close_code is not None:
                    self.connected.clear()
                    if self.client is not None:
                        self.resumes += 1
                    await self._connect()
                assert self.client is not None
                self._keep(await self.client.recv(timeout=0.5))
            except TimeoutError:
                continue
            except (ConnectionClosed, InvalidStatus, OSError):
                await asyncio.sleep(0.2)

    async def post(self, client_id: str, text: str) -> None:
        """Send until echoed (the same ``client_id`` each time)."""
        event = self.waiting.setdefault(client_id, asyncio.Event())
        first = True
        while client_id not in self.acked:
            if not first:
                self.retried.add(client_id)
            first = False
            await self.connected.wait()
            event.clear()
            with contextlib.suppress(ConnectionClosed):
                assert self.client is not None
                await self.client.say(text, client_id=client_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), ACK_SECONDS)
            if client_id not in self.acked:
                await asyncio.sleep(0.3)

    def stream(self) -> list[dict[str, Any]]:
        """``frames`` without the echoes of this poster's retries (a retry of
        a stored message is answered with the original, to the sender only)."""
        kept: list[dict[str, Any]] = []
        by_seq: dict[int, dict[str, Any]] = {}
        for frame in self.frames:
            earlier = by_seq.get(frame["seq"])
            if earlier is not None and earlier == frame and frame.get("client_id") in self.retried:
                continue
            by_seq.setdefault(frame["seq"], frame)
            kept.append(frame)
        return kept

    async def close(self) -> None:
        self.stopping = True
        if self.client is not None:
            await self.client.close()


async def ready(server: KaiwaServer) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(server.http + "/readyz", timeout=5)).status_code


async def test_primary_killed_mid_conversation_loses_nothing(cluster, redis_group):
    a, b = cluster
    assert redis_group.master_port() == redis_group.primary_port
    assert [await ready(s) for s in (a, b)] == [200, 200]
    tokens = {name: a.token(name) for name in USERS}
    room = room_name("failover")
    people = [
        Participant(server, room, tokens[name], name)
        for server, name in ((a, "alice"), (b, "bob"), (a, "carol"), (b, "dave"))
    ]
    posters, everyone = people[:2], people
    readers = []
    for person in everyone:  # one at a time: the first join creates the room
        readers.append(asyncio.create_task(person.run()))
        await asyncio.wait_for(person.connected.wait(), 10)

    killed_at: float | None = None
    stop_at: float | None = None

    async def converse(poster: Participant) -> None:
        i = 0
        while stop_at is None or time.monotonic() < stop_at:
            await poster.post(f"{poster.name}-{i}", f"{poster.name} says {i}")
            i += 1
            await asyncio.sleep(POST_EVERY)

    talking = [asyncio.create_task(converse(p)) for p in posters]
    try:
        await asyncio.sleep(BEFORE_KILL)
        seq_at_kill = max(p.last_seq for p in everyone)
        redis_group.procs["primary"].kill()
        killed_at = time.monotonic()
        # Well within down-after-milliseconds: no master to PING yet.
        ready_in_window = await ready(a)
        while redis_group.master_port() != redis_group.replica_port:
            assert time.monotonic() - killed_at < 20, "no promotion:\n" + redis_group.logs()
            await asyncio.sleep(0.1)
        promoted_at = time.monotonic()
        stop_at = promoted_at + AFTER_PROMOTION
        await asyncio.wait_for(asyncio.gather(*talking), 30)

        # Everyone catches up with the last seq stored.
        async with Rest(a, tokens["carol"]) as rest:
            stored = await rest.list_messages(room, limit=200)
        total = len(stored)
        for _ in range(150):  # up to 15 s
            if all(p.last_seq >= total for p in everyone):
                break
            await asyncio.sleep(0.1)
    finally:
        for task in talking:
            task.cancel()
        for person in everyone:
            person.stopping = True
        await asyncio.gather(*readers, return_exceptions=True)
        for person in everyone:
            await person.close()

    # The database: seq 1..N, each acknowledged message once.
    assert [m["seq"] for m in stored] == list(range(1, total + 1))
    acked = {cid: f for p in posters for cid, f in p.acked.items()}
    stored_ids = [m["client_id"] for m in stored]
    assert len(stored_ids) == len(set(stored_ids))
    lost = set(acked) - set(stored_ids)
    assert lost == set(), f"acknowledged but not stored: {sorted(lost)}"
    assert {cid: f["seq"] for cid, f in acked.items()} == {
        m["client_id"]: m["seq"] for m in stored if m["client_id"] in acked
    }

    # Every client on either process: the same gapless stream, the database's.
    for person in everyone:
        got = person.stream()
        assert [f["seq"] for f in got] == list(range(1, total + 1)), (person.name, got)
        assert got == stored, person.name

    # The conversation went on across the failover, and every process found
    # the promoted master: live pub/sub subscriptions on it, /readyz green.
    assert seq_at_kill > 0
    assert total > seq_at_kill + 10
    new_master = redis.Redis(port=redis_group.replica_port)
    prefix = a.env["KAIWA_REDIS_PREFIX"]
    channels = new_master.pubsub_channels(f"{prefix}*")
    assert channels, "no channel-layer subscription on the promoted master"
    assert ready_in_window == 503
    deadline = time.monotonic() + 10
    while [await ready(s) for s in (a, b)] != [200, 200]:
        assert time.monotonic() < deadline, "/readyz not green after the failover"
        await asyncio.sleep(0.2)

    # The figures (docs/operations.md quotes them).
    first_after = min(
        (p.acked_at[cid], cid) for p in posters for cid, f in p.acked.items()
        if f["seq"] > seq_at_kill
    )  # fmt: skip
    # When every client, on either process, had a message stored after the kill.
    everyone_had = max(
        min(t for seq, t in p.arrived.items() if seq > seq_at_kill) for p in everyone
    )
    print(
        f"\nfailover: promotion {promoted_at - killed_at:.2f} s after the kill; "
        f"first message stored after the kill acknowledged {first_after[0] - killed_at:.2f} s "
        f"after it, on every client of both processes {everyone_had - killed_at:.2f} s after it; "
        f"{total} messages ({total - seq_at_kill} after the kill), lost: {len(lost)}; "
        f"retries {sum(len(p.retried) for p in posters)}, "
        f"unavailable errors {sum(p.unavailable for p in everyone)}, "
        f"resumes {sum(p.resumes for p in everyone)}; /readyz {ready_in_window} before the promotion"
    )

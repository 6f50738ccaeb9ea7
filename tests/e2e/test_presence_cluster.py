"""Presence across ``kaiwa serve`` processes on PostgreSQL and Redis
(PROTOCOL.md section 3): a status set on one process is announced on the
other, a reconnect to another process within the grace period does not
flap, and the users of a process killed with SIGKILL go offline within the
grace period (plus a sweep), not later."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kaiwa_process import KaiwaServer, create_users, services_env
from tests.wsclient import Client, bearer, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

GRACE = 3.0  # seconds (KAIWA_PRESENCE_GRACE_SECONDS of these servers)
SWEEP_MARGIN = 2.0  # seconds: a sweep (1 s) and the publish


@pytest.fixture(scope="module")
def env(postgres_url, redis_url, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("presence")
    env = services_env(
        tmp,
        postgres_url,
        redis_url,
        KAIWA_PRESENCE_MAX_MEMBERS="200",
        KAIWA_PRESENCE_GRACE_SECONDS=str(GRACE),
    )
    env["KAIWA_TMP"] = str(tmp)
    create_users(env, "alice", "bob", "carol")
    return env


@pytest.fixture(scope="module")
def cluster(env) -> Iterator[tuple[KaiwaServer, KaiwaServer]]:
    servers = [KaiwaServer(env, log(env, name)).start() for name in ("a", "b")]
    yield servers[0], servers[1]
    for server in servers:
        server.stop()


def log(env: dict[str, str], name: str) -> Path:
    return Path(env["KAIWA_TMP"]) / f"serve-{name}.log"


async def next_presence(client: Client, username: str, timeout: float) -> tuple[dict, float]:
    """The next ``presence`` frame about ``username`` and when it came (monotonic)."""
    frame = await client.presence_of(username, timeout)
    return frame, time.monotonic()


async def presence_of(server: KaiwaServer, token: str, room: str) -> list[dict]:
    async with httpx.AsyncClient(headers=bearer(token), trust_env=False) as http:
        answer = await http.get(f"{server.http}/api/rooms/{room}/presence")
    assert answer.status_code == 200, answer.text
    return answer.json()["users"]


async def test_a_status_set_on_one_process_is_announced_on_the_other(cluster):
    a, b = cluster
    room = room_name()
    alice = await Client.join(a, room, token=a.token("alice"))
    bob_token = b.token("bob")
    bob = await Client.join(b, room, token=bob_token)
    frame, _ = await next_presence(alice, "bob", 5)
    assert frame == {"type": "presence", "room": room, "username": "bob", "status": "online"}
    await bob.send({"type": "presence", "status": "away"})
    assert (await next_presence(alice, "bob", 5))[0]["status"] == "away"
    assert {"username": "bob", "status": "away"} in await presence_of(a, bob_token, room)
    # bob closes on b and comes back on a within the grace period: no flap.
    await bob.close()
    await asyncio.sleep(GRACE / 3)
    bob = await Client.join(a, room, token=bob_token)
    frame, _ = await next_presence(alice, "bob", 5)
    assert frame["status"] == "online"  # away -> online, never offline
    with pytest.raises(TimeoutError):
        await next_presence(alice, "bob", GRACE + SWEEP_MARGIN)
    for client in (alice, bob):
        await client.close()


async def test_users_of_a_killed_process_go_offline_within_the_grace_period(env, cluster):
    a, _ = cluster
    doomed = KaiwaServer(env, log(env, "doomed")).start()
    try:
        room = room_name()
        alice = await Client.join(a, room, token=a.token("alice"))
        carol = await Client.join(doomed, room, token=doomed.token("carol"))
        assert (await next_presence(alice, "carol", 5))[0]["status"] == "online"
        await asyncio.sleep(GRACE / 2)  # a refresh or two happen meanwhile
        killed_at = time.monotonic()
        doomed.stop(signal.SIGKILL)
        frame, at = await next_presence(alice, "carol", GRACE + SWEEP_MARGIN + 5)
        assert frame["status"] == "offline"
        assert at - killed_at <= GRACE + SWEEP_MARGIN, at - killed_at
        listed = await presence_of(a, a.token("alice"), room)
        assert "carol" not in {user["username"] for user in listed}
        await alice.close()
        del carol  # its process is gone
    finally:
        doomed.stop(signal.SIGKILL)

"""Flood limits across two `kaiwa serve` processes on PostgreSQL and Redis
(kaiwa.chat.realtime.cluster_limits): a user's socket cap and message rate, and an
address's connect rate, hold for the cluster, not per process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.kaiwa_process import KaiwaServer, create_users, services_env
from tests.wsclient import Client, Rest, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]


def cluster_of(env: dict[str, str], tmp) -> list[KaiwaServer]:
    return [KaiwaServer(env, tmp / f"serve-{n}.log").start() for n in ("a", "b")]


@pytest.fixture
def limited(postgres_url, redis_url, tmp_path) -> Iterator[list[KaiwaServer]]:
    env = services_env(
        tmp_path,
        postgres_url,
        redis_url,
        KAIWA_MAX_CONNECTIONS_PER_USER="2",
        KAIWA_RATE_MESSAGES_PER_SECOND="0.1",  # a window of 3 messages per 30 s
        KAIWA_RATE_BURST="3",
        KAIWA_RATE_STRIKES="100",
    )
    create_users(env, "alice", "bob")
    servers = cluster_of(env, tmp_path)
    yield servers
    for server in servers:
        server.stop()


async def test_the_socket_cap_holds_across_processes(limited):
    a, b = limited
    token = a.token("alice")
    room = room_name()
    first = await Client.join(a, room, token=token)
    second = await Client.join(b, room, token=token)
    third = await Client.open(a, room, token=token)
    await third.expect_close(4429)  # two open already, one on each process
    await second.close()
    again = await Client.join(a, room, token=token)  # a slot was freed on b
    other = await Client.join(b, room, token=b.token("bob"))  # per user
    for client in (first, again, other):
        await client.close()


async def test_the_message_rate_holds_across_processes_and_rest(limited):
    a, b = limited
    token = a.token("alice")
    room = room_name()
    on_a = await Client.join(a, room, token=token)
    on_b = await Client.join(b, room, token=token)
    await on_a.say("one")
    assert (await on_a.expect("message"))["message"] == "one"
    await on_b.say("two")
    async with Rest(b, token) as rest:
        await rest.post_message(room, "three")
        refused = await rest.client.post(f"/api/rooms/{room}/messages/", json={"message": "four"})
        assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    assert [(await on_a.expect("message"))["message"] for _ in range(2)] == ["two", "three"]
    # A socket's sender who kept within the window does not wait for Redis:
    # his first message over it may pass (counted meanwhile, and refused)...
    await on_a.say("five")
    first = await on_a.recv()
    assert first.get("message") == "five" or first.get("code") == "rate_limited", first
    await asyncio.sleep(0.5)
    # ...and from then on he waits for each answer: the window holds.
    for text in ("six", "seven"):
        await on_a.say(text)
        await on_a.expect_error("rate_limited")
    async with Rest(a, token) as rest:
        texts = [m["message"] for m in await rest.list_messages(room)]
    assert texts[:3] == ["one", "two", "three"]
    assert set(texts[3:]) <= {"five"}  # at most the one that passed before the refusal
    for client in (on_a, on_b):
        await client.close()


async def test_the_connect_rate_of_an_address_holds_across_processes(
    postgres_url, redis_url, tmp_path
):
    env = services_env(
        tmp_path,
        postgres_url,
        redis_url,
        KAIWA_CONNECT_RATE_PER_IP="0.05",  # a window of 3 handshakes per 60 s
        KAIWA_CONNECT_BURST_PER_IP="3",
    )
    create_users(env, "alice")
    a, b = servers = cluster_of(env, tmp_path)
    try:
        token = a.token("alice")
        room = room_name()
        opened = [
            await Client.join(a, room, token=token),
            await Client.join(b, room, token=token),
            await Client.join(a, room, token=token),
        ]
        with pytest.raises(InvalidStatus) as refused:
            await Client.open(b, room, token=token)
        assert refused.value.response.status_code == 429
        for client in opened:
            await client.close()
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def room_capped(postgres_url, redis_url, tmp_path) -> Iterator[tuple[list[KaiwaServer], str]]:
    env = services_env(
        tmp_path,
        postgres_url,
        redis_url,
        KAIWA_MAX_ROOMS_PER_USER=str(ROOM_CAP),
        KAIWA_ROOM_CREATE_RATE_PER_MINUTE="1000",
        KAIWA_MAX_CONNECTIONS_PER_USER="100",
        KAIWA_CONNECT_RATE_PER_IP="1000",
        KAIWA_CONNECT_BURST_PER_IP="1000",
    )
    create_users(env, "dora")
    servers = cluster_of(env, tmp_path)
    yield servers, env["DATABASE_URL"]
    for server in servers:
        server.stop()


ROOM_CAP = 3


async def joined_or_refused(server: KaiwaServer, room: str, token: str) -> bool:
    """True when the join reached ``ready`` (the room was made), False on 4403."""
    client = await Client.open(server, room, token=token)
    try:
        frame = await client.recv()
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
    else:
        await client.close()
        return frame["type"] in ("ready", "reset")
    assert code == 4403, f"closed with {code}"
    return False


async def test_the_room_cap_holds_across_processes(room_capped):
    # Issue 22 #11: each process counted the creator's rooms and inserted in
    # its own batch, so two processes together made more than the cap. The
    # test holds inserts into the rooms table back (a SHARE lock) while both
    # processes' batches start, so that, without a lock per creator, both
    # count before either inserts.
    (a, b), database_url = room_capped
    token = a.token("dora")
    rooms = [room_name(f"cap-{n}-") for n in range(8)]
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE chat_room IN SHARE MODE")
        joins = [
            asyncio.create_task(joined_or_refused((a, b)[n % 2], room, token))
            for n, room in enumerate(rooms)
        ]
        await asyncio.sleep(2.0)  # both processes' batches are waiting to insert
        blocker.commit()
    made = sum(await asyncio.gather(*joins))
    assert made == ROOM_CAP, f"{made} rooms made with a cap of {ROOM_CAP}"

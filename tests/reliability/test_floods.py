"""Flood limits (kaiwa.chat.realtime.limits) against a real ``kaiwa serve``: the message
rate per user (error ``rate_limited``, then close 4429), the connect rate per
IP (HTTP 429), and the cap on sockets per user (close 4429).

The server runs with tiny limits and a refill rate so slow (one token per 100
seconds) that no token comes back during the test: every answer is decided by
counts, not by timing. Each test connects from its own client address
(``X-Forwarded-For``, which uvicorn trusts from 127.0.0.1), so that the
per-IP buckets of the tests do not meet.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.kaiwa_process import KaiwaServer, base_env, create_users
from tests.wsclient import Client, Rest, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

USERS = ("alice", "bob", "carol", "dave")
BURST = 5  # messages
STRIKES = 3  # refused messages in a row before 4429
CONNECT_BURST = 8  # handshakes per IP
CONNECTIONS_PER_USER = 3

_addresses = (f"198.51.100.{i}" for i in itertools.count(1))  # TEST-NET-2, never contacted


def from_new_address() -> dict[str, str]:
    """Headers that make the server see a fresh client IP."""
    return {"X-Forwarded-For": next(_addresses)}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[KaiwaServer]:
    tmp = tmp_path_factory.mktemp("floods")
    env = base_env(
        KAIWA_DATA_DIR=str(tmp / "data"),
        KAIWA_RATE_MESSAGES_PER_SECOND="0.01",
        KAIWA_RATE_BURST=str(BURST),
        KAIWA_RATE_STRIKES=str(STRIKES),
        KAIWA_CONNECT_RATE_PER_IP="0.01",
        KAIWA_CONNECT_BURST_PER_IP=str(CONNECT_BURST),
        KAIWA_MAX_CONNECTIONS_PER_USER=str(CONNECTIONS_PER_USER),
    )
    create_users(env, *USERS)
    server = KaiwaServer(env, tmp / "serve.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(server) -> dict[str, str]:
    return {name: server.token(name) for name in USERS}


async def test_message_rate_limit_refuses_then_closes_with_4429(server, tokens):
    room = room_name()
    ip = from_new_address()
    flooder = await Client.join(server, room, token=tokens["alice"], headers=ip)
    second = await Client.join(server, room, token=tokens["alice"], headers=ip)
    watcher = await Client.join(server, room, token=tokens["bob"], headers=ip)

    for i in range(BURST):  # the burst passes
        await flooder.say(f"burst {i}", client_id=f"b{i}")
        (ack,) = await flooder.messages(1)
        assert (ack["seq"], ack["client_id"]) == (i + 1, f"b{i}")
    assert [m["message"] for m in await watcher.messages(BURST)] == [
        f"burst {i}" for i in range(BURST)
    ]

    # The bucket is the user's, not the socket's: his other socket is refused too.
    await second.messages(BURST)
    await second.say("from the second socket")
    await second.expect_error("rate_limited")
    await second.ping()

    # Refused messages are not stored; the socket stays usable in between...
    for i in range(STRIKES - 1):
        await flooder.say(f"over {i}", client_id=f"o{i}")
        error = await flooder.expect_error("rate_limited")
        assert "not stored" in error["detail"]
        await flooder.ping()
    # ...until more than KAIWA_RATE_STRIKES in a row (the second socket's one
    # counted on its own socket): then 4429.
    await flooder.say("one too many")
    await flooder.expect_error("rate_limited")
    await flooder.say("and closed")
    await flooder.expect_close(4429)

    # Other users are not limited by alice's bucket.
    await watcher.say("bob is fine")
    (bobs,) = await watcher.messages(1)
    assert bobs["seq"] == BURST + 1
    async with Rest(server, tokens["carol"]) as rest:
        stored = await rest.list_messages(room, limit=200)
    assert [m["message"] for m in stored] == [f"burst {i}" for i in range(BURST)] + ["bob is fine"]
    print(
        f"\nFIGURES floods/message-rate: burst={BURST} passed, refused={STRIKES + 2} "
        f"(rate_limited frames), closed=4429 after {STRIKES + 1} refusals in a row, "
        f"stored={len(stored)} (nothing refused was stored)"
    )
    for client in (second, watcher):
        await client.close()


async def test_connect_rate_per_ip_refuses_with_http_429(server, tokens):
    room = room_name()
    crowd = from_new_address()
    opened = [
        await Client.join(server, room, token=tokens[name], headers=crowd)
        for name in ("alice", "bob", "carol", "dave")
        for _ in range(2)
    ]
    assert len(opened) == CONNECT_BURST
    with pytest.raises(InvalidStatus) as refused:
        await Client.open(server, room, token=tokens["dave"], headers=crowd)
    response = refused.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "100"  # 1 / 0.01 tokens per second
    assert b"Too many connections" in response.body
    # Refused before authentication: even an anonymous handshake gets 429, not 4401.
    with pytest.raises(InvalidStatus) as anonymous:
        await Client.open(server, room, headers=crowd)
    assert anonymous.value.response.status_code == 429

    # Another address is not affected, and the open sockets keep working.
    other = await Client.join(server, room, token=tokens["dave"], headers=from_new_address())
    for client in (*opened, other):
        await client.ping()
        await client.close()
    print(
        f"\nFIGURES floods/connect-rate: {CONNECT_BURST} handshakes from one IP accepted, "
        "the next 2 refused with HTTP 429 (Retry-After: 100), other IPs unaffected"
    )


async def test_sockets_per_user_are_capped_with_4429(server, tokens):
    room = room_name()
    ip = from_new_address()
    sockets = [
        await Client.join(server, room, token=tokens["carol"], headers=ip)
        for _ in range(CONNECTIONS_PER_USER)
    ]
    extra = await Client.open(server, room, token=tokens["carol"], headers=ip)
    with pytest.raises(ConnectionClosed) as closed:
        await extra.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4429, "too many connections")

    # Another user is not capped by carol's sockets.
    dave = await Client.join(server, room, token=tokens["dave"], headers=ip)
    # A closed socket frees its slot.
    await sockets.pop().close()
    await dave.ping()  # a round trip, so the server has seen the close too
    sockets.append(await Client.join(server, room, token=tokens["carol"], headers=ip))
    for client in (*sockets, dave):
        await client.ping()
        await client.close()
    print(
        f"\nFIGURES floods/sockets-per-user: cap={CONNECTIONS_PER_USER}, the next socket "
        "closed with 4429 'too many connections', a freed slot is reusable"
    )

"""Two ``kaiwa serve`` processes on one PostgreSQL database and one Redis act as
one server (PROTOCOL.md section 4): one gapless ``seq`` per room, every message
to every socket exactly once and in the same order, resume on either process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.kaiwa_process import KaiwaServer, create_users, manage, services_env
from tests.wsclient import Client, Rest, check_message_frame, room_name, signed_in

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

USERS = ("alice", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def cluster(postgres_url, redis_url, tmp_path_factory) -> Iterator[tuple[KaiwaServer, KaiwaServer]]:
    tmp = tmp_path_factory.mktemp("cluster")
    env = services_env(tmp, postgres_url, redis_url)
    create_users(env, *USERS)
    servers: list[KaiwaServer] = []
    try:
        for name in ("a", "b"):
            servers.append(KaiwaServer(env, tmp / f"serve-{name}.log").start())
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def tokens(cluster) -> dict[str, str]:
    return {name: cluster[0].token(name) for name in USERS}


async def test_rest_post_on_one_process_reaches_sockets_on_the_other(cluster, tokens):
    a, b = cluster
    room = room_name()
    on_b = await Client.join(b, room, token=tokens["bob"])
    on_a = await Client.join(a, room, token=tokens["carol"])
    async with Rest(a, tokens["alice"]) as rest:
        posted = await rest.post_message(room, "from A", client_id="rest-a")
    check_message_frame(posted, room=room, username="alice", text="from A", client_id="rest-a")
    assert posted["seq"] == 1
    assert await on_b.messages(1) == [posted]
    assert await on_a.messages(1) == [posted]

    async with Rest(b, tokens["dave"]) as rest:
        posted = await rest.post_message(room, "from B")
        assert posted["seq"] == 2
        assert await on_a.messages(1) == [posted]
        assert await on_b.messages(1) == [posted]
        # Either process serves the same history.
        async with Rest(a, tokens["dave"]) as rest_a:
            assert await rest_a.list_messages(room) == await rest.list_messages(room)
    for client in (on_a, on_b):
        await client.ping()
        await client.close()


async def test_read_frame_reaches_the_users_socket_on_the_other_process(cluster, tokens):
    a, b = cluster
    room = room_name()
    on_a = await Client.join(a, room, token=tokens["alice"])
    on_b = await Client.join(b, room, token=tokens["alice"])
    await on_a.say("to be read")
    (message,) = await on_a.messages(1)
    assert await on_b.messages(1) == [message]
    await on_a.send({"type": "read", "seq": message["seq"]})
    assert await on_b.recv() == {"type": "read", "room": room, "seq": message["seq"]}
    await on_a.ping()
    await on_a.close()
    await on_b.close()


async def test_room_events_and_typing_cross_processes(cluster, tokens):
    a, b = cluster
    room = room_name()
    alice = await Client.join(a, room, token=tokens["alice"])
    bob = await Client.join(b, room, token=tokens["bob"])
    await alice.say("draft")
    (message,) = await bob.messages(1)
    assert await alice.messages(1) == [message]
    await alice.send({"type": "typing"})
    assert await bob.expect("typing") == {
        "type": "typing", "room": room, "username": "alice", "state": "start",
    }  # fmt: skip
    await alice.send({"type": "edit", "id": message["id"], "message": "final"})
    edit = await bob.expect("edit")
    assert (edit["seq"], edit["message"]) == (message["seq"] + 1, "final")
    assert await alice.expect("edit") == edit
    await bob.send({"type": "react", "id": message["id"], "emoji": "+1", "on": True})
    reaction = await alice.expect("reaction")
    assert (reaction["seq"], reaction["username"]) == (message["seq"] + 2, "bob")
    resumed = await Client.join(a, room, token=tokens["bob"], after=message["seq"] - 1)
    assert [f["type"] for f in resumed.backlog] == ["message", "edit", "reaction"]
    assert resumed.backlog[0]["message"] == "final"
    for client in (alice, bob, resumed):
        await client.close()


async def test_concurrent_posters_on_two_processes(cluster, tokens):
    """4 posters (2 per process) x 25 messages at once, plus a listener per
    process and a client that drops mid-stream and resumes on the other process."""
    a, b = cluster
    room = room_name()
    per_poster = 25
    posters = [
        (await Client.join(server, room, token=tokens[name]), name)
        for server, name in ((a, "alice"), (b, "bob"), (a, "carol"), (b, "dave"))
    ]
    listeners = [await Client.join(server, room, token=tokens["carol"]) for server in (a, b)]
    dropper = await Client.join(a, room, token=tokens["dave"])
    total = per_poster * len(posters)

    async def post(client: Client, name: str) -> None:
        for i in range(per_poster):
            await client.say(f"{name} says {i}", client_id=f"{name}-{i}")
            if i % 5 == 4:
                await asyncio.sleep(0.01)  # interleave with the other posters

    async def drop_and_resume() -> list[dict]:
        """Read until seq 20 or more, drop, and resume on B while posting goes on."""
        seen = []
        while not seen or seen[-1]["seq"] < 20:
            seen.extend(await dropper.messages(1))
        await dropper.close()
        after = seen[-1]["seq"]
        resumed = await Client.open(b, room, token=tokens["dave"], after=after)
        backlog, ready = await resumed.until_ready()
        assert all(f["type"] == "message" for f in backlog), backlog
        rest = await resumed.messages(total - ready["seq"], timeout=30)
        await resumed.ping()
        await resumed.close()
        got = seen + backlog + rest
        assert [f["seq"] for f in got] == list(range(1, total + 1))
        return got

    everyone = [client for client, _ in posters] + listeners
    results = await asyncio.gather(
        *(post(client, name) for client, name in posters),
        *(client.messages(total, timeout=30) for client in everyone),
        drop_and_resume(),
    )
    streams = results[len(posters) :]

    # Gapless seq 1..N, and the same messages in the same order everywhere.
    first = streams[0]
    assert [f["seq"] for f in first] == list(range(1, total + 1))
    for stream in streams[1:]:
        assert stream == first
    assert len({f["id"] for f in first}) == total

    # Each poster's messages all arrived, once each, in the order it sent them.
    for _, name in posters:
        own = [f for f in first if f["username"] == name]
        assert [f["client_id"] for f in own] == [f"{name}-{i}" for i in range(per_poster)]
        for i, frame in enumerate(own):
            check_message_frame(
                frame, room=room, username=name, text=f"{name} says {i}", client_id=f"{name}-{i}"
            )

    # Nothing more is queued for anyone.
    for client in everyone:
        await client.ping()

    # Both processes store and serve the same history.
    for server in (a, b):
        async with Rest(server, tokens["carol"]) as rest:
            assert await rest.list_messages(room, limit=200) == first

    # Resuming on either process after any seq gives exactly the missing ones.
    for server, after in ((b, 37), (a, 63), (b, total - 1), (a, total)):
        client = await Client.join(server, room, token=tokens["alice"], after=after)
        assert client.backlog == first[after:]
        assert client.ready == {"type": "ready", "room": room, "seq": total, "username": "alice"}
        await client.ping()
        await client.close()

    for client in everyone:
        await client.close()


async def test_client_id_retry_on_the_other_process_returns_the_original(cluster, tokens):
    a, b = cluster
    room = room_name()
    on_a = await Client.join(a, room, token=tokens["alice"])
    on_b = await Client.join(b, room, token=tokens["alice"])
    watcher = await Client.join(b, room, token=tokens["bob"])
    await on_a.say("once", client_id="retry-1")
    (original,) = await on_a.messages(1)
    assert await on_b.messages(1) == [original]
    assert await watcher.messages(1) == [original]

    await on_b.say("once", client_id="retry-1")  # the retry reaches the other process
    assert await on_b.messages(1) == [original]
    await on_b.say("next")
    (following,) = await watcher.messages(1)
    assert (following["message"], following["seq"]) == ("next", original["seq"] + 1)
    assert await on_a.messages(1) == [following]
    assert await on_b.messages(1) == [following]
    for client in (on_a, on_b, watcher):
        await client.ping()
        await client.close()


async def test_a_nul_byte_in_one_post_fails_only_that_post_on_postgresql(cluster, tokens):
    a, _ = cluster
    room = room_name()
    clients = [await Client.join(a, room, token=tokens[name]) for name in USERS]
    texts = ["one", "two", "bad \x00 byte", "four"]
    await asyncio.gather(
        *(
            c.say(t, client_id=f"nul-{i}")
            for i, (c, t) in enumerate(zip(clients, texts, strict=True))
        )
    )
    error = await clients[2].recv()
    while error["type"] == "message":  # the others' messages may come first
        error = await clients[2].recv()
    assert (error["type"], error["code"]) == ("error", "bad_frame"), error
    assert "NUL" in error["detail"]
    async with Rest(a, tokens["alice"]) as rest:
        for _ in range(50):
            stored = await rest.list_messages(room)
            if len(stored) == 3:
                break
            await asyncio.sleep(0.1)
    assert sorted(m["message"] for m in stored) == ["four", "one", "two"]
    assert [m["seq"] for m in stored] == [1, 2, 3]
    for client in clients:
        await client.close()


# --- access revoked on open sockets, across processes ------------------------------------

REVOKE_WAIT_SECONDS = 5.0  # measured: well under a second


def fresh_user(server: KaiwaServer, name: str) -> str:
    """A new user ``name``; returns his API token."""
    create_users(server.env, name)
    return server.token(name)


async def closed_within(client: Client, seconds: float = REVOKE_WAIT_SECONDS) -> int | None:
    """The close code the server sends within ``seconds`` (frames before it skipped)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def shell(server: KaiwaServer, code: str) -> None:
    """Run ORM code in a third process (as an operator's admin or shell would)."""
    manage(server.env, "shell", "-c", "from django.contrib.auth.models import User\n"
           "from kaiwa.chat.models import Membership, Room\n" + code)  # fmt: skip


async def test_a_removed_member_is_closed_on_the_other_process(cluster, tokens):
    a, b = cluster
    token = fresh_user(a, "erin")
    room = room_name("priv")
    shell(a, f"r = Room.objects.create(slug={room!r}, private=True)\n"
             f"Membership.objects.create(room=r, user=User.objects.get(username='erin'))")  # fmt: skip
    on_b = await Client.join(b, room, token=token)
    await asyncio.to_thread(
        shell, a, f"Membership.objects.filter(room__slug={room!r}, user__username='erin').delete()"
    )
    assert await closed_within(on_b) == 4403


async def test_a_room_made_private_closes_non_members_on_the_other_process(cluster, tokens):
    a, b = cluster
    room = room_name("pub")
    stranger = await Client.join(b, room, token=fresh_user(a, "frank"))
    member = await Client.join(a, room, token=tokens["alice"])
    await asyncio.to_thread(
        shell, a, f"Membership.objects.filter(room__slug={room!r}, user__username='frank').delete()\n"
                  f"r = Room.objects.get(slug={room!r}); r.private = True; r.save()"
    )  # fmt: skip
    assert await closed_within(stranger) == 4403
    await member.ping()  # alice, a member, stays
    await member.close()


async def test_a_deactivated_user_is_closed_on_every_process(cluster):
    a, b = cluster
    token = fresh_user(a, "grace")
    room = room_name()
    sockets = [await Client.join(server, room, token=token) for server in (a, b)]
    await asyncio.to_thread(shell, a, "User.objects.filter(username='grace').update(is_active=False)\n"
                            "u = User.objects.get(username='grace'); u.save()")  # fmt: skip
    assert [await closed_within(s) for s in sockets] == [4401, 4401]
    # Still refused when it comes back (its token belongs to an inactive user).
    with pytest.raises(ConnectionClosed):
        await Client.join(b, room, token=token)


async def test_a_password_change_closes_the_users_session_sockets(cluster):
    a, b = cluster
    fresh_user(a, "heidi")
    http = await signed_in(a, "heidi")
    cookie = http.cookies["sessionid"]
    room = room_name()
    on_b = await Client.join(b, room, headers={"Cookie": f"sessionid={cookie}"})
    await asyncio.to_thread(
        shell, a, "u = User.objects.get(username='heidi'); u.set_password('x-new-pass-9'); u.save()"
    )
    assert await closed_within(on_b) == 4401
    await http.aclose()


async def test_logging_out_on_one_process_closes_the_sessions_socket_on_the_other(cluster):
    a, b = cluster
    fresh_user(a, "ivan")
    http = await signed_in(a, "ivan")
    cookie = http.cookies["sessionid"]
    room = room_name()
    on_b = await Client.join(b, room, headers={"Cookie": f"sessionid={cookie}"})
    answer = await http.post(
        "/accounts/logout/", headers={"X-CSRFToken": http.cookies["csrftoken"]}
    )
    assert answer.status_code in (200, 302), answer.text
    assert await closed_within(on_b) == 4401
    await http.aclose()


async def test_version_2_rest_calls_on_one_process_reach_sockets_on_the_other(cluster, tokens):
    """Every v2 REST call on PostgreSQL (edit, reactions, history, delete,
    unread and mentions) against a socket on the other process."""
    a, b = cluster
    room = room_name()
    watcher = await Client.join(b, room, token=tokens["carol"])
    async with Rest(a, tokens["alice"]) as alice, Rest(a, tokens["bob"]) as bob:
        posted = await alice.post_message(room, "hello @bob")
        assert (await watcher.expect("message"))["id"] == posted["id"]
        # bob is no member yet (REST only), so "@bob" marked no mention; he
        # reads to join, and the next one mentions him.
        assert (
            await bob.client.post(f"/api/rooms/{room}/read", json={"seq": 0})
        ).status_code == 204
        second = await alice.post_message(room, "again @bob")
        await watcher.expect("message")
        rooms = {r["slug"]: r for r in await bob.rooms()}
        assert (rooms[room]["unread"], rooms[room]["mentions"]) == (2, 1)

        edited = await alice.client.patch(
            f"/api/messages/{second['id']}", json={"message": "again"}
        )
        assert edited.status_code == 200, edited.text
        edit = await watcher.expect("edit")
        assert (edit["id"], edit["message"], edit["seq"]) == (second["id"], "again", 3)
        history = await alice.client.get(f"/api/messages/{second['id']}/history")
        assert [v["message"] for v in history.json()["versions"]] == ["again @bob", "again"]

        put = await bob.client.put(f"/api/messages/{posted['id']}/reactions/%F0%9F%91%8D")
        assert put.status_code == 204
        reaction = await watcher.expect("reaction")
        assert (reaction["emoji"], reaction["on"], reaction["username"]) == ("👍", True, "bob")
        gone = await bob.client.delete(f"/api/messages/{posted['id']}/reactions/%F0%9F%91%8D")
        assert gone.status_code == 204
        assert (await watcher.expect("reaction"))["on"] is False

        deleted = await alice.client.delete(f"/api/messages/{posted['id']}")
        assert deleted.status_code == 204
        assert (await watcher.expect("delete"))["id"] == posted["id"]
        listed = await bob.list_messages(room)
        assert [m["deleted"] for m in listed if m["id"] == posted["id"]] == [True]
        assert all(m["message"] != "hello @bob" for m in listed)
    # The events replay on the other process in the same order.
    resumed = await Client.join(a, room, token=tokens["dave"], after=0)
    kinds = [f["type"] for f in resumed.backlog]
    assert kinds == ["message", "message", "edit", "reaction", "reaction", "delete"]
    for client in (watcher, resumed):
        await client.close()

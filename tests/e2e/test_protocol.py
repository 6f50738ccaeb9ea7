"""The wire protocol (shared PROTOCOL.md) against a real ``kaiwa serve`` process.

One server (SQLite, in-memory channel layer) is shared by the module; every
test uses rooms of its own. A second server with small limits checks the
configurable ones (resume limit, backlog size, frame and message sizes) and
guests; the restart test has a server of its own (``kaiwa_server``).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.kaiwa_process import KaiwaServer, base_env, create_users, password
from tests.wsclient import (
    Client,
    Rest,
    check_message_frame,
    joined_sync,
    refused_or_closed,
    room_name,
    signed_in,
)

pytestmark = pytest.mark.e2e

USERS = ("alice", "bob", "carol")
HISTORY = 210  # messages in the shared history room: m1 .. m210


def start_server(tmp_path_factory: pytest.TempPathFactory, **settings: str) -> KaiwaServer:
    tmp = tmp_path_factory.mktemp("kaiwa")
    env = base_env(KAIWA_DATA_DIR=str(tmp / "data"), **settings)
    create_users(env, *USERS)
    return KaiwaServer(env, tmp / "serve.log").start()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[KaiwaServer]:
    """Like the ``kaiwa_server`` fixture, shared by the module; the history
    fixture posts 210 messages over REST at once, more than the default burst."""
    server = start_server(tmp_path_factory, KAIWA_RATE_BURST="1000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory) -> Iterator[KaiwaServer]:
    """A server with small configurable limits, and guests enabled."""
    server = start_server(
        tmp_path_factory,
        KAIWA_RESUME_LIMIT="5",
        KAIWA_BACKLOG_MESSAGES="3",
        KAIWA_MAX_FRAME_BYTES="2048",
        KAIWA_MAX_MESSAGE_CHARS="100",
        KAIWA_ALLOW_GUESTS="1",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(server) -> dict[str, str]:
    return {name: server.token(name) for name in USERS}


def post_history(server: KaiwaServer, room: str, count: int) -> None:
    """Post messages ``m1`` .. ``m<count>`` (seq i is ``m<i>``): alice, except every
    third one by bob."""
    toks = {name: server.token(name) for name in ("alice", "bob")}
    create_room(server, room, toks["alice"])
    with httpx.Client(base_url=server.http, trust_env=False, timeout=10) as http:
        for i in range(1, count + 1):
            who = "bob" if i % 3 == 0 else "alice"
            answer = http.post(
                f"/api/rooms/{room}/messages/",
                json={"message": f"m{i}"},
                headers={"Authorization": f"Bearer {toks[who]}"},
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["seq"] == i


def create_room(server: KaiwaServer, room: str, token: str) -> None:
    """Create public room ``room`` by joining it (REST does not create rooms)."""
    with joined_sync(server, room, token=token):
        pass


def author(seq: int) -> str:
    return "bob" if seq % 3 == 0 else "alice"


@pytest.fixture(scope="module")
def history(server) -> str:
    """A room holding ``HISTORY`` messages; tests must not post to it."""
    room = room_name("history")
    post_history(server, room, HISTORY)
    return room


def check_history(frames: list[dict], room: str, seqs: range) -> None:
    assert [f["seq"] for f in frames] == list(seqs)
    for frame in frames:
        check_message_frame(
            frame, room=room, username=author(frame["seq"]), text=f"m{frame['seq']}"
        )


async def login(server: KaiwaServer, name: str) -> httpx.Cookies:
    """Log ``name`` in through the login form; returns the cookies (sessionid, csrftoken)."""
    http = await signed_in(server, name)
    await http.aclose()
    return http.cookies


# --- POST /api/auth/token ---------------------------------------------------------


async def test_token_endpoint_issues_a_working_token(server):
    async with httpx.AsyncClient(base_url=server.http, trust_env=False) as http:
        answer = await http.post(
            "/api/auth/token", json={"username": "alice", "password": password("alice")}
        )
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"token", "username"}
        assert body["username"] == "alice"
        assert isinstance(body["token"], str)
        assert body["token"]
        rooms = await http.get("/api/rooms/", headers={"Authorization": f"Bearer {body['token']}"})
        assert rooms.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'"alice"',
        b"{}",
        b'{"username": "alice"}',
        b'{"password": "pw-alice-123"}',
        b'{"username": "alice", "password": 123}',
    ],
)
async def test_token_endpoint_rejects_a_malformed_body(server, body):
    async with httpx.AsyncClient(base_url=server.http, trust_env=False) as http:
        answer = await http.post(
            "/api/auth/token", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400, answer.text


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice", "password": "wrong-password"},
        {"username": "alice", "password": password("bob")},
        {"username": "nobody", "password": "pw-nobody-123"},
    ],
)
async def test_token_endpoint_rejects_bad_credentials(server, credentials):
    async with httpx.AsyncClient(base_url=server.http, trust_env=False) as http:
        answer = await http.post("/api/auth/token", json=credentials)
    assert answer.status_code == 401, answer.text
    assert "token" not in answer.text


# --- handshake ----------------------------------------------------------------------


async def test_anonymous_socket_is_closed_with_4401(server):
    # Guests are off by default (``small_server`` turns them on).
    client = await Client.open(server, room_name())
    await client.expect_close(4401)


async def test_socket_with_an_unknown_token_is_closed_with_4401(server):
    client = await Client.open(server, room_name(), token="0" * 40)
    await client.expect_close(4401)


@pytest.mark.parametrize(
    "path",
    [
        "/ws/chat/bad.name/",
        "/ws/chat/" + "a" * 65 + "/",
        "/ws/chat/caf%C3%A9/",
        "/ws/chat/a%20b/",
        "/ws/chat/a$b/",
        "/ws/chat//",
    ],
)
async def test_bad_room_name_is_refused(server, tokens, path):
    await refused_or_closed(server, path, http=404, code=4404, token=tokens["alice"])


async def test_room_name_of_64_characters_is_accepted(server, tokens):
    room = "A-z_9" + "x" * 59
    client = await Client.join(server, room, token=tokens["alice"])
    assert client.ready["room"] == room
    await client.close()


async def test_foreign_origin_with_a_session_cookie_is_refused(server):
    cookies = await login(server, "alice")
    with pytest.raises(InvalidStatus) as refused:
        await Client.open(
            server,
            room_name(),
            headers={"Cookie": f"sessionid={cookies['sessionid']}"},
            origin=f"http://evil.example:{server.port}",
        )
    assert refused.value.response.status_code == 403


async def test_session_cookie_from_an_allowed_origin_authenticates(server):
    cookies = await login(server, "alice")
    room = room_name()
    client = await Client.join(
        server,
        room,
        headers={"Cookie": f"sessionid={cookies['sessionid']}"},
        origin=f"http://127.0.0.1:{server.port}",
    )
    assert client.ready == {"type": "ready", "room": room, "seq": 0, "username": "alice"}
    await client.say("from the browser")
    (frame,) = await client.messages(1)
    check_message_frame(frame, room=room, username="alice", text="from the browser")
    await client.close()


async def test_session_cookie_wins_over_a_bearer_token_of_another_user(server, tokens):
    cookies = await login(server, "alice")
    room = room_name()
    client = await Client.join(
        server,
        room,
        token=tokens["bob"],
        headers={"Cookie": f"sessionid={cookies['sessionid']}"},
        origin=f"http://127.0.0.1:{server.port}",
    )
    assert client.ready["username"] == "alice"
    await client.say("who am I")
    (frame,) = await client.messages(1)
    assert frame["username"] == "alice"
    await client.close()


async def test_bearer_token_is_used_when_the_session_cookie_is_invalid(server, tokens):
    client = await Client.join(
        server, room_name(), token=tokens["bob"], headers={"Cookie": "sessionid=not-a-session"}
    )
    assert client.ready["username"] == "bob"
    await client.close()


# --- ready, fan-out -------------------------------------------------------------------


async def test_ready_frame_of_a_new_room(server, tokens):
    room = room_name()
    client = await Client.join(server, room, token=tokens["carol"])
    assert client.backlog == []
    assert client.ready == {"type": "ready", "room": room, "seq": 0, "username": "carol"}
    await client.close()


async def test_messages_fan_out_to_every_socket_of_the_room_and_back_to_the_sender(server, tokens):
    room, elsewhere = room_name(), room_name()
    alice = await Client.join(server, room, token=tokens["alice"])
    bob = await Client.join(server, room, token=tokens["bob"])
    carol = await Client.join(server, elsewhere, token=tokens["carol"])

    await alice.say("hello bob", client_id="c-1")
    (a1,) = await alice.messages(1)  # the sender's acknowledgement
    (b1,) = await bob.messages(1)
    assert a1 == b1
    check_message_frame(a1, room=room, username="alice", text="hello bob", client_id="c-1")
    assert a1["seq"] == 1

    await bob.say("hi alice")
    (a2,) = await alice.messages(1)
    (b2,) = await bob.messages(1)
    assert a2 == b2
    check_message_frame(a2, room=room, username="bob", text="hi alice")
    assert a2["seq"] == 2
    assert a2["id"] != a1["id"]

    # Nothing leaks to another room, and nothing more reached the room's sockets.
    await carol.ping()
    await alice.ping()
    await bob.ping()
    async with Rest(server, tokens["carol"]) as rest:
        assert await rest.list_messages(room) == [a1, a2]  # same fields over REST
    for client in (alice, bob, carol):
        await client.close()


async def test_tutorial_client_frame_posts_a_message(server, tokens):
    """The Channels tutorial client sends ``{"message": text}`` as soon as the
    socket opens (before ``ready``) and reads ``username`` and ``message`` back."""
    room = room_name()
    post_history(server, room, 2)
    client = await Client.open(server, room, token=tokens["bob"])
    await client.send({"message": "こんにちは!"})
    backlog, ready = await client.until_ready()
    check_history(backlog, room, range(1, 3))
    assert ready["seq"] == 2
    (frame,) = await client.messages(1)
    check_message_frame(frame, room=room, username="bob", text="こんにちは!")
    assert frame["seq"] == 3
    await client.close()


async def test_server_restart_closes_with_1012_and_resume_misses_nothing(
    kaiwa_server, sqlite_env, tmp_path
):
    token = kaiwa_server.token("alice")
    room = room_name()
    client = await Client.join(kaiwa_server, room, token=token)
    for i in range(3):
        await client.say(f"before {i}")
    seen = await client.messages(3)
    stopping = asyncio.create_task(asyncio.to_thread(kaiwa_server.stop))
    await client.expect_close(1012)
    # A graceful exit (uvicorn re-raises the signal it handled), not a kill.
    assert await stopping in (0, -signal.SIGTERM)

    restarted = KaiwaServer(sqlite_env, tmp_path / "restarted.log").start()
    try:
        async with Rest(restarted, restarted.token("bob")) as rest:
            missed = [await rest.post_message(room, f"after {i}") for i in range(2)]
        resumed = await Client.join(restarted, room, token=token, after=seen[-1]["seq"])
        assert resumed.backlog == missed
        assert [m["seq"] for m in missed] == [4, 5]
        assert resumed.ready["seq"] == 5
        await resumed.close()
    finally:
        restarted.stop()


# --- backlog and resume -----------------------------------------------------------------


async def test_join_without_after_sends_the_last_50_messages_then_ready(server, tokens, history):
    client = await Client.join(server, history, token=tokens["carol"])
    check_history(client.backlog, history, range(HISTORY - 49, HISTORY + 1))
    assert client.ready == {"type": "ready", "room": history, "seq": HISTORY, "username": "carol"}
    await client.close()


@pytest.mark.parametrize("after", [0, 1, 150, 205, 209, HISTORY])
async def test_resume_sends_exactly_the_messages_after_seq_in_order(server, tokens, history, after):
    client = await Client.join(server, history, token=tokens["carol"], after=after)
    check_history(client.backlog, history, range(after + 1, HISTORY + 1))
    assert client.ready == {"type": "ready", "room": history, "seq": HISTORY, "username": "carol"}
    await client.close()


async def test_resume_then_live_messages_without_gap_or_duplicate(server, tokens):
    room = room_name()
    post_history(server, room, 10)
    client = await Client.join(server, room, token=tokens["carol"], after=7)
    check_history(client.backlog, room, range(8, 11))
    assert client.ready["seq"] == 10
    async with Rest(server, tokens["alice"]) as rest:
        posted = [await rest.post_message(room, f"live {i}") for i in range(3)]
    assert await client.messages(3) == posted
    assert [m["seq"] for m in posted] == [11, 12, 13]
    await client.ping()
    await client.close()


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", "0x10", "%E4%B8%80"])
async def test_invalid_after_gets_an_error_then_a_normal_join(server, tokens, history, after):
    client = await Client.open(server, history, token=tokens["carol"], after=after)
    await client.expect_error("bad_request")
    backlog, ready = await client.until_ready()
    check_history(backlog, history, range(HISTORY - 49, HISTORY + 1))
    assert ready["seq"] == HISTORY
    await client.ping()
    await client.close()


async def test_resume_beyond_the_resume_limit_gets_reset(small_server):
    room = room_name()
    post_history(small_server, room, 10)
    token = small_server.token("carol")

    client = await Client.join(small_server, room, token=token, after=4)  # 6 missing > 5
    assert client.backlog == [{"type": "reset", "seq": 10}]
    assert client.ready == {"type": "ready", "room": room, "seq": 10, "username": "carol"}
    await client.close()

    client = await Client.join(small_server, room, token=token, after=5)  # 5 missing: the limit
    check_history(client.backlog, room, range(6, 11))
    assert client.ready["seq"] == 10
    await client.close()


async def test_backlog_size_is_configurable(small_server):
    room = room_name()
    post_history(small_server, room, 10)
    client = await Client.join(small_server, room, token=small_server.token("carol"))
    check_history(client.backlog, room, range(8, 11))
    assert client.ready["seq"] == 10
    await client.close()


async def test_message_and_frame_size_limits_are_configurable(small_server):
    room = room_name()
    client = await Client.join(small_server, room, token=small_server.token("alice"))
    await client.say("x" * 101)
    await client.expect_error("too_long")
    await client.say("x" * 100)
    (frame,) = await client.messages(1)
    assert frame["message"] == "x" * 100
    await client.send('{"type": "ping", "pad": "' + "p" * 2100 + '"}')  # > 2048 bytes
    await client.expect_close(1009)


# --- client_id idempotency ------------------------------------------------------------------


async def test_client_id_retry_returns_the_original_and_stores_nothing(server, tokens):
    room = room_name()
    alice = await Client.join(server, room, token=tokens["alice"])
    bob = await Client.join(server, room, token=tokens["bob"])

    await alice.say("exactly once", client_id="c-retry")
    (first,) = await alice.messages(1)
    await alice.say("exactly once", client_id="c-retry")
    (again,) = await alice.messages(1)
    assert again == first
    check_message_frame(
        first, room=room, username="alice", text="exactly once", client_id="c-retry"
    )

    async with Rest(server, tokens["alice"]) as rest:
        # The same key over REST is the same message too.
        retried = await rest.post_message(room, "exactly once", "c-retry", status=(200, 201))
        assert (retried["id"], retried["seq"]) == (first["id"], first["seq"])
        # Another author's key, or another key, is another message.
        await bob.say("mine", client_id="c-retry")
        await alice.say("barrier", client_id="c-barrier")
        seen, mine, barrier = await bob.messages(3)  # the original once, not its retries
        assert seen == first
        assert (mine["username"], mine["seq"]) == ("bob", first["seq"] + 1)
        assert (barrier["message"], barrier["seq"]) == ("barrier", first["seq"] + 2)
        assert await alice.messages(2) == [mine, barrier]

        stored = await rest.list_messages(room)
    assert [(m["seq"], m["username"], m.get("client_id")) for m in stored] == [
        (1, "alice", "c-retry"),
        (2, "bob", "c-retry"),
        (3, "alice", "c-barrier"),
    ]
    # bob saw the retried message once: nothing else is queued for either.
    await bob.ping()
    await alice.ping()
    await alice.close()
    await bob.close()


# --- error frames ----------------------------------------------------------------------


BAD_FRAMES = [
    ("{not json", "bad_json"),
    ('{"message": "unterminated', "bad_json"),
    ("", "bad_json"),
    ("[1, 2]", "bad_frame"),
    ("42", "bad_frame"),
    ('"hello"', "bad_frame"),
    ("null", "bad_frame"),
    ({"type": "dance"}, "bad_frame"),
    ({"type": 7}, "bad_frame"),
    ({"type": "message"}, "bad_frame"),
    ({}, "bad_frame"),
    ({"message": ""}, "bad_frame"),
    ({"message": 42}, "bad_frame"),
    ({"message": None}, "bad_frame"),
    ({"message": ["hi"]}, "bad_frame"),
    ({"message": {"text": "hi"}}, "bad_frame"),
    ({"message": "x" * 4001}, "too_long"),
    ({"message": "hi", "client_id": ""}, "bad_frame"),
    ({"message": "hi", "client_id": "c" * 65}, "bad_frame"),
    ({"message": "hi", "client_id": 12}, "bad_frame"),
    ({"type": "read", "seq": "1"}, "bad_frame"),
    ({"type": "read", "seq": -1}, "bad_frame"),
    (b"\x00\x01binary", "bad_frame"),
    (b'{"message": "binary json"}', "bad_frame"),
]


async def test_bad_frames_get_an_error_and_the_connection_stays_open(server, tokens):
    room = room_name()
    alice = await Client.join(server, room, token=tokens["alice"])
    bob = await Client.join(server, room, token=tokens["bob"])
    for frame, code in BAD_FRAMES:
        await alice.send(frame)
        error = await alice.expect("error")
        assert error["code"] == code, (frame, error)
        assert isinstance(error["detail"], str)
        assert error["detail"]
        await alice.ping()

    # Nothing was stored or broadcast; the connection still posts.
    await alice.say("é" * 4000)  # 4000 characters (8000 bytes) is allowed
    (mine,) = await alice.messages(1)
    (seen,) = await bob.messages(1)
    assert mine == seen
    assert mine["seq"] == 1
    assert mine["message"] == "é" * 4000
    await alice.close()
    await bob.close()


async def test_frame_over_16_kib_closes_with_1009(server, tokens):
    room = room_name()
    client = await Client.join(server, room, token=tokens["alice"])
    await client.send('{"message": "' + "a" * 20 * 1024 + '"}')
    await client.expect_close(1009)
    async with Rest(server, tokens["alice"]) as rest:
        assert await rest.list_messages(room) == []


async def test_frame_of_exactly_16_kib_is_read(server, tokens):
    client = await Client.join(server, room_name(), token=tokens["alice"])
    frame = '{"message": "' + "a" * (16 * 1024 - 15) + '"}'
    assert len(frame.encode()) == 16 * 1024
    await client.send(frame)
    await client.expect_error("too_long")
    await client.ping()
    await client.close()


# --- read positions -----------------------------------------------------------------------


async def test_read_frame_reaches_the_users_other_sockets_only(server, tokens):
    room = room_name()
    post_history(server, room, 5)
    one = await Client.join(server, room, token=tokens["alice"])
    two = await Client.join(server, room, token=tokens["alice"])
    bob = await Client.join(server, room, token=tokens["bob"])

    await one.send({"type": "read", "seq": 3})
    assert await two.recv() == {"type": "read", "room": room, "seq": 3}
    # two got it, so it was dispatched: had one or bob been sent it, it would be
    # queued before their pong.
    await one.ping()
    await bob.ping()

    # The position never moves back: a lower seq tells nobody.
    await one.send({"type": "read", "seq": 2})
    await one.ping()  # processed
    await one.send({"type": "read", "seq": 5})
    assert await two.recv() == {"type": "read", "room": room, "seq": 5}
    await two.ping()

    # Over REST: 204, and every socket of the user hears it.
    async with Rest(server, tokens["alice"]) as rest:
        posted = [await rest.post_message(room, f"n{i}") for i in range(2)]
        answer = await rest.client.post(f"/api/rooms/{room}/read", json={"seq": 7})
        assert answer.status_code == 204
    for client in (one, two):
        assert await client.messages(2) == posted
        assert await client.recv() == {"type": "read", "room": room, "seq": 7}
    assert await bob.messages(2) == posted
    await bob.ping()
    for client in (one, two, bob):
        await client.close()


# --- private rooms ------------------------------------------------------------------------


async def test_private_room_admits_its_members_only(server, tokens):
    async with (
        Rest(server, tokens["alice"]) as alice_rest,
        Rest(server, tokens["bob"]) as bob_rest,
        Rest(server, tokens["carol"]) as carol_rest,
    ):
        opened = await alice_rest.client.post("/api/dms/", json={"username": "bob"})
        assert opened.status_code in (200, 201), opened.text
        dm = opened.json()["slug"]
        again = await bob_rest.client.post("/api/dms/", json={"username": "alice"})
        assert again.status_code in (200, 201)
        assert again.json()["slug"] == dm

        alice = await Client.join(server, dm, token=tokens["alice"])
        bob = await Client.join(server, dm, token=tokens["bob"])
        carol = await Client.open(server, dm, token=tokens["carol"])
        await carol.expect_close(4403)

        await alice.say("just us")
        (seen,) = await bob.messages(1)
        assert seen == (await alice.messages(1))[0]
        check_message_frame(seen, room=dm, username="alice", text="just us")
        await bob.say("yes")
        (yes,) = await alice.messages(1)
        assert (await bob.messages(1)) == [yes]
        assert (yes["username"], yes["message"], yes["seq"]) == ("bob", "yes", 2)

        answer = await carol_rest.client.get(f"/api/rooms/{dm}/messages/")
        assert answer.status_code == 404
        assert "just us" not in answer.text
        answer = await carol_rest.client.post(f"/api/rooms/{dm}/messages/", json={"message": "x"})
        assert answer.status_code == 404
        answer = await carol_rest.client.post(f"/api/rooms/{dm}/read", json={"seq": 1})
        assert answer.status_code == 404
        assert dm not in [r["slug"] for r in await carol_rest.rooms()]

        for rest in (alice_rest, bob_rest):
            (room,) = [r for r in await rest.rooms() if r["slug"] == dm]
            assert room["private"] is True
            assert room["last_seq"] == 2
            assert [m["message"] for m in await rest.list_messages(dm)] == ["just us", "yes"]
        # carol's attempts stored and broadcast nothing.
        await alice.ping()
        await bob.ping()
        await alice.close()
        await bob.close()


# --- REST ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "seqs"),
    [
        ({}, range(HISTORY - 49, HISTORY + 1)),
        ({"limit": 10}, range(HISTORY - 9, HISTORY + 1)),
        ({"limit": 1}, range(HISTORY, HISTORY + 1)),
        ({"after": 5, "limit": 3}, range(6, 9)),
        ({"after": 5}, range(6, 56)),
        ({"after": 200}, range(201, HISTORY + 1)),
        ({"after": HISTORY}, range(0)),
        ({"before": 10, "limit": 3}, range(7, 10)),
        ({"before": 3}, range(1, 3)),
        ({"before": 1}, range(0)),
        ({"after": 5, "before": 9}, range(6, 9)),
        ({"limit": 1000}, range(HISTORY - 199, HISTORY + 1)),
        ({"limit": 200}, range(HISTORY - 199, HISTORY + 1)),
        ({"after": 0, "limit": 500}, range(1, 201)),
    ],
)
async def test_rest_message_pages(server, tokens, history, params, seqs):
    async with Rest(server, tokens["carol"]) as rest:
        check_history(await rest.list_messages(history, **params), history, seqs)


@pytest.mark.parametrize("params", [{"after": "x"}, {"limit": "-1"}, {"before": "1.5"}])
async def test_rest_message_page_rejects_junk_parameters(server, tokens, history, params):
    async with Rest(server, tokens["carol"]) as rest:
        answer = await rest.client.get(f"/api/rooms/{history}/messages/", params=params)
    assert answer.status_code == 400


async def test_rest_post_is_broadcast_to_the_rooms_sockets(server, tokens):
    room = room_name()
    bob = await Client.join(server, room, token=tokens["bob"])
    async with Rest(server, tokens["alice"]) as rest:
        posted = await rest.post_message(room, "over rest", client_id="r-1")
        check_message_frame(posted, room=room, username="alice", text="over rest", client_id="r-1")
        assert posted["seq"] == 1
        assert await bob.messages(1) == [posted]
        posted = await rest.post_message(room, "no key")
        check_message_frame(posted, room=room, username="alice", text="no key")
        assert await bob.messages(1) == [posted]
        assert [r for r in await rest.rooms() if r["slug"] == room] == [
            {
                "slug": room,
                "title": room,
                "private": False,
                "last_seq": 2,
                "unread": 0,  # both are hers
                "mentions": 0,
            }
        ]
    await bob.ping()
    await bob.close()


async def test_rest_post_rejects_bad_messages(server, tokens):
    room = room_name()
    create_room(server, room, tokens["alice"])
    async with Rest(server, tokens["alice"]) as rest:
        for body in ({}, {"message": ""}, {"message": 5}, {"message": "x" * 4001}):
            answer = await rest.client.post(f"/api/rooms/{room}/messages/", json=body)
            assert answer.status_code == 400, (body, answer.text)
        answer = await rest.client.post(f"/api/rooms/{room}/messages/", json=["x"])
        assert answer.status_code == 400
        assert await rest.list_messages(room) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/rooms/", None),
        ("GET", "/api/rooms/lobby/messages/", None),
        ("POST", "/api/rooms/lobby/messages/", {"message": "hi"}),
        ("POST", "/api/rooms/lobby/read", {"seq": 1}),
        ("POST", "/api/dms/", {"username": "bob"}),
    ],
)
@pytest.mark.parametrize("token", [None, "0" * 40])
async def test_rest_without_valid_auth_is_401(server, method, path, body, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.http, trust_env=False) as http:
        answer = await http.request(method, path, json=body, headers=headers)
    assert answer.status_code == 401, answer.text


async def test_rest_with_a_session_cookie_needs_csrf_for_unsafe_methods(server):
    cookies = await login(server, "carol")
    room = room_name()
    create_room(server, room, server.token("carol"))
    async with httpx.AsyncClient(base_url=server.http, trust_env=False, cookies=cookies) as http:
        assert (await http.get("/api/rooms/")).status_code == 200
        answer = await http.post(f"/api/rooms/{room}/messages/", json={"message": "no csrf"})
        assert answer.status_code == 403
        answer = await http.post(
            f"/api/rooms/{room}/messages/",
            json={"message": "with csrf"},
            headers={"X-CSRFToken": cookies["csrftoken"]},
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["username"] == "carol"
        messages = (await http.get(f"/api/rooms/{room}/messages/")).json()["messages"]
    assert [m["message"] for m in messages] == ["with csrf"]


async def test_many_sockets_post_concurrently_with_gapless_seq(server, tokens):
    """SQLite, one process: concurrent writers still get seq 1..N exactly once."""
    room = room_name()
    clients = [await Client.join(server, room, token=tokens[n]) for n in USERS]
    per_client = 10
    for client in clients:
        for i in range(per_client):
            await client.say(f"{client.ready['username']} {i}", client_id=f"k{i}")
    total = per_client * len(clients)
    seen = await asyncio.gather(*(c.messages(total) for c in clients))
    assert [f["seq"] for f in seen[0]] == list(range(1, total + 1))
    assert all(s == seen[0] for s in seen)
    for client in clients:
        await client.ping()
        await client.close()


async def test_guests_when_enabled_get_a_guest_name(small_server):
    room = room_name()
    one = await Client.join(small_server, room)
    two = await Client.join(small_server, room)
    names = {one.ready["username"], two.ready["username"]}
    assert len(names) == 2
    assert all(re.fullmatch(r"guest-\S+", name) for name in names), names
    await one.say("hi from a guest")
    (frame,) = await one.messages(1)
    assert await two.messages(1) == [frame]
    check_message_frame(frame, room=room, username=one.ready["username"], text="hi from a guest")
    await one.close()
    await two.close()


@pytest.fixture(scope="module")
def presence_server(tmp_path_factory) -> Iterator[KaiwaServer]:
    """A server whose presence frames reach every room, with a 1 s grace period."""
    server = start_server(
        tmp_path_factory, KAIWA_PRESENCE_MAX_MEMBERS="200", KAIWA_PRESENCE_GRACE_SECONDS="1"
    )
    yield server
    server.stop()


async def test_presence_on_the_embedded_defaults(presence_server):
    room = room_name()
    alice_token, bob_token = presence_server.token("alice"), presence_server.token("bob")
    alice = await Client.join(presence_server, room, token=alice_token)
    bob = await Client.join(presence_server, room, token=bob_token)
    online = {"type": "presence", "room": room, "username": "bob", "status": "online"}
    assert await alice.presence_of("bob") == online
    await bob.send({"type": "presence", "status": "away"})
    assert (await alice.presence_of("bob"))["status"] == "away"
    async with httpx.AsyncClient(trust_env=False) as http:
        answer = await http.get(
            f"{presence_server.http}/api/rooms/{room}/presence",
            headers={"Authorization": f"Bearer {alice_token}"},
        )
    assert answer.json() == {
        "users": [
            {"username": "alice", "status": "online"},
            {"username": "bob", "status": "away"},
        ]
    }
    await bob.send({"type": "presence", "status": "sleeping"})
    while (frame := await bob.recv())["type"] == "presence":  # his own come to him too
        pass
    assert (frame["type"], frame["code"]) == ("error", "bad_frame")
    await bob.close()
    assert (await alice.presence_of("bob", timeout=4))["status"] == "offline"
    await alice.close()

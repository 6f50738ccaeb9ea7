"""Presence (PROTOCOL.md section 3): ``online`` while a socket is active,
``away`` while all are idle or hidden, ``offline`` once none has been open
for the grace period; ``presence`` frames to the rooms a user is a member of,
up to a size limit; ``GET /api/rooms/<room>/presence``."""

import asyncio
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from kaiwa.chat.realtime import presence
from tests.communicator import join
from tests.factories import MembershipFactory, RoomFactory, UserFactory, token_for

pytestmark = pytest.mark.django_db(transaction=True)

GRACE = 0.6  # seconds, for these tests


@pytest.fixture(autouse=True)
def _presence_on(settings):
    settings.KAIWA_PRESENCE_MAX_MEMBERS = 200
    settings.KAIWA_PRESENCE_GRACE_SECONDS = GRACE


async def user(name):
    return await database_sync_to_async(UserFactory)(username=name)


async def until_presence(socket, username, timeout=5.0):
    """The next ``presence`` frame about ``username`` (other frames skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await socket.recv(max(0.01, deadline - time.monotonic()))
        if frame["type"] == "presence" and frame["username"] == username:
            return frame


async def presence_frames(socket, seconds):
    """Every ``presence`` frame the socket got within ``seconds`` from now
    (then a ping's round trip: the communicator cannot wait for silence)."""
    await asyncio.sleep(seconds)
    await socket.send_json_to({"type": "ping"})
    got = []
    while (frame := await socket.recv())["type"] != "pong":
        if frame["type"] == "presence":
            got.append(frame)
    return got


def rest_presence(viewer, room):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(viewer)}")
    return client.get(f"/api/rooms/{room}/presence")


async def test_online_away_offline_reach_the_room():
    alice, bob = await user("alice"), await user("bob")
    a = await join(user=alice)
    assert await until_presence(a, "alice") == {
        "type": "presence", "room": "lobby", "username": "alice", "status": "online",
    }  # fmt: skip
    b = await join(user=bob)
    assert (await until_presence(a, "bob"))["status"] == "online"
    await b.send_json_to({"type": "presence", "status": "away"})
    assert (await until_presence(a, "bob"))["status"] == "away"
    await b.send_json_to({"type": "presence", "status": "online"})
    assert (await until_presence(a, "bob"))["status"] == "online"
    closed_at = time.monotonic()
    await b.disconnect()
    assert (await until_presence(a, "bob"))["status"] == "offline"
    assert time.monotonic() - closed_at >= GRACE * 0.9  # not before the grace period
    await a.disconnect()


async def test_a_user_is_away_only_when_all_his_sockets_are():
    alice, bob = await user("alice"), await user("bob")
    a = await join(user=alice)
    b1 = await join(user=bob)
    b2 = await join(user=bob)
    assert (await until_presence(a, "bob"))["status"] == "online"
    await b1.send_json_to({"type": "presence", "status": "away"})
    await b1.send_json_to({"type": "ping"})
    assert (await b1.recv())["type"] in ("pong", "presence")
    assert await presence_frames(a, presence.FLUSH_SECONDS * 3) == []  # b2 is still active
    await b2.send_json_to({"type": "presence", "status": "away"})
    assert (await until_presence(a, "bob"))["status"] == "away"
    await b2.disconnect()  # b1 is open and away: still away, never offline
    assert await presence_frames(a, GRACE * 2) == []
    for socket in (a, b1):
        await socket.disconnect()


async def test_a_reconnect_within_the_grace_period_does_not_flap():
    alice, bob = await user("alice"), await user("bob")
    a = await join(user=alice)
    b = await join(user=bob)
    assert (await until_presence(a, "bob"))["status"] == "online"
    await b.disconnect()
    await asyncio.sleep(GRACE / 3)
    b = await join(user=bob)
    assert [f for f in await presence_frames(a, GRACE * 2) if f["username"] == "bob"] == []
    await b.disconnect()
    await a.disconnect()


async def test_frames_go_to_every_room_the_user_is_a_member_of():
    alice, bob = await user("alice"), await user("bob")
    other = await database_sync_to_async(RoomFactory)(slug="other")
    await database_sync_to_async(MembershipFactory)(room=other, user=bob)
    await database_sync_to_async(MembershipFactory)(room=other, user=alice)
    a = await join("/ws/chat/other/", user=alice)
    b = await join("/ws/chat/lobby/", user=bob)  # bob has no socket in "other"
    frame = await until_presence(a, "bob")
    assert (frame["room"], frame["status"]) == ("other", "online")
    await b.disconnect()
    await a.disconnect()


async def test_a_new_member_already_online_is_announced_to_the_room_once():
    alice, bob = await user("alice"), await user("bob")
    await database_sync_to_async(RoomFactory)(slug="other")
    b_other = await join("/ws/chat/other/", user=bob)  # bob is online, not in lobby
    a = await join(user=alice)
    assert [f for f in await presence_frames(a, GRACE) if f["username"] == "bob"] == []
    b_lobby = await join(user=bob)  # his first join of lobby makes him a member
    frame = await until_presence(a, "bob")
    assert (frame["room"], frame["status"]) == ("lobby", "online")
    assert [f for f in await presence_frames(a, presence.FLUSH_SECONDS * 4)] == []  # once
    # Not news to bob's own sockets; a second join of a member announces nothing.
    assert [f for f in await presence_frames(b_lobby, 0.1) if f["username"] == "bob"] == []
    again = await join(user=bob)
    assert await presence_frames(a, presence.FLUSH_SECONDS * 4) == []
    for socket in (a, b_other, b_lobby, again):
        await socket.disconnect()


async def test_no_frames_above_the_room_size_limit_but_rest_answers(settings):
    alice, bob = await user("alice"), await user("bob")
    a = await join(user=alice)
    b = await join(user=bob)
    await until_presence(a, "bob")
    settings.KAIWA_PRESENCE_MAX_MEMBERS = 1  # lobby has 2
    await b.send_json_to({"type": "presence", "status": "away"})
    assert await presence_frames(a, presence.FLUSH_SECONDS * 4) == []
    answer = await database_sync_to_async(rest_presence)(alice, "lobby")
    assert answer.status_code == 200
    assert answer.json() == {
        "users": [
            {"username": "alice", "status": "online"},
            {"username": "bob", "status": "away"},
        ]
    }
    await b.disconnect()
    await a.disconnect()


async def test_rest_lists_members_who_are_not_offline():
    alice, bob, carol = await user("alice"), await user("bob"), await user("carol")
    a = await join(user=alice)
    c = await join(user=carol)
    await until_presence(a, "carol")
    await c.disconnect()  # carol is a member of lobby, gone for longer than the grace
    assert (await until_presence(a, "carol"))["status"] == "offline"
    answer = await database_sync_to_async(rest_presence)(bob, "lobby")
    assert answer.json() == {"users": [{"username": "alice", "status": "online"}]}
    await a.disconnect()


def test_rest_presence_of_a_private_room_is_hidden_from_strangers(alice, bob):
    room = RoomFactory(slug="secret", private=True)
    MembershipFactory(room=room, user=alice)
    assert rest_presence(alice, "secret").json() == {"users": []}  # nobody has a socket
    stranger = rest_presence(bob, "secret")
    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_found")
    unknown = rest_presence(bob, "no-such-room")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    assert APIClient().get("/api/rooms/secret/presence").status_code == 401


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "presence"},
        {"type": "presence", "status": "offline"},
        {"type": "presence", "status": ["away"]},
        {"type": "presence", "status": None},
    ],
)
async def test_a_bad_status_is_bad_frame(frame):
    a = await join(user=await user("alice"))
    await a.send_json_to(frame)
    while (got := await a.recv())["type"] == "presence":
        pass
    assert (got["type"], got["code"]) == ("error", "bad_frame")
    await a.disconnect()


async def test_guests_have_no_presence(settings):
    settings.KAIWA_ALLOW_GUESTS = True
    guest = await join()
    await guest.send_json_to({"type": "presence", "status": "away"})
    got = await guest.recv()
    assert (got["type"], got["code"]) == ("error", "bad_frame")
    await guest.disconnect()


# --- the stores, alike in memory and in Redis -------------------------------------


def redis_stores(url, count):
    """``count`` stores of one deployment, as ``count`` processes have."""
    prefix = f"kaiwa-test-{uuid.uuid4().hex[:10]}"
    return [presence.RedisPresenceStore(url, prefix, GRACE) for _ in range(count)]


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return presence.MemoryPresenceStore(GRACE)
    return redis_stores(request.getfixturevalue("redis_url"), 1)[0]


async def test_a_store_announces_each_change_once(store):
    assert await store.write([(1, "online"), (2, "away")]) == [(1, "online"), (2, "away")]
    assert await store.write([(1, "online"), (2, "away")]) == []  # a refresh: no change
    assert await store.write([(2, "online")]) == [(2, "online")]
    assert store.statuses([1, 2, 3]) == {1: "online", 2: "online"}
    assert await store.sweep() == []
    await asyncio.sleep(GRACE + 0.2)
    assert sorted(await store.sweep()) == [(1, "offline"), (2, "offline")]
    assert await store.sweep() == []
    assert store.statuses([1, 2]) == {}
    await store.close()


async def test_a_user_is_online_while_any_process_says_so(redis_url):
    stores = a, b = redis_stores(redis_url, 2)
    assert await a.write([(7, "online")]) == [(7, "online")]
    assert await b.write([(7, "away")]) == []  # a still says online
    await asyncio.sleep(GRACE / 2)
    assert await b.write([(7, "away")]) == []  # b refreshes; a does not (a died)
    await asyncio.sleep(GRACE / 2 + 0.1)
    assert await b.sweep() == [(7, "away")]  # a's entry lapsed: one change, once
    assert await a.sweep() == []
    assert a.statuses([7]) == {7: "away"}
    for store in stores:
        await store.close()


DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


async def test_a_dead_redis_never_blocks_the_chat(settings, caplog):
    settings.REDIS_URL = DEAD_REDIS  # presence only: the channel layer stays in process
    alice, bob = await user("alice"), await user("bob")
    a = await join(user=alice)
    b = await join(user=bob)
    await b.send_json_to({"type": "presence", "status": "away"})
    await a.send_json_to({"message": "still here", "client_id": "c1"})
    for socket in (a, b):
        while (frame := await socket.recv())["type"] != "message":
            assert frame["type"] != "presence"  # nothing could be stored, nothing announced
        assert frame["message"] == "still here"
    await asyncio.sleep(presence.FLUSH_SECONDS * 2)
    assert "presence update failed" in caplog.text
    for socket in (a, b):
        await socket.disconnect()


def test_rest_presence_is_503_while_redis_is_down(settings, alice):
    settings.REDIS_URL = DEAD_REDIS
    MembershipFactory(room=RoomFactory(slug="lobby"), user=alice)
    answer = rest_presence(alice, "lobby")
    assert answer.status_code == 503
    assert answer.json()["code"] == "unavailable"

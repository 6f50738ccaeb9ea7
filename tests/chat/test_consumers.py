"""ChatConsumer through Channels' WebsocketCommunicator (in-process)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from kaiwa.chat import fanout, selectors
from kaiwa.chat.models import Membership, Message, Room
from kaiwa.chat.routing import websocket_urlpatterns
from tests.factories import MembershipFactory, RoomFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

app = URLRouter(websocket_urlpatterns)


async def connect(user, path="/ws/chat/lobby/", expect_ready=True):
    communicator = WebsocketCommunicator(app, path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive_until_ready(communicator):
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        frames.append(frame)
        if frame["type"] == "ready":
            return frames


async def close_code(communicator):
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close", output
    return output.get("code")


@pytest.fixture
async def users():
    make = database_sync_to_async(UserFactory)
    return await make(username="alice"), await make(username="bob")


async def test_it_sends_ready_then_fans_out_to_every_member(users):
    alice, bob = users
    a, b = await connect(alice), await connect(bob)
    assert (await receive_until_ready(a))[-1] == {
        "type": "ready",
        "room": "lobby",
        "seq": 0,
        "username": "alice",
    }
    await receive_until_ready(b)
    await a.send_json_to({"message": "hello"})
    for communicator in (a, b):
        frame = await communicator.receive_json_from(timeout=5)
        assert frame["type"] == "message" and frame["seq"] == 1
        assert (frame["message"], frame["username"], frame["room"]) == ("hello", "alice", "lobby")
        assert frame["id"] and frame["created_at"].endswith("Z") and "client_id" not in frame
    await a.disconnect()
    await b.disconnect()


async def test_it_closes_anonymous_sockets_with_4401():
    communicator = await connect(AnonymousUser())
    assert await close_code(communicator) == 4401
    assert not await database_sync_to_async(Room.objects.exists)()


async def test_it_admits_guests_when_enabled(settings):
    settings.KAIWA_ALLOW_GUESTS = True
    communicator = await connect(AnonymousUser())
    ready = (await receive_until_ready(communicator))[-1]
    assert ready["username"].startswith("guest-")
    await communicator.send_json_to({"message": "hi"})
    assert (await communicator.receive_json_from(timeout=5))["username"] == ready["username"]
    await communicator.disconnect()


@pytest.mark.parametrize(
    "path", ["/ws/chat/a%20b/", "/ws/chat/" + "x" * 65 + "/", "/ws/elsewhere/"]
)
async def test_it_closes_bad_room_names_with_4404(users, path):
    communicator = await connect(users[0], path)
    assert await close_code(communicator) == 4404


async def test_it_rejects_foreign_private_room(users):
    alice, bob = users
    room = await database_sync_to_async(RoomFactory)(slug="secret", private=True)
    await database_sync_to_async(MembershipFactory)(room=room, user=bob)
    communicator = await connect(alice, "/ws/chat/secret/")
    assert await close_code(communicator) == 4403
    member = await connect(bob, "/ws/chat/secret/")
    assert (await receive_until_ready(member))[-1]["room"] == "secret"
    await member.disconnect()


async def test_backlog_then_resume_with_no_gap_and_no_duplicate(users):
    alice, _ = users
    a = await connect(alice)
    await receive_until_ready(a)
    for i in range(5):
        await a.send_json_to({"message": f"m{i}"})
        await a.receive_json_from(timeout=5)
    await a.disconnect()
    resumed = await connect(alice, "/ws/chat/lobby/?after=2")
    frames = await receive_until_ready(resumed)
    assert [f["seq"] for f in frames[:-1]] == [3, 4, 5]
    assert frames[-1]["seq"] == 5
    await resumed.send_json_to({"message": "live"})
    assert (await resumed.receive_json_from(timeout=5))["seq"] == 6
    await resumed.disconnect()


@pytest.mark.parametrize("query", ["after=abc", "after=-1", "after=1e3", "after="])
async def test_garbage_after_gets_an_error_and_the_plain_backlog(users, query):
    communicator = await connect(users[0], f"/ws/chat/lobby/?{query}")
    frames = await receive_until_ready(communicator)
    if query != "after=":
        assert frames[0]["type"] == "error" and frames[0]["code"] == "bad_request"
    assert frames[-1]["type"] == "ready"
    await communicator.disconnect()


async def test_resume_beyond_the_limit_sends_reset(users, settings):
    settings.KAIWA_RESUME_LIMIT = 2
    a = await connect(users[0])
    await receive_until_ready(a)
    for i in range(4):
        await a.send_json_to({"message": f"m{i}"})
        await a.receive_json_from(timeout=5)
    await a.disconnect()
    resumed = await connect(users[0], "/ws/chat/lobby/?after=1")
    frames = await receive_until_ready(resumed)
    assert frames == [
        {"type": "reset", "seq": 4},
        {"type": "ready", "room": "lobby", "seq": 4, "username": "alice"},
    ]
    await resumed.disconnect()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"type": "dance"}', "bad_frame"),
        ('{"message": 42}', "bad_frame"),
        ('{"message": ""}', "bad_frame"),
        ('{"type": "message"}', "bad_frame"),
        ('{"message": "hi", "client_id": ""}', "bad_frame"),
        ('{"message": "' + "x" * 4001 + '"}', "too_long"),
        ('{"type": "read", "seq": "x"}', "bad_frame"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(users, payload, code):
    communicator = await connect(users[0])
    await receive_until_ready(communicator)
    await communicator.send_to(text_data=payload)
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == code and frame["detail"]
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
    assert not await database_sync_to_async(Message.objects.exists)()
    await communicator.disconnect()


async def test_binary_frames_get_bad_frame(users):
    communicator = await connect(users[0])
    await receive_until_ready(communicator)
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await communicator.receive_json_from(timeout=5))["code"] == "bad_frame"
    await communicator.disconnect()


async def test_oversized_frames_close_with_1009(users, settings):
    settings.KAIWA_MAX_FRAME_BYTES = 1024
    communicator = await connect(users[0])
    await receive_until_ready(communicator)
    await communicator.send_to(text_data='{"message": "' + "x" * 2000 + '"}')
    assert await close_code(communicator) == 1009


async def test_client_id_retry_returns_the_original_to_the_sender_only(users):
    alice, bob = users
    a, b = await connect(alice), await connect(bob)
    await receive_until_ready(a)
    await receive_until_ready(b)
    await a.send_json_to({"message": "once", "client_id": "c-1"})
    first = await a.receive_json_from(timeout=5)
    assert (await b.receive_json_from(timeout=5))["seq"] == first["seq"]
    await a.send_json_to({"message": "once", "client_id": "c-1"})
    again = await a.receive_json_from(timeout=5)
    assert (again["seq"], again["id"], again["client_id"]) == (first["seq"], first["id"], "c-1")
    assert await b.receive_nothing(timeout=0.3)
    assert await database_sync_to_async(Message.objects.count)() == 1
    await a.disconnect()
    await b.disconnect()


async def test_read_reaches_the_users_other_sockets_only(users):
    alice, bob = users
    first, second, other = await connect(alice), await connect(alice), await connect(bob)
    for communicator in (first, second, other):
        await receive_until_ready(communicator)
    await first.send_json_to({"message": "m"})
    for communicator in (first, second, other):
        await communicator.receive_json_from(timeout=5)
    await first.send_json_to({"type": "read", "seq": 1})
    assert await second.receive_json_from(timeout=5) == {"type": "read", "room": "lobby", "seq": 1}
    assert await first.receive_nothing(timeout=0.3)
    assert await other.receive_nothing(timeout=0.1)
    for communicator in (first, second, other):
        await communicator.disconnect()


async def store_unpublished(monkeypatch, user, text):
    """Store a message in lobby whose broadcast is lost, as if its process
    died between commit and publish."""
    from kaiwa.chat import services

    room = await database_sync_to_async(Room.objects.get)(slug="lobby")
    with monkeypatch.context() as patch:
        patch.setattr(fanout, "publish_message", lambda *a, **k: None)
        await database_sync_to_async(services.message_create)(
            room=room, user=user, username=user.username, text=text
        )


async def test_a_lost_broadcast_is_filled_from_the_database(users, settings, monkeypatch):
    settings.KAIWA_GAP_GRACE_SECONDS = 0.05
    alice, bob = users
    b = await connect(bob)
    await receive_until_ready(b)
    await store_unpublished(monkeypatch, alice, "lost")
    a = await connect(alice)
    await receive_until_ready(a)
    await a.send_json_to({"message": "after the loss"})
    first = await b.receive_json_from(timeout=5)
    second = await b.receive_json_from(timeout=5)
    assert [(first["seq"], first["message"]), (second["seq"], second["message"])] == [
        (1, "lost"),
        (2, "after the loss"),
    ]
    await a.disconnect()
    await b.disconnect()


async def test_a_slow_socket_is_closed_with_4408(users, settings):
    settings.KAIWA_OUTBOUND_MAX_MESSAGES = 3
    alice, bob = users
    written = []
    unblock = asyncio.Event()
    stalled = False

    async def slow_transport(message):  # after ready, the client stops reading
        if not stalled:
            return await communicator.output_queue.put(message)
        written.append(message["text"])
        await unblock.wait()

    communicator = WebsocketCommunicator(app, "/ws/chat/lobby/")
    communicator.scope["user"] = bob
    communicator.scope[fanout.RAW_SEND_KEY] = slow_transport
    assert (await communicator.connect())[0]
    await receive_until_ready(communicator)
    stalled = True
    feed = fanout.get_hub().feeds["lobby"]
    for seq in range(1, 10):
        feed.offer(seq, f'{{"type":"message","seq":{seq}}}')
    assert await close_code(communicator) == 4408
    assert written == ['{"type":"message","seq":1}']  # the rest was queued, then dropped


async def test_a_lost_last_broadcast_is_filled_without_a_later_message(
    users, settings, monkeypatch
):
    settings.KAIWA_GAP_GRACE_SECONDS = 0.05
    settings.KAIWA_SEQ_CHECK_SECONDS = 0.1
    alice, bob = users
    b = await connect(bob)
    await receive_until_ready(b)
    await store_unpublished(monkeypatch, alice, "last words")
    frame = await b.receive_json_from(timeout=5)
    assert (frame["seq"], frame["message"]) == (1, "last words")
    await b.disconnect()


async def test_a_bad_room_name_is_refused_before_authentication():
    communicator = await connect(AnonymousUser(), "/ws/chat/a%20b/")
    assert await close_code(communicator) == 4404


async def test_joins_to_an_open_feed_get_their_backlog_from_memory(users, monkeypatch):
    alice, bob = users
    a = await connect(alice)
    await receive_until_ready(a)
    for i in range(3):
        await a.send_json_to({"message": f"m{i}"})
        await a.receive_json_from(timeout=5)

    def no_database(**kwargs):
        raise AssertionError("the feed's memory should have answered")

    monkeypatch.setattr(selectors, "message_backlog", no_database)
    fresh, resumed = await connect(bob), await connect(bob, "/ws/chat/lobby/?after=1")
    assert [f.get("message") for f in await receive_until_ready(fresh)] == ["m0", "m1", "m2", None]
    assert [f.get("seq") for f in await receive_until_ready(resumed)] == [2, 3, 3]
    for communicator in (a, fresh, resumed):
        await communicator.disconnect()


async def test_a_message_deleted_from_the_database_is_not_served_from_memory(users):
    alice, bob = users
    a = await connect(alice)
    await receive_until_ready(a)
    for text in ("keep", "secret"):
        await a.send_json_to({"message": text})
        await a.receive_json_from(timeout=5)
    await database_sync_to_async(Message.objects.filter(text="secret").delete)()
    await asyncio.sleep(0.1)  # the forget event runs on the hub's loop
    joined = await connect(bob)
    assert [f.get("message") for f in await receive_until_ready(joined)] == ["keep", None]
    for communicator in (a, joined):
        await communicator.disconnect()


async def test_read_positions_are_stored_and_never_past_what_was_sent(users, settings):
    settings.KAIWA_READ_FLUSH_SECONDS = 0.05
    alice, bob = users
    a, b = await connect(alice), await connect(bob)
    for communicator in (a, b):
        await receive_until_ready(communicator)
    await a.send_json_to({"message": "m"})
    for communicator in (a, b):
        await communicator.receive_json_from(timeout=5)
    await b.send_json_to({"type": "read", "seq": 99})  # only seq 1 was sent to b
    await a.send_json_to({"type": "read", "seq": 1})
    await asyncio.sleep(0.5)

    def positions():
        return dict(Membership.objects.values_list("user__username", "last_read_seq"))

    assert await database_sync_to_async(positions)() == {"alice": 1, "bob": 1}
    await b.send_json_to({"type": "read", "seq": 0})  # never moves back
    await b.disconnect()  # a closing socket stores what is pending
    assert await database_sync_to_async(positions)() == {"alice": 1, "bob": 1}
    await a.disconnect()

"""ChatConsumer through Channels' WebsocketCommunicator (in process)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from kaiwa.chat import selectors
from kaiwa.chat.models import Membership, Message, Room
from kaiwa.chat.realtime import hub, publish
from tests.communicator import Socket, connect, join
from tests.factories import MembershipFactory, RoomFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


async def post_and_ack(socket, *texts):
    """Post ``texts`` one after the other, each read back as its broadcast."""
    for text in texts:
        await socket.send_json_to({"message": text})
        assert (await socket.recv())["message"] == text


@pytest.fixture
async def users():
    make = database_sync_to_async(UserFactory)
    return await make(username="alice"), await make(username="bob")


async def test_it_sends_ready_then_fans_out_to_every_member(users):
    alice, bob = users
    a, b = await join(user=alice), await join(user=bob)
    assert a.backlog == []
    assert a.ready == {"type": "ready", "room": "lobby", "seq": 0, "username": "alice"}
    await a.send_json_to({"message": "hello"})
    for communicator in (a, b):
        frame = await communicator.recv()
        assert frame["type"] == "message"
        assert frame["seq"] == 1
        assert (frame["message"], frame["username"], frame["room"]) == ("hello", "alice", "lobby")
        assert frame["id"]
        assert frame["created_at"].endswith("Z")
        assert "client_id" not in frame
    await a.disconnect()
    await b.disconnect()


async def test_it_closes_anonymous_sockets_with_4401():
    communicator = await connect(user=AnonymousUser())
    assert await communicator.close_code() == 4401
    assert not await database_sync_to_async(Room.objects.exists)()


async def test_it_admits_guests_when_enabled(settings):
    settings.KAIWA_ALLOW_GUESTS = True
    communicator = await join(user=AnonymousUser())
    assert communicator.ready["username"].startswith("guest-")
    await communicator.send_json_to({"message": "hi"})
    assert (await communicator.recv())["username"] == communicator.ready["username"]
    await communicator.disconnect()


@pytest.mark.parametrize(
    "path", ["/ws/chat/a%20b/", "/ws/chat/" + "x" * 65 + "/", "/ws/elsewhere/"]
)
async def test_it_closes_bad_room_names_with_4404(users, path):
    communicator = await connect(path, user=users[0])
    assert await communicator.close_code() == 4404


async def test_it_rejects_foreign_private_room(users):
    alice, bob = users
    room = await database_sync_to_async(RoomFactory)(slug="secret", private=True)
    await database_sync_to_async(MembershipFactory)(room=room, user=bob)
    communicator = await connect("/ws/chat/secret/", user=alice)
    assert await communicator.close_code() == 4403
    member = await join("/ws/chat/secret/", user=bob)
    assert member.ready["room"] == "secret"
    await member.disconnect()


async def test_backlog_then_resume_with_no_gap_and_no_duplicate(users):
    alice, _ = users
    a = await join(user=alice)
    await post_and_ack(a, *(f"m{i}" for i in range(5)))
    await a.disconnect()
    resumed = await join("/ws/chat/lobby/?after=2", user=alice)
    assert [(f["type"], f["seq"]) for f in resumed.backlog] == [("message", s) for s in (3, 4, 5)]
    assert resumed.ready["seq"] == 5
    await resumed.send_json_to({"message": "live"})
    assert (await resumed.recv())["seq"] == 6
    await resumed.disconnect()


@pytest.mark.parametrize(
    ("query", "refused"),
    [("after=abc", True), ("after=-1", True), ("after=1e3", True), ("after=", False)],
)
async def test_garbage_after_gets_an_error_and_the_plain_backlog(users, settings, query, refused):
    # Five messages, a backlog of three: the plain join's backlog (3, 4, 5)
    # is told apart from a resume from 0 (1 .. 5) or from a reset.
    settings.KAIWA_BACKLOG_MESSAGES = 3
    alice, bob = users
    poster = await join(user=alice)
    await post_and_ack(poster, *(f"m{i}" for i in range(5)))
    communicator = await join(f"/ws/chat/lobby/?{query}", user=bob)
    error = [("error", "bad_request", None)] if refused else []
    assert [(f["type"], f.get("code"), f.get("seq")) for f in communicator.backlog] == [
        *error,
        ("message", None, 3),
        ("message", None, 4),
        ("message", None, 5),
    ]
    assert communicator.ready["seq"] == 5
    for socket in (poster, communicator):
        await socket.disconnect()


async def test_resume_beyond_the_limit_sends_reset(users, settings):
    settings.KAIWA_RESUME_LIMIT = 2
    a = await join(user=users[0])
    await post_and_ack(a, *(f"m{i}" for i in range(4)))
    await a.disconnect()
    resumed = await join("/ws/chat/lobby/?after=1", user=users[0])
    assert resumed.backlog == [{"type": "reset", "seq": 4}]
    assert resumed.ready == {"type": "ready", "room": "lobby", "seq": 4, "username": "alice"}
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
    communicator = await join(user=users[0])
    await communicator.send_to(text_data=payload)
    frame = await communicator.recv()
    assert (frame["type"], frame["code"]) == ("error", code)
    assert frame["detail"]
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.recv() == {"type": "pong"}
    assert not await database_sync_to_async(Message.objects.exists)()
    await communicator.disconnect()


async def test_binary_frames_get_bad_frame(users):
    communicator = await join(user=users[0])
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await communicator.recv())["code"] == "bad_frame"
    await communicator.disconnect()


async def test_oversized_frames_close_with_1009(users, settings):
    settings.KAIWA_MAX_FRAME_BYTES = 1024
    communicator = await join(user=users[0])
    await communicator.send_to(text_data='{"message": "' + "x" * 2000 + '"}')
    assert await communicator.close_code() == 1009


async def test_client_id_retry_returns_the_original_to_the_sender_only(users):
    alice, bob = users
    a, b = await join(user=alice), await join(user=bob)
    await a.send_json_to({"message": "once", "client_id": "c-1"})
    first = await a.recv()
    assert (await b.recv())["seq"] == first["seq"]
    await a.send_json_to({"message": "once", "client_id": "c-1"})
    again = await a.recv()
    assert (again["seq"], again["id"], again["client_id"]) == (first["seq"], first["id"], "c-1")
    assert await b.receive_nothing(timeout=0.3)
    assert await database_sync_to_async(Message.objects.count)() == 1
    await a.disconnect()
    await b.disconnect()


async def test_read_reaches_the_users_other_sockets_only(users):
    alice, bob = users
    first, second, other = await join(user=alice), await join(user=alice), await join(user=bob)
    await first.send_json_to({"message": "m"})
    for communicator in (first, second, other):
        await communicator.recv()
    await first.send_json_to({"type": "read", "seq": 1})
    assert await second.recv() == {"type": "read", "room": "lobby", "seq": 1}
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
        patch.setattr(publish, "publish_message", lambda *a, **k: None)
        await database_sync_to_async(services.message_create)(
            room=room, user=user, username=user.username, text=text
        )


async def test_a_lost_broadcast_is_filled_from_the_database(users, settings, monkeypatch):
    settings.KAIWA_GAP_GRACE_SECONDS = 0.05
    alice, bob = users
    b = await join(user=bob)
    await store_unpublished(monkeypatch, alice, "lost")
    a = await join(user=alice)
    await a.send_json_to({"message": "after the loss"})
    first = await b.recv()
    second = await b.recv()
    assert [(first["seq"], first["message"]), (second["seq"], second["message"])] == [
        (1, "lost"),
        (2, "after the loss"),
    ]
    await a.disconnect()
    await b.disconnect()


async def test_a_slow_socket_is_closed_with_4408(users, settings):
    settings.KAIWA_OUTBOUND_MAX_MESSAGES = 3
    _, bob = users
    written = []
    unblock = asyncio.Event()
    stalled = False

    async def slow_transport(message):  # after ready, the client stops reading
        if not stalled:
            return await communicator.output_queue.put(message)
        written.append(message["text"])
        await unblock.wait()

    communicator = Socket(user=bob, raw_send=slow_transport)
    await communicator.open()
    await communicator.until_ready()
    stalled = True
    feed = hub.get_hub().feeds["lobby"]
    for seq in range(1, 10):
        feed.offer(seq, f'{{"type":"message","seq":{seq}}}')
    assert await communicator.close_code() == 4408
    assert written == ['{"type":"message","seq":1}']  # the rest was queued, then dropped


async def test_a_lost_last_broadcast_is_filled_without_a_later_message(
    users, settings, monkeypatch
):
    """Nothing follows the lost message to reveal the gap: the hub's watcher,
    which compares each feed with its room's ``last_seq`` every
    KAIWA_SEQ_CHECK_SECONDS, finds it."""
    settings.KAIWA_GAP_GRACE_SECONDS = 0.05
    settings.KAIWA_SEQ_CHECK_SECONDS = 0.1
    alice, bob = users
    b = await join(user=bob)
    await store_unpublished(monkeypatch, alice, "last words")
    frame = await b.recv()
    assert (frame["seq"], frame["message"]) == (1, "last words")
    await b.disconnect()


async def test_a_bad_room_name_is_refused_before_authentication():
    communicator = await connect("/ws/chat/a%20b/", user=AnonymousUser())
    assert await communicator.close_code() == 4404


async def test_joins_to_an_open_feed_get_their_backlog_from_memory(users, monkeypatch):
    alice, bob = users
    a = await join(user=alice)
    await post_and_ack(a, "m0", "m1", "m2")

    def no_database(**kwargs):
        raise AssertionError("the feed's memory should have answered")

    monkeypatch.setattr(selectors, "message_backlog", no_database)
    fresh = await join(user=bob)
    resumed = await join("/ws/chat/lobby/?after=1", user=bob)
    assert [f["message"] for f in fresh.backlog] == ["m0", "m1", "m2"]
    assert [f["seq"] for f in resumed.backlog] == [2, 3]
    assert fresh.ready["seq"] == resumed.ready["seq"] == 3
    for communicator in (a, fresh, resumed):
        await communicator.disconnect()


async def test_a_message_deleted_from_the_database_is_not_served_from_memory(users):
    alice, bob = users
    a = await join(user=alice)
    await post_and_ack(a, "keep", "secret")
    await database_sync_to_async(Message.objects.filter(text="secret").delete)()
    await asyncio.sleep(0.1)  # the forget event runs on the hub's loop
    joined = await join(user=bob)
    assert [f["message"] for f in joined.backlog] == ["keep"]
    for communicator in (a, joined):
        await communicator.disconnect()


async def test_read_positions_are_stored_and_never_past_what_was_sent(users, settings):
    settings.KAIWA_READ_FLUSH_SECONDS = 0.05
    alice, bob = users
    a, b = await join(user=alice), await join(user=bob)
    await a.send_json_to({"message": "m"})
    for communicator in (a, b):
        await communicator.recv()
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


async def test_a_client_gone_during_its_join_is_no_error(users, caplog):
    """In a connect storm uvicorn may close a socket itself (its keepalive
    ping unanswered) before the join sends ``ready``; its send then raises.
    The join stops quietly: no 'join failed' with a traceback per socket
    (formatting those was a seventh of the CPU of a storm), no crash of the
    consumer, and the disconnect that follows cleans up."""
    _, bob = users

    async def closed_transport(message):
        if message["type"] == "websocket.accept":
            return await communicator.output_queue.put(message)
        raise RuntimeError(
            "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'."
        )

    communicator = Socket(user=bob, raw_send=closed_transport)
    await communicator.open()
    for _ in range(100):  # the join runs on: wait until it has tried to send
        if "lobby" in hub.get_hub().feeds:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    await communicator.disconnect()  # re-raises what the consumer raised, if anything
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
    assert "lobby" not in hub.get_hub().feeds  # its last subscriber left: the feed closed

"""Room events (PROTOCOL.md version 2): edits, deletions and reactions take
the room's next seq, are broadcast to every socket, replayed on resume, and
served over REST in the message's current state."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from kaiwa.chat.models import Message, MessageVersion, Room, RoomEvent
from tests.communicator import join
from tests.factories import RoomFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def people():
    make = database_sync_to_async(UserFactory)
    alice, bob = await make(username="alice"), await make(username="bob")
    staff = await make(username="sam", is_staff=True)
    await database_sync_to_async(RoomFactory)(slug="lobby")
    return alice, bob, staff


async def post(socket, text, client_id=None):
    """Post ``text``; returns its message frame (the socket's acknowledgement)."""
    frame = {"message": text, **({"client_id": client_id} if client_id else {})}
    await socket.send_json_to(frame)
    while (got := await socket.recv())["type"] != "message" or got["message"] != text:
        pass
    return got


async def next_of(socket, kind):
    """The next frame of type ``kind`` (others, e.g. a neighbour's, skipped)."""
    while (got := await socket.recv())["type"] != kind:
        pass
    return got


def rest(user):
    client = Client()
    client.force_login(user)
    return client


async def get(user, url):
    """GET ``url`` over REST as ``user`` (signed in with a session)."""
    return await database_sync_to_async(lambda: rest(user).get(url))()


async def messages_over_rest(user):
    return (await get(user, "/api/rooms/lobby/messages/")).json()["messages"]


async def test_an_edit_is_a_room_event_every_socket_gets(people):
    alice, bob, _ = people
    a, b = await join(user=alice), await join(user=bob)
    message = await post(a, "helo *all*")
    assert message["html"] == "<p>helo <em>all</em></p>\n"
    assert message["edited_at"] is None
    await a.send_json_to({"type": "edit", "id": message["id"], "message": "hello *all*"})
    for socket in (a, b):
        edit = await next_of(socket, "edit")
        assert edit["seq"] == message["seq"] + 1
        assert edit["id"] == message["id"]
        assert edit["message"] == "hello *all*"
        assert edit["username"] == "alice"
        assert edit["html"] == "<p>hello <em>all</em></p>\n"
        assert edit["edited_at"]
    [stored] = await messages_over_rest(bob)
    assert stored["message"] == "hello *all*"
    assert stored["edited_at"] == edit["edited_at"]
    assert stored["seq"] == message["seq"]  # a message keeps the seq that created it
    history = await get(bob, f"/api/messages/{message['id']}/history")
    versions = history.json()["versions"]
    assert [v["message"] for v in versions] == ["helo *all*", "hello *all*"]
    assert versions[0]["edited_at"] is None
    assert versions[1]["edited_at"] == edit["edited_at"]


async def test_only_the_author_edits_and_the_socket_stays(people):
    alice, bob, _ = people
    a, b = await join(user=alice), await join(user=bob)
    message = await post(a, "mine")
    await b.send_json_to({"type": "edit", "id": message["id"], "message": "yours"})
    error = await next_of(b, "error")
    assert error["code"] == "forbidden"
    await b.send_json_to({"type": "ping"})
    assert (await next_of(b, "pong"))["type"] == "pong"  # still open
    assert not await database_sync_to_async(RoomEvent.objects.exists)()


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("999999", "not_found"),
        ("abc", "not_found"),
        ("other-room", "not_found"),
        (None, "bad_frame"),
    ],
)
async def test_unknown_or_foreign_messages_are_not_found(people, target, code):
    alice, _, _ = people
    if target == "other-room":
        other = await join("/ws/chat/elsewhere/", user=alice)
        target = (await post(other, "there"))["id"]
    a = await join(user=alice)
    await a.send_json_to({"type": "delete", "id": target})
    assert (await next_of(a, "error"))["code"] == code


async def test_a_deletion_leaves_a_tombstone_and_no_text_anywhere(people):
    alice, bob, _ = people
    a, b = await join(user=alice), await join(user=bob)
    message = await post(a, "secret plan")
    await a.send_json_to({"type": "edit", "id": message["id"], "message": "secret plan v2"})
    await next_of(b, "edit")
    await a.send_json_to({"type": "delete", "id": message["id"]})
    delete = await next_of(b, "delete")
    assert delete == {
        "type": "delete",
        "room": "lobby",
        "seq": message["seq"] + 2,
        "id": message["id"],
    }
    [stored] = await messages_over_rest(bob)
    assert stored["deleted"] is True
    assert stored["message"] == ""
    assert stored["html"] == ""
    # A resume from before the message replays it deleted, and its edit without text.
    resumed = await join(f"/ws/chat/lobby/?after={message['seq'] - 1}", user=bob)
    kinds = [(f["type"], f["seq"]) for f in resumed.backlog]
    assert kinds == [
        ("message", message["seq"]),
        ("edit", message["seq"] + 1),
        ("delete", message["seq"] + 2),
    ]
    assert "secret" not in str(resumed.backlog)
    fresh = await join(user=bob)  # a join without after leaves deleted messages out
    assert fresh.backlog == []
    history = await get(alice, f"/api/messages/{message['id']}/history")
    assert history.status_code == 404
    assert not await database_sync_to_async(MessageVersion.objects.exists)()
    assert await database_sync_to_async(Message.objects.count)() == 1  # the tombstone


async def test_staff_delete_any_message_others_do_not(people):
    alice, bob, staff = people
    a, b, s = await join(user=alice), await join(user=bob), await join(user=staff)
    message = await post(a, "spam")
    await b.send_json_to({"type": "delete", "id": message["id"]})
    assert (await next_of(b, "error"))["code"] == "forbidden"
    await s.send_json_to({"type": "delete", "id": message["id"]})
    assert (await next_of(a, "delete"))["id"] == message["id"]


async def test_reactions_are_idempotent_events_with_counts(people):
    alice, bob, _ = people
    a, b = await join(user=alice), await join(user=bob)
    message = await post(a, "lunch?")
    thumbs = {"type": "react", "id": message["id"], "emoji": "👍", "on": True}
    await a.send_json_to(thumbs)
    first = await next_of(a, "reaction")
    await b.send_json_to(thumbs)
    await b.send_json_to(thumbs)  # bob's second 👍 is a no-op
    second = await next_of(a, "reaction")
    assert (first["username"], second["username"]) == ("alice", "bob")
    assert second["seq"] == first["seq"] + 1
    assert second["on"] is True
    [stored] = await messages_over_rest(alice)
    assert stored["reactions"] == [{"emoji": "👍", "count": 2, "usernames": ["alice", "bob"]}]
    await b.send_json_to({"type": "react", "id": message["id"], "emoji": "👍", "on": False})
    off = await next_of(a, "reaction")
    assert off["on"] is False
    assert off["seq"] == second["seq"] + 1
    last_seq = await database_sync_to_async(lambda: Room.objects.get(slug="lobby").last_seq)()
    assert last_seq == off["seq"]  # the no-op took no seq
    await b.send_json_to({"type": "react", "id": message["id"], "emoji": "bad emoji", "on": True})
    assert (await next_of(b, "error"))["code"] == "bad_frame"


async def test_a_new_joiner_sees_the_current_state_from_the_feeds_memory(people):
    alice, bob, _ = people
    a = await join(user=alice)
    kept, gone = await post(a, "keep me"), await post(a, "drop me")
    await a.send_json_to({"type": "edit", "id": kept["id"], "message": "kept"})
    await a.send_json_to({"type": "react", "id": kept["id"], "emoji": "+1", "on": True})
    await a.send_json_to({"type": "delete", "id": gone["id"]})
    await next_of(a, "delete")
    late = await join(user=bob)
    assert [(f["message"], f["reactions"]) for f in late.backlog] == [
        ("kept", [{"emoji": "+1", "count": 1, "usernames": ["alice"]}])
    ]
    resumed = await join("/ws/chat/lobby/?after=0", user=bob)
    assert [f["seq"] for f in resumed.backlog] == [1, 2, 3, 4, 5]
    assert resumed.backlog[1]["deleted"] is True
    assert resumed.backlog[0]["message"] == "kept"


async def test_an_error_answering_a_message_repeats_its_client_id(people):
    alice, _, _ = people
    a = await join(user=alice)
    await a.send_json_to({"message": "", "client_id": "c-1"})
    error = await next_of(a, "error")
    assert error["code"] == "bad_frame"
    assert error["client_id"] == "c-1"


def test_rest_edits_deletes_and_reacts(db):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    room = RoomFactory(slug="lobby")
    message = Message.objects.create(room=room, seq=1, author=alice, username="alice", text="hi")
    Room.objects.filter(pk=room.pk).update(last_seq=1)
    a, b = rest(alice), rest(bob)
    url = f"/api/messages/{message.pk}"
    edited = a.patch(url, {"message": "hi all"}, content_type="application/json")
    assert edited.status_code == 200
    assert edited.json()["message"] == "hi all"
    assert b.patch(url, {"message": "x"}, content_type="application/json").status_code == 403
    assert b.put(f"{url}/reactions/🎉").status_code == 204
    assert b.put(f"{url}/reactions/🎉").status_code == 204  # no-op
    [listed] = b.get("/api/rooms/lobby/messages/").json()["messages"]
    assert listed["reactions"] == [{"emoji": "🎉", "count": 1, "usernames": ["bob"]}]
    assert b.delete(f"{url}/reactions/🎉").status_code == 204
    assert b.delete(url).status_code == 403
    assert a.delete(url).status_code == 204
    assert a.delete(url).status_code == 404  # deleted: gone for edits and deletions
    assert list(RoomEvent.objects.values_list("seq", "kind")) == [
        (2, "edit"), (3, "reaction"), (4, "reaction"), (5, "delete"),
    ]  # fmt: skip


def test_messages_of_private_rooms_are_not_found_for_strangers(db):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    room = RoomFactory(slug="secret", private=True)
    message = Message.objects.create(room=room, seq=1, author=alice, username="alice", text="x")
    stranger = rest(bob)
    for answer in (
        stranger.get(f"/api/messages/{message.pk}/history"),
        stranger.delete(f"/api/messages/{message.pk}"),
        stranger.put(f"/api/messages/{message.pk}/reactions/x"),
        stranger.get("/api/messages/987654/history"),
    ):
        assert answer.status_code == 404
        assert answer.json()["code"] == "not_found"


def test_the_admin_deletes_messages_as_tombstones(db):
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    room = RoomFactory(slug="lobby")
    message = Message.objects.create(room=room, seq=1, author=staff, username="root", text="oops")
    Room.objects.filter(pk=room.pk).update(last_seq=1)
    admin = rest(staff)
    answer = admin.post(
        "/admin/chat/message/",
        {"action": "delete_keeping_tombstones", "_selected_action": [message.pk]},
    )
    assert answer.status_code == 302
    message.refresh_from_db()
    assert message.deleted_at is not None
    assert message.text == ""
    assert list(RoomEvent.objects.values_list("seq", "kind")) == [(2, "delete")]
    assert admin.post(f"/admin/chat/message/{message.pk}/delete/").status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()


def test_staff_moderate_private_rooms_they_are_not_members_of_in_the_admin(db):
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    alice = UserFactory(username="alice")
    room = RoomFactory(slug="secret", private=True)
    message = Message.objects.create(room=room, seq=1, author=alice, username="alice", text="abuse")
    Room.objects.filter(pk=room.pk).update(last_seq=1)
    answer = rest(staff).post(
        "/admin/chat/message/",
        {"action": "delete_keeping_tombstones", "_selected_action": [message.pk]},
    )
    assert answer.status_code == 302
    message.refresh_from_db()
    assert (message.text, message.deleted_at is not None) == ("", True)
    assert list(RoomEvent.objects.values_list("seq", "kind", "username")) == [(2, "delete", "root")]


def test_moderation_is_for_staff_only(db):
    from kaiwa.chat import services
    from kaiwa.chat.errors import MessageForbidden

    alice = UserFactory(username="alice")
    room = RoomFactory(slug="secret", private=True)
    message = Message.objects.create(room=room, seq=1, author=alice, username="alice", text="x")
    with pytest.raises(MessageForbidden):
        services.message_delete(room=room, user=alice, message_id=message.pk, moderation=True)


async def test_mentions_are_marked_whatever_their_case(people):
    alice, bob, _ = people
    await join(user=bob)  # bob is a member of the lobby now
    a = await join(user=alice)
    message = await post(a, "hi @BOB and @nobody")
    assert '<span class="mention" data-username="bob">@BOB</span>' in message["html"]
    assert "@nobody" in message["html"]
    assert 'data-username="nobody"' not in message["html"]


def test_room_events_of_many_sockets_share_one_transaction_and_a_refusal_stays_alone(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from kaiwa.chat import services
    from kaiwa.chat.errors import MessageForbidden

    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    room = RoomFactory(slug="lobby")
    message = Message.objects.create(room=room, seq=1, author=alice, username="alice", text="hi")
    Room.objects.filter(pk=room.pk).update(last_seq=1)
    common = {"room": room, "message_id": message.pk}
    requests = [
        services.EventRequest(
            services.reaction_set, {**common, "user": bob, "emoji": "+1", "on": True}
        ),
        services.EventRequest(services.message_edit, {**common, "user": bob, "text": "not yours"}),
        services.EventRequest(services.message_edit, {**common, "user": alice, "text": "hi all"}),
    ]
    with CaptureQueriesContext(connection) as queries:
        results = services.room_event_batch(requests=requests)
    assert isinstance(results[1], MessageForbidden)
    assert [r.seq for r in (results[0], results[2])] == [2, 3]  # gapless: the refusal took no seq
    # One transaction (a savepoint inside the test's own), none per request:
    # a refused request wrote nothing before its refusal.
    assert sum("SAVEPOINT" in q["sql"] and "RELEASE" not in q["sql"] for q in queries) <= 1
    # Access and locks once; per event only its own reads and writes; the
    # events and the room's counter in one statement each at the end.
    inserts = [q["sql"] for q in queries if "INSERT" in q["sql"] and "roomevent" in q["sql"]]
    assert len(inserts) == 1
    assert Room.objects.get(pk=room.pk).last_seq == 3
    assert list(RoomEvent.objects.order_by("seq").values_list("seq", "kind")) == [
        (2, "reaction"),
        (3, "edit"),
    ]
    message.refresh_from_db()
    assert message.text == "hi all"

"""Access revoked on open sockets (kaiwa.chat.receivers): each path closes the
sockets concerned with 4401 or 4403, and nothing they post afterwards is stored."""

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import Client as HttpClient
from django.utils import timezone

from kaiwa.accounts.models import ApiToken
from kaiwa.chat import selectors, services
from kaiwa.chat.errors import NotAuthenticated, RoomForbidden
from kaiwa.chat.models import Membership, Message, Room
from tests.communicator import join
from tests.factories import MembershipFactory, RoomFactory, UserFactory, token_for

pytestmark = [pytest.mark.django_db(transaction=True)]

CLOSE_WAIT_SECONDS = 3  # the revocation reaches the socket well within it


async def closed_with(socket):
    """The code the socket is closed with within CLOSE_WAIT_SECONDS (no frame before it)."""
    return await socket.close_code(timeout=CLOSE_WAIT_SECONDS)


@pytest.fixture
async def team():
    def make():
        alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
        secret = RoomFactory(slug="secret", private=True)
        for user in (alice, bob):
            MembershipFactory(room=secret, user=user)
        RoomFactory(slug="lobby")
        tokens = {u.username: token_for(u) for u in (alice, bob)}
        return alice, bob, tokens

    return await database_sync_to_async(make)()


def session_of(user):
    client = HttpClient()
    client.force_login(user)
    return client, client.cookies["sessionid"].value


async def test_removing_a_membership_closes_his_sockets_in_that_room_with_4403(team):
    _, bob, tokens = team
    bob_secret = await join("/ws/chat/secret/", token=tokens["bob"])
    bob_lobby = await join("/ws/chat/lobby/", token=tokens["bob"])
    alice_secret = await join("/ws/chat/secret/", token=tokens["alice"])
    await database_sync_to_async(Membership.objects.filter(user=bob, room__slug="secret").delete)()
    assert await closed_with(bob_secret) == 4403
    assert await bob_lobby.receive_nothing(timeout=0.5)  # his other room is untouched
    assert await alice_secret.receive_nothing(timeout=0.1)
    for communicator in (bob_lobby, alice_secret):
        await communicator.disconnect()


async def test_making_a_room_private_closes_non_members_with_4403(team):
    _, bob, tokens = team
    bob_lobby = await join("/ws/chat/lobby/", token=tokens["bob"])
    alice_lobby = await join("/ws/chat/lobby/", token=tokens["alice"])

    def make_private():  # alice is a member (she joined), bob is not
        room = Room.objects.get(slug="lobby")
        Membership.objects.filter(room=room, user=bob).delete()  # public: he stays, for now
        room.private = True
        room.save()

    await database_sync_to_async(make_private)()
    assert await closed_with(bob_lobby) == 4403
    assert await alice_lobby.receive_nothing(timeout=0.5)
    await alice_lobby.disconnect()


async def test_deactivating_a_user_closes_all_his_sockets_with_4401(team):
    _, bob, tokens = team
    sockets = [
        await join("/ws/chat/secret/", token=tokens["bob"]),
        await join("/ws/chat/lobby/", token=tokens["bob"]),
    ]
    bob.is_active = False
    await database_sync_to_async(bob.save)()
    assert [await closed_with(s) for s in sockets] == [4401, 4401]


async def test_deleting_a_token_closes_its_sockets_with_4401(team):
    _, _, tokens = team
    socket = await join("/ws/chat/lobby/", token=tokens["bob"])
    await database_sync_to_async(ApiToken.objects.filter(user__username="bob").delete)()
    assert await closed_with(socket) == 4401


async def test_an_expiring_token_closes_its_sockets_at_expiry_with_4401(team, settings):
    # Issue 22 #6: the socket stayed open until the periodic re-check.
    settings.KAIWA_REVALIDATE_SECONDS = 300
    _, _, tokens = team
    soon = timezone.now() + timedelta(seconds=1.5)
    await database_sync_to_async(ApiToken.objects.filter(user__username="bob").update)(expiry=soon)
    socket = await join("/ws/chat/lobby/", token=tokens["bob"])
    lasting = await join("/ws/chat/lobby/", token=tokens["alice"])  # never expires
    assert await socket.receive_nothing(timeout=1.0)  # open until its token expires
    assert await closed_with(socket) == 4401
    assert timezone.now() < soon + timedelta(seconds=CLOSE_WAIT_SECONDS)
    assert await lasting.receive_nothing(timeout=0.5)
    await lasting.disconnect()


async def test_a_password_change_closes_session_and_token_sockets(team):
    _, bob, tokens = team
    _, key = await database_sync_to_async(session_of)(bob)
    by_session = await join("/ws/chat/lobby/", session_key=key)
    by_token = await join("/ws/chat/lobby/", token=tokens["bob"])

    def change_password():
        bob.set_password("a-brand-new-password-123")
        bob.save()

    await database_sync_to_async(change_password)()
    assert await closed_with(by_session) == 4401
    assert await closed_with(by_token) == 4401  # a password change revokes every token


async def test_logging_out_closes_that_sessions_sockets_with_4401(team):
    alice, _, _ = team
    (client, key), (_, other_key) = [
        await database_sync_to_async(session_of)(alice) for _ in range(2)
    ]
    logged_out = await join("/ws/chat/lobby/", session_key=key)
    other_session = await join("/ws/chat/lobby/", session_key=other_key)
    await database_sync_to_async(client.post)("/accounts/logout/")
    assert await closed_with(logged_out) == 4401
    assert await other_session.receive_nothing(timeout=0.5)
    await other_session.disconnect()


async def test_sockets_recheck_their_access_periodically(team, settings):
    settings.KAIWA_REVALIDATE_SECONDS = 0.3
    _, bob, tokens = team
    socket = await join("/ws/chat/secret/", token=tokens["bob"])

    def remove_without_signals():  # as a raw SQL change would
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM chat_membership WHERE user_id = %s", [bob.pk])

    await database_sync_to_async(remove_without_signals)()
    assert await closed_with(socket) == 4403


async def test_a_post_after_the_revocation_is_refused_before_the_socket_closes(team):
    _, bob, tokens = team
    socket = await join("/ws/chat/secret/", token=tokens["bob"])
    await database_sync_to_async(Membership.objects.filter(user=bob, room__slug="secret").update)(
        room=await database_sync_to_async(Room.objects.get)(slug="lobby")
    )  # no signal sent
    await socket.send_json_to({"message": "still here?"})
    error = await socket.recv()
    assert (error["type"], error["code"]) == ("error", "forbidden")
    assert await closed_with(socket) == 4403
    assert not await database_sync_to_async(Message.objects.exists)()


async def test_an_edit_after_the_token_revocation_is_refused_before_the_socket_closes(team):
    _, bob, tokens = team
    socket = await join("/ws/chat/lobby/", token=tokens["bob"])
    await socket.send_json_to({"message": "mine"})
    message = await socket.recv()

    def revoke_without_signals():  # as a raw SQL change would: no close yet
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM accounts_apitoken WHERE user_id = %s", [bob.pk])

    await database_sync_to_async(revoke_without_signals)()
    await socket.send_json_to({"type": "edit", "id": message["id"], "message": "edited?"})
    error = await socket.recv()
    assert (error["type"], error["code"]) == ("error", "unauthenticated")
    stored = await database_sync_to_async(Message.objects.get)(pk=message["id"])
    assert stored.text == "mine"


def test_the_write_batch_refuses_inactive_authors_and_strangers_to_private_rooms(db):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob", is_active=False)
    secret, lobby = RoomFactory(slug="secret", private=True), RoomFactory(slug="lobby")
    MembershipFactory(room=secret, user=bob)
    posts = [
        services.Post(room=lobby, user=alice, username="alice", text="fine"),
        services.Post(room=secret, user=alice, username="alice", text="not a member"),
        services.Post(room=lobby, user=bob, username="bob", text="inactive"),
        services.Post(room=secret, user=None, username="guest-1", text="a guest"),
    ]
    results = services.message_create_batch(posts=posts)
    assert results[0][0].seq == 1
    assert [type(r) for r in results[1:]] == [RoomForbidden, NotAuthenticated, RoomForbidden]
    assert list(Message.objects.values_list("text", flat=True)) == ["fine"]
    assert Room.objects.get(slug="secret").last_seq == 0  # no seq spent on a refused post


async def test_revalidation_leaves_authorised_sockets_open(team, monkeypatch):
    _, _, tokens = team
    socket = await join("/ws/chat/secret/", token=tokens["bob"])
    rechecked = threading.Event()  # set on the thread that reads the database
    real = selectors.room_admit_batch

    def recheck(*, admissions):
        rechecked.set()
        return real(admissions=admissions)

    monkeypatch.setattr(selectors, "room_admit_batch", recheck)
    room = await database_sync_to_async(Room.objects.get)(slug="secret")
    await database_sync_to_async(room.save)()  # a private room saved: everyone re-checks
    assert await asyncio.to_thread(rechecked.wait, CLOSE_WAIT_SECONDS), "no re-check ran"
    assert await socket.receive_nothing(timeout=0.5)
    await socket.send_json_to({"type": "ping"})
    assert await socket.recv() == {"type": "pong"}
    await socket.disconnect()

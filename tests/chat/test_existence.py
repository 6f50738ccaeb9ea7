"""Existence probing (docs/security.md, "Existence is not told"): a user who
may not see a room learns nothing from the answers about whether it exists."""

import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from rest_framework.test import APIClient

from kaiwa.chat import services
from kaiwa.chat.errors import RoomForbidden
from kaiwa.chat.models import Membership, Message, Room
from tests.communicator import connect
from tests.factories import MembershipFactory, MessageFactory, RoomFactory, UserFactory, token_for

CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def page_for(user):
    client = Client()
    client.force_login(user)
    return client


def api_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


def page_shape(answer, name):
    """The page with its room name and per-request CSRF token blanked out."""
    body = CSRF_TOKEN.sub("csrf", answer.content.decode())
    return answer.status_code, body.replace(name, "NAME")


@pytest.fixture
def secret(db, bob):
    room = RoomFactory(slug="secret", private=True, title="Secret plans")
    MembershipFactory(room=room, user=bob)
    MessageFactory(room=room, author=bob, text="top secret")
    return room


@pytest.fixture
def bob_carol_dm(db, bob):
    carol = UserFactory(username="carol")
    room, _ = services.dm_open(user=bob, other_username="carol")
    MessageFactory(room=room, author=carol, text="hi bob")
    return room


# --- the room page ---------------------------------------------------------------------


def test_room_page_answers_alike_for_a_foreign_private_room_and_an_unknown_name(alice, secret):
    client = page_for(alice)
    private = client.get("/chat/secret/")
    unknown = client.get("/chat/nosuch/")
    assert private.status_code == 200
    assert page_shape(private, "secret") == page_shape(unknown, "nosuch")
    assert b"Secret plans" not in private.content


def test_room_page_answers_404_alike_for_every_dm_name_you_are_not_in(alice, bob_carol_dm):
    client = page_for(alice)
    existing = client.get(f"/chat/{bob_carol_dm.slug}/")
    unknown = client.get("/chat/dm-998-999/")
    assert existing.status_code == 404
    assert page_shape(existing, bob_carol_dm.slug) == page_shape(unknown, "dm-998-999")
    assert b"bob, carol" not in existing.content


def test_room_page_still_serves_public_new_and_own_private_rooms(alice, bob, bob_carol_dm):
    RoomFactory(slug="lobby", title="The lobby")
    client = page_for(bob)
    assert b"The lobby" in client.get("/chat/lobby/").content
    assert client.get("/chat/brand-new/").status_code == 200
    own = client.get(f"/chat/{bob_carol_dm.slug}/")
    assert own.status_code == 200
    assert b'<h1 id="room-title">carol</h1>' in own.content  # titled with the other member


# --- REST ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/rooms/{}/messages/", None),
        ("post", "/api/rooms/{}/messages/", {"message": "x"}),
        ("post", "/api/rooms/{}/read", {"seq": 1}),
    ],
)
def test_rest_answers_not_found_alike_for_unknown_and_foreign_private_rooms(
    alice, secret, bob_carol_dm, method, path, body
):
    client = api_for(alice)
    call = getattr(client, method)
    answers = [
        call(path.format(slug), body, format="json")
        for slug in ("secret", "nosuch", bob_carol_dm.slug, "dm-998-999")
    ]
    assert {(a.status_code, a.content) for a in answers} == {
        (404, b'{"code":"not_found","detail":"No such room."}')
    }
    # Nothing was posted nor marked read in the rooms that exist.
    assert sorted(Message.objects.values_list("text", flat=True)) == ["hi bob", "top secret"]
    assert not Membership.objects.filter(user=alice).exists()


def test_dm_open_answers_alike_for_unknown_and_inactive_users(alice):
    UserFactory(username="gone", is_active=False)
    client = api_for(alice)
    unknown = client.post("/api/dms/", {"username": "nobody"}, format="json")
    inactive = client.post("/api/dms/", {"username": "gone"}, format="json")
    assert unknown.status_code == inactive.status_code == 404
    assert unknown.content == inactive.content
    assert not Room.objects.exists()


# --- an empty direct message -----------------------------------------------------------


def test_an_empty_dm_stays_out_of_its_recipients_lists(alice, bob):
    opened = api_for(alice).post("/api/dms/", {"username": "bob"}, format="json")
    slug = opened.json()["slug"]

    def listed(user):
        rooms = [r["slug"] for r in api_for(user).get("/api/rooms/").json()["rooms"]]
        page = page_for(user).get("/chat/").content.decode()
        assert (slug in rooms) == (f"/chat/{slug}/" in page)
        return slug in rooms

    assert listed(alice)
    assert not listed(bob)
    # bob can still enter it (he is a member): only the listing waits.
    assert page_for(bob).get(f"/chat/{slug}/").status_code == 200
    api_for(alice).post(f"/api/rooms/{slug}/messages/", {"message": "hi"}, format="json")
    assert listed(alice)
    assert listed(bob)


# --- WebSocket -------------------------------------------------------------------------


async def close_code(user, slug):
    """The code a socket of ``user`` to ``slug`` is closed with, before any frame."""
    return await (await connect(f"/ws/chat/{slug}/", user=user)).close_code()


@pytest.mark.django_db(transaction=True)
async def test_socket_answers_4403_alike_for_existing_and_unknown_dm_names():
    def make():
        alice, bob, _ = (UserFactory(username=n) for n in ("alice", "bob", "carol"))
        room, _ = services.dm_open(user=bob, other_username="carol")
        return alice, room.slug

    alice, slug = await database_sync_to_async(make)()
    assert await close_code(alice, slug) == 4403
    assert await close_code(alice, "dm-998-999") == 4403
    assert await close_code(alice, "dm-anything") == 4403
    slugs = await database_sync_to_async(
        lambda: sorted(Room.objects.values_list("slug", flat=True))
    )()
    assert slugs == [slug]


def test_no_public_room_is_ever_created_under_the_dm_prefix(alice):
    request = services.RoomRequest(slug="dm-1-2", creator=services.Creator(user_id=alice.pk))
    (result,) = services.room_create_batch(requests=[request])
    assert isinstance(result, RoomForbidden)
    with pytest.raises(RoomForbidden):
        services.room_join(user=alice, slug="dm-3-4")
    assert not Room.objects.exists()

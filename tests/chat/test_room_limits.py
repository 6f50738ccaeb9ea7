"""Room creation budgets and paginated room lists, against room spam that
would make every room list huge (docs/security.md): a creation rate
(KAIWA_ROOM_CREATE_RATE_PER_MINUTE) and a cap of rooms (KAIWA_MAX_ROOMS_PER_USER)
per user, per IP for guests; room lists served in pages (the index page's:
tests/chat/test_views.py)."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework.test import APIClient

from kaiwa.chat import services
from kaiwa.chat.models import Room
from tests.communicator import connect
from tests.factories import RoomFactory, UserFactory, token_for


async def join(user, slug, client=None):
    """Open a socket in ``slug`` and leave; returns "ready" or the close code."""
    socket = await connect(f"/ws/chat/{slug}/", user=user, client=client)
    answer = await socket.answer()
    if answer == "ready":
        await socket.disconnect()
    return answer


def slugs():
    return sorted(Room.objects.values_list("slug", flat=True))


@pytest.fixture
async def people():
    make = database_sync_to_async(UserFactory)
    return await make(username="alice"), await make(username="bob")


# --- the per-user cap ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_user_over_the_room_cap_is_closed_with_4403_and_nothing_is_created(
    people, settings
):
    settings.KAIWA_MAX_ROOMS_PER_USER = 2
    alice, bob = people
    assert [await join(alice, s) for s in ("one", "two", "three")] == ["ready", "ready", 4403]
    assert await join(bob, "bobs") == "ready"
    # Joining an existing room is never limited, whoever created it.
    assert await join(alice, "bobs") == "ready"
    assert await join(alice, "one") == "ready"
    assert await database_sync_to_async(slugs)() == ["bobs", "one", "two"]
    created = database_sync_to_async(
        lambda: dict(Room.objects.values_list("slug", "created_by__username"))
    )
    assert await created() == {"one": "alice", "two": "alice", "bobs": "bob"}


@pytest.mark.django_db(transaction=True)
async def test_the_room_cap_is_counted_from_stored_rooms(people, settings):
    """Rows, not a process's memory: rooms made by other processes count."""
    settings.KAIWA_MAX_ROOMS_PER_USER = 3
    alice, _ = people
    make = database_sync_to_async(RoomFactory)
    for slug in ("x1", "x2", "x3"):
        await make(slug=slug, created_by=alice)
    await database_sync_to_async(services.dm_open)(user=alice, other_username="bob")
    assert await join(alice, "x4") == 4403


# --- the per-user rate ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_room_creation_over_the_rate_is_closed_with_4429(people, settings):
    settings.KAIWA_ROOM_CREATE_RATE_PER_MINUTE = 2
    alice, bob = people
    assert [await join(alice, s) for s in ("r1", "r2", "r3")] == ["ready", "ready", 4429]
    assert await join(alice, "r1") == "ready"  # joins are not creations
    assert await join(bob, "r3") == "ready"  # a budget per user
    assert await database_sync_to_async(slugs)() == ["r1", "r2", "r3"]


@pytest.mark.django_db(transaction=True)
async def test_joiners_of_a_new_room_each_get_their_own_answer(people, settings):
    """One refused joiner does not refuse the room to another in the same batch."""
    settings.KAIWA_ROOM_CREATE_RATE_PER_MINUTE = 1
    alice, bob = people
    assert await join(alice, "first") == "ready"  # alice's bucket is empty now
    ask = [
        services.RoomRequest(slug="shared", creator=services.Creator(user_id=alice.pk)),
        services.RoomRequest(slug="shared", creator=services.Creator(user_id=bob.pk)),
        services.RoomRequest(slug="alone", creator=services.Creator(user_id=alice.pk)),
    ]
    shared_a, shared_b, alone = await database_sync_to_async(services.room_create_batch)(
        requests=ask
    )
    assert shared_a.slug == shared_b.slug == "shared"
    assert getattr(alone, "code", None) == "rate_limited"
    room = await database_sync_to_async(Room.objects.get)(slug="shared")
    assert room.created_by_id == bob.pk


def test_a_creation_batch_costs_one_query_more_than_before(alice, bob, django_assert_num_queries):
    """Before: one INSERT and one SELECT per batch; now also one COUNT."""
    RoomFactory(slug="old")
    ask = [
        services.RoomRequest(slug=s, creator=services.Creator(user_id=u.pk))
        for s in ("a", "b", "old")
        for u in (alice, bob)
    ]
    with django_assert_num_queries(3):
        rooms = services.room_create_batch(requests=ask)
    assert [r.slug for r in rooms] == ["a", "a", "b", "b", "old", "old"]


# --- guests: the budgets of their IP --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_guests_share_the_budgets_of_their_ip(settings):
    settings.KAIWA_ALLOW_GUESTS = True
    settings.KAIWA_ROOM_CREATE_RATE_PER_MINUTE = 1
    guest = AnonymousUser()
    assert await join(guest, "g1", client="10.0.0.1") == "ready"
    assert await join(guest, "g2", client="10.0.0.1") == 4429
    assert await join(guest, "g2", client="10.0.0.2") == "ready"
    ips = database_sync_to_async(lambda: dict(Room.objects.values_list("slug", "created_from_ip")))
    assert await ips() == {"g1": "10.0.0.1", "g2": "10.0.0.2"}

    settings.KAIWA_ROOM_CREATE_RATE_PER_MINUTE = 0
    settings.KAIWA_MAX_ROOMS_PER_USER = 2
    assert await join(guest, "g3", client="10.0.0.1") == "ready"
    assert await join(guest, "g4", client="10.0.0.1") == 4403
    assert await join(guest, "g4", client="10.0.0.3") == "ready"


@pytest.mark.django_db(transaction=True)
async def test_guests_of_one_ip_share_a_message_bucket_and_a_socket_cap(settings):
    settings.KAIWA_ALLOW_GUESTS = True
    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 0.001
    settings.KAIWA_RATE_BURST = 2
    settings.KAIWA_MAX_CONNECTIONS_PER_USER = 2

    async def guest(ip):
        socket = await connect(user=AnonymousUser(), client=ip)
        return socket, await socket.answer()

    sent = iter(range(100))

    async def post(communicator):
        """Post one message; the answer to it: "message" (stored) or "error"."""
        client_id = f"c{next(sent)}"
        await communicator.send_json_to({"message": "hi", "client_id": client_id})
        while True:
            frame = await communicator.recv()
            if frame.get("type") == "error" or frame.get("client_id") == client_id:
                return frame.get("type")

    (a, ready_a), (b, ready_b) = await guest("10.0.0.1"), await guest("10.0.0.1")
    assert (ready_a, ready_b) == ("ready", "ready")
    assert (await guest("10.0.0.1"))[1] == 4429  # a third socket from that IP
    assert [await post(a), await post(b)] == ["message", "message"]
    assert await post(a) == "error"  # the IP's bucket is empty, whichever socket asks
    c, ready_c = await guest("10.0.0.2")
    assert ready_c == "ready"
    assert await post(c) == "message"
    for communicator in (a, b, c):
        await communicator.disconnect()


# --- direct messages ---------------------------------------------------------------------


def api_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


def test_opening_a_dm_is_rate_limited_as_a_room_creation(alice, bob, settings):
    settings.KAIWA_ROOM_CREATE_RATE_PER_MINUTE = 1
    UserFactory(username="carol")
    client = api_for(alice)
    opened = client.post("/api/dms/", {"username": "bob"}, format="json")
    assert opened.status_code == 201
    assert Room.objects.get(slug=opened.json()["slug"]).created_by == alice
    refused = client.post("/api/dms/", {"username": "carol"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    # An unknown name costs the same as a new conversation: no oracle once limited.
    assert client.post("/api/dms/", {"username": "nobody"}, format="json").status_code == 429
    # Reopening an existing conversation is not a creation.
    assert client.post("/api/dms/", {"username": "bob"}, format="json").status_code == 200
    assert api_for(bob).post("/api/dms/", {"username": "alice"}, format="json").status_code == 200


# --- paginated room lists ------------------------------------------------------------------


def test_room_list_api_pages_with_a_cursor(alice):
    Room.objects.bulk_create([Room(slug=f"r{i:03d}", title=f"r{i:03d}") for i in range(5)])
    client = api_for(alice)
    first = client.get("/api/rooms/?limit=2").json()
    assert [r["slug"] for r in first["rooms"]] == ["r000", "r001"]
    assert first["next"]
    seen = [r["slug"] for r in first["rooms"]]
    cursor = first["next"]
    while cursor:
        page = client.get("/api/rooms/", {"limit": 2, "cursor": cursor}).json()
        seen += [r["slug"] for r in page["rooms"]]
        cursor = page["next"]
    assert seen == [f"r{i:03d}" for i in range(5)]
    assert client.get("/api/rooms/?limit=5").json()["next"] is None
    assert client.get("/api/rooms/?cursor=a%20b").status_code == 400


def test_room_list_api_limit_defaults_to_200_and_caps_at_500(alice):
    Room.objects.bulk_create([Room(slug=f"r{i:04d}") for i in range(501)])
    client = api_for(alice)
    default = client.get("/api/rooms/").json()
    assert len(default["rooms"]) == 200
    assert default["next"] == "r0199"
    assert len(client.get("/api/rooms/?limit=1000").json()["rooms"]) == 500

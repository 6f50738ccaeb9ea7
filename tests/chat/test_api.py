"""REST API of PROTOCOL.md section 5, through DRF's test client."""

import pytest
from rest_framework.test import APIClient

from kaiwa.chat import services
from kaiwa.chat.models import Message
from tests.factories import (
    MembershipFactory,
    MessageFactory,
    RoomFactory,
    UserFactory,
    token_for,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_for():
    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
        return client

    return make


def test_it_requires_authentication():
    answer = APIClient().get("/api/rooms/")
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_it_rejects_a_bad_token():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer nope")
    assert client.get("/api/rooms/").status_code == 401


def test_room_list_shows_public_and_own_private_rooms(alice, bob, client_for):
    RoomFactory(slug="public")
    secret = RoomFactory(slug="secret", private=True)
    MembershipFactory(room=secret, user=bob)
    assert client_for(alice).get("/api/rooms/").json() == {
        "rooms": [
            {
                "slug": "public",
                "title": "public",
                "private": False,
                "last_seq": 0,
                "unread": 0,
                "mentions": 0,
            }
        ],
        "next": None,
    }
    slugs = [r["slug"] for r in client_for(bob).get("/api/rooms/").json()["rooms"]]
    assert slugs == ["public", "secret"]


def test_message_list_pages_and_caps_the_limit(alice, client_for):
    room = RoomFactory(slug="big")
    for _ in range(250):
        MessageFactory(room=room, author=alice)
    client = client_for(alice)
    page = client.get("/api/rooms/big/messages/").json()["messages"]
    assert [m["seq"] for m in page] == list(range(201, 251))
    assert set(page[0]) == {
        "type", "room", "seq", "id", "message", "username", "created_at", "html", "edited_at",
        "reactions",
    }  # fmt: skip
    assert len(client.get("/api/rooms/big/messages/?limit=1000").json()["messages"]) == 200
    after = client.get("/api/rooms/big/messages/?after=10&limit=3").json()["messages"]
    assert [m["seq"] for m in after] == [11, 12, 13]
    before = client.get("/api/rooms/big/messages/?before=10&limit=3").json()["messages"]
    assert [m["seq"] for m in before] == [7, 8, 9]


@pytest.mark.parametrize("query", ["after=x", "limit=-1", "before=1.5"])
def test_message_list_rejects_junk_parameters(alice, client_for, query):
    RoomFactory(slug="r")
    assert client_for(alice).get(f"/api/rooms/r/messages/?{query}").status_code == 400


def test_post_message_stores_and_returns_it(alice, client_for):
    RoomFactory(slug="r")
    client = client_for(alice)
    answer = client.post(
        "/api/rooms/r/messages/", {"message": "hi", "client_id": "c-1"}, format="json"
    )
    assert answer.status_code == 201
    body = answer.json()
    assert (body["seq"], body["message"], body["username"], body["client_id"]) == (
        1,
        "hi",
        "alice",
        "c-1",
    )
    retry = client.post(
        "/api/rooms/r/messages/", {"message": "hi", "client_id": "c-1"}, format="json"
    )
    assert retry.status_code == 200
    assert retry.json()["id"] == body["id"]
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "body", [{"message": ""}, {"message": 3}, {}, ["x"], {"message": "x" * 4001}]
)
def test_post_message_rejects_bad_bodies(alice, client_for, body):
    RoomFactory(slug="r")
    answer = client_for(alice).post("/api/rooms/r/messages/", body, format="json")
    assert answer.status_code == 400
    assert not Message.objects.exists()


def test_post_message_rejects_malformed_json(alice, client_for):
    RoomFactory(slug="r")
    answer = client_for(alice).post(
        "/api/rooms/r/messages/", "{nope", content_type="application/json"
    )
    assert answer.status_code == 400


def test_unknown_room_is_not_found(alice, client_for):
    assert client_for(alice).get("/api/rooms/nowhere/messages/").status_code == 404
    assert client_for(alice).get("/api/rooms/bad%20name/messages/").status_code == 404


def test_read_moves_the_position(alice, client_for):
    room = services.room_join(user=alice, slug="r")
    MessageFactory(room=room, author=alice)
    client = client_for(alice)
    assert client.post("/api/rooms/r/read", {"seq": 1}, format="json").status_code == 204
    assert room.memberships.get(user=alice).last_read_seq == 1
    assert client.post("/api/rooms/r/read", {"seq": "1"}, format="json").status_code == 400


def test_dms_open_the_same_room(alice, bob, client_for):
    first = client_for(alice).post("/api/dms/", {"username": "bob"}, format="json")
    second = client_for(bob).post("/api/dms/", {"username": "alice"}, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["slug"] == second.json()["slug"]
    assert first.json()["private"] is True
    # Each sees the other's name, not his own, as the conversation's title.
    assert (first.json()["title"], second.json()["title"]) == ("bob", "alice")
    listed = client_for(alice).get("/api/rooms/").json()["rooms"]
    assert [r["title"] for r in listed if r["slug"] == first.json()["slug"]] == ["bob"]
    carol = UserFactory(username="carol")
    assert client_for(carol).get(f"/api/rooms/{first.json()['slug']}/messages/").status_code == 404
    assert (
        client_for(alice).post("/api/dms/", {"username": "nobody"}, format="json").status_code
        == 404
    )


def test_session_auth_needs_csrf_for_writes(alice):
    RoomFactory(slug="r")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/rooms/").status_code == 200
    assert client.post("/api/rooms/r/messages/", {"message": "x"}, format="json").status_code == 403


def test_read_joins_a_public_room_used_over_rest_only(alice, bob, client_for):
    room = services.room_join(user=alice, slug="r")
    MessageFactory(room=room, author=alice)
    answer = client_for(bob).post("/api/rooms/r/read", {"seq": 1}, format="json")
    assert answer.status_code == 204
    assert room.memberships.get(user=bob).last_read_seq == 1


def test_a_concurrent_duplicate_client_id_returns_the_original(alice, client_for, monkeypatch):
    from django.db import IntegrityError

    RoomFactory(slug="r")
    client = client_for(alice)
    first = client.post(
        "/api/rooms/r/messages/", {"message": "hi", "client_id": "c"}, format="json"
    )
    real = services.message_create_batch
    calls = []

    def racing(*, posts):  # the first try loses the race on the unique constraint
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("duplicate key value violates unique constraint")
        return real(posts=posts)

    monkeypatch.setattr(services, "message_create_batch", racing)
    again = client.post(
        "/api/rooms/r/messages/", {"message": "hi", "client_id": "c"}, format="json"
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Message.objects.count() == 1


# --- bad input never answers 500: {"code", "detail"} with 400 ----------------------------

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/rooms/lobby/messages/", '{"message": "\\ud800"}'),
        ("/api/rooms/lobby/messages/", '{"message": "hi", "client_id": "\\udfff"}'),
        ("/api/rooms/lobby/messages/", '{"message": "hi", "\\ud800": 1}'),
        ("/api/rooms/lobby/messages/", DEEP),
        ("/api/rooms/lobby/messages/", '{"a":' * 5000 + "1" + "}" * 5000),
        ("/api/dms/", '{"username": "\\ud800bob"}'),
        ("/api/rooms/lobby/read", DEEP),
    ],
)
def test_bodies_that_are_not_unicode_json_get_400_with_a_code(alice, client_for, path, body):
    RoomFactory(slug="lobby")
    services.room_join(user=alice, slug="lobby")
    answer = client_for(alice).post(path, body, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["code"] == "bad_json"
    assert answer.json()["detail"]
    assert not Message.objects.exists()


def test_a_nul_byte_in_a_rest_post_is_bad_frame(alice, client_for):
    RoomFactory(slug="lobby")
    services.room_join(user=alice, slug="lobby")
    answer = client_for(alice).post(
        "/api/rooms/lobby/messages/", '{"message": "a\\u0000b"}', content_type="application/json"
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_frame"


def test_drf_errors_carry_a_protocol_code(alice, client_for):
    assert APIClient().get("/api/rooms/").json()["code"] == "unauthenticated"
    answer = client_for(alice).put("/api/rooms/", {}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (405, "bad_request")

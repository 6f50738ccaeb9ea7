"""Unread counts and mentions per room in GET /api/rooms/ (PROTOCOL.md section 5)."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from kaiwa.chat import services
from kaiwa.chat.models import Membership
from tests.factories import RoomFactory, UserFactory

pytestmark = pytest.mark.django_db


def rooms_of(user):
    client = Client()
    client.force_login(user)
    return {
        r["slug"]: (r["unread"], r["mentions"]) for r in client.get("/api/rooms/").json()["rooms"]
    }


def say(room, user, text):
    return services.message_create(room=room, user=user, username=user.username, text=text)[0]


def test_unread_counts_skip_your_own_deleted_and_read_messages(alice, bob):
    room = RoomFactory(slug="general")
    quiet = RoomFactory(slug="quiet")
    for user in (alice, bob):
        Membership.objects.create(room=room, user=user)
        Membership.objects.create(room=quiet, user=user)
    say(room, alice, "one")
    say(room, bob, "mine")  # bob's own: not unread for him
    gone = say(room, alice, "deleted soon @bob")
    say(room, alice, "hey @bob")
    say(room, alice, "and @BOB again")
    services.message_delete(room=room, user=alice, message_id=gone.pk)
    assert rooms_of(bob) == {"general": (3, 2), "quiet": (0, 0)}
    services.membership_read(room=room, user=bob, seq=4)
    assert rooms_of(bob)["general"] == (1, 1)
    assert rooms_of(alice)["general"] == (1, 0)  # bob's "mine"


def test_names_with_like_wildcards_count_only_their_own_mentions(db):
    a_b, axb = UserFactory(username="a_b"), UserFactory(username="axb")
    room = RoomFactory(slug="general")
    for user in (a_b, axb):
        Membership.objects.create(room=room, user=user)
    say(room, axb, "hi @axb")  # his own; and not a_b's mention
    say(room, a_b, "yo @axb")
    assert rooms_of(a_b)["general"] == (1, 0)
    assert rooms_of(axb)["general"] == (1, 1)


def test_the_counts_cost_one_query_for_any_number_of_rooms(alice):
    for i in range(30):
        room = RoomFactory(slug=f"room-{i}")
        Membership.objects.create(room=room, user=alice)
    client = Client()
    client.force_login(alice)
    with CaptureQueriesContext(connection) as few:
        client.get("/api/rooms/?limit=5")
    with CaptureQueriesContext(connection) as many:
        client.get("/api/rooms/?limit=30")
    assert len(many) == len(few)

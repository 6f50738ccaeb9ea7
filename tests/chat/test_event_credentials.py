"""Edits, deletions and reactions get the re-check that posts get: nothing a
socket asks after its session or token was revoked is stored, even before
the revocation has closed the socket (issue 22 #7)."""

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from kaiwa.accounts.models import ApiToken
from kaiwa.chat import services
from kaiwa.chat.errors import NotAuthenticated
from kaiwa.chat.models import Message, Reaction, Room, RoomEvent
from tests.factories import RoomFactory, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def message(alice):
    room = RoomFactory(slug="lobby")
    message = Message.objects.create(room=room, seq=1, author=alice, username="alice", text="hi")
    Room.objects.filter(pk=room.pk).update(last_seq=1)
    return message


def session_of(user):
    client = Client()
    client.force_login(user)
    return client.session.session_key


def requests_of(message, user, **credentials):
    """An edit, a reaction and a deletion of ``message`` by ``user``."""
    common = {"room": message.room, "user": user, "message_id": message.pk}
    return [
        services.EventRequest(services.message_edit, {**common, "text": "new"}, **credentials),
        services.EventRequest(
            services.reaction_set, {**common, "emoji": "+1", "on": True}, **credentials
        ),
        services.EventRequest(services.message_delete, common, **credentials),
    ]


def assert_nothing_stored(message):
    message.refresh_from_db()
    assert (message.text, message.deleted_at) == ("hi", None)
    assert not RoomEvent.objects.exists()
    assert not Reaction.objects.exists()


def test_live_credentials_write_room_events(message, alice):
    results = services.room_event_batch(
        requests=requests_of(message, alice, token=token_for(alice))
    )
    assert [r.kind for r in results] == ["edit", "reaction", "delete"]


def test_it_refuses_the_events_of_a_revoked_token(message, alice):
    token = token_for(alice)
    ApiToken.objects.filter(user=alice).delete()
    results = services.room_event_batch(requests=requests_of(message, alice, token=token))
    assert all(isinstance(r, NotAuthenticated) for r in results)
    assert_nothing_stored(message)


def test_it_refuses_the_events_of_a_logged_out_session(message, alice):
    key = session_of(alice)
    Session.objects.filter(session_key=key).delete()  # what a logout does
    results = services.room_event_batch(requests=requests_of(message, alice, session_key=key))
    assert all(isinstance(r, NotAuthenticated) for r in results)
    assert_nothing_stored(message)


def test_a_revoked_request_stays_alone_in_its_batch(message, alice, bob):
    token = token_for(bob)
    ApiToken.objects.filter(user=bob).delete()
    common = {"room": message.room, "message_id": message.pk, "emoji": "+1", "on": True}
    results = services.room_event_batch(
        requests=[
            services.EventRequest(services.reaction_set, {**common, "user": bob}, token=token),
            services.EventRequest(
                services.reaction_set, {**common, "user": alice}, token=token_for(alice)
            ),
        ]
    )
    assert isinstance(results[0], NotAuthenticated)
    assert list(Reaction.objects.values_list("username", flat=True)) == ["alice"]

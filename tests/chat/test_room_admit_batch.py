"""selectors.room_admit_batch for one handshake: its credentials and room, read only."""

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kaiwa.chat import selectors, services, validators
from kaiwa.chat.errors import NotAuthenticated, RoomForbidden
from kaiwa.chat.models import Membership
from tests.factories import MembershipFactory, RoomFactory, token_for

pytestmark = pytest.mark.django_db


def admit(*, user, session, token, slug):
    """One handshake through the batch: ``(user, room)``, or its ChatError raised."""
    validators.room_slug_check(slug=slug)
    admission = selectors.Admission(slug=slug, user=user, session=session, token=token)
    (result,) = selectors.room_admit_batch(admissions=[admission])
    if isinstance(result, Exception):
        raise result
    return result


def login_session(client, user):
    client.force_login(user)
    return SessionStore(session_key=client.cookies["sessionid"].value)


def test_a_token_join_costs_two_queries_once_a_member(alice):
    token = token_for(alice)
    services.room_join(user=alice, slug="lobby")
    with CaptureQueriesContext(connection) as queries:
        user, room = admit(user=None, session=None, token=token, slug="lobby")
    assert (user, room.slug, room.read_seq) == (alice, "lobby", 0)
    assert len(queries) == 2, [q["sql"] for q in queries]  # token+user, room+membership


def test_a_cookie_join_costs_three_queries_once_a_member(alice, client):
    session = login_session(client, alice)
    services.room_join(user=alice, slug="lobby")
    with CaptureQueriesContext(connection) as queries:
        user, _ = admit(user=None, session=session, token=None, slug="lobby")
    assert user == alice
    assert len(queries) == 3, [q["sql"] for q in queries]  # session, user, room+membership


def test_the_session_wins_over_the_token(alice, bob, client):
    session = login_session(client, alice)
    token = token_for(bob)
    user, _ = admit(user=None, session=session, token=token, slug="x")
    assert user == alice


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
def test_no_valid_credential_is_refused_with_4401(db, token):
    with pytest.raises(NotAuthenticated) as refused:
        admit(user=None, session=None, token=token, slug="lobby")
    assert refused.value.close_code == 4401
    assert not Membership.objects.exists()


def test_a_session_whose_password_changed_is_refused(alice, client):
    session = login_session(client, alice)
    alice.set_password("a-new-password-123")
    alice.save()
    with pytest.raises(NotAuthenticated):
        admit(user=None, session=session, token=None, slug="lobby")


def test_an_inactive_users_token_is_refused(alice):
    token = token_for(alice)
    alice.is_active = False
    alice.save()
    with pytest.raises(NotAuthenticated):
        admit(user=None, session=None, token=token, slug="lobby")


def test_a_new_public_room_or_membership_is_left_to_the_writer(alice):
    with CaptureQueriesContext(connection) as queries:
        assert admit(user=alice, session=None, token=None, slug="new") == (
            alice,
            None,
        )
    RoomFactory(slug="lobby")
    _, room = admit(user=alice, session=None, token=None, slug="lobby")
    assert room.slug == "lobby"
    assert room.read_seq is None
    assert not any(q["sql"].startswith(("INSERT", "UPDATE")) for q in queries)
    assert not Membership.objects.exists()


def test_guests_are_admitted_when_enabled(db, settings):
    settings.KAIWA_ALLOW_GUESTS = True
    RoomFactory(slug="lobby")
    user, room = admit(user=None, session=None, token=None, slug="lobby")
    assert user is None
    assert room.slug == "lobby"


def test_the_join_carries_the_stored_read_position(alice):
    room = RoomFactory(slug="lobby", last_seq=9)
    MembershipFactory(room=room, user=alice, last_read_seq=7)
    _, joined = admit(user=alice, session=None, token=None, slug="lobby")
    assert joined.read_seq == 7


def test_private_rooms_still_refuse_strangers(alice, bob):
    room = RoomFactory(slug="secret", private=True)
    MembershipFactory(room=room, user=bob)
    with pytest.raises(RoomForbidden):
        admit(user=alice, session=None, token=None, slug="secret")
    assert admit(user=bob, session=None, token=None, slug="secret")[1] == room

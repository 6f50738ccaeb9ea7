"""The write transaction re-checks the credentials of the socket that posts:
nothing posted after a logout, a password change or a token's revocation is
stored, even before the revocation has closed the socket."""

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from kaiwa.accounts.models import ApiToken
from kaiwa.chat import services
from kaiwa.chat.errors import NotAuthenticated
from kaiwa.chat.models import Message
from tests.factories import RoomFactory, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def room(alice):
    return RoomFactory(slug="lobby")


def session_of(user):
    client = Client()
    client.force_login(user)
    return client.session.session_key


def post(room, user, **credentials):
    return services.Post(room=room, user=user, username=user.username, text="hi", **credentials)


def stored(results):
    return [not isinstance(r, NotAuthenticated) for r in results]


def test_live_credentials_post(room, alice):
    results = services.message_create_batch(
        posts=[
            post(room, alice, session_key=session_of(alice)),
            post(room, alice, token=token_for(alice)),
        ]
    )
    assert stored(results) == [True, True]


def test_a_revoked_token_posts_nothing(room, alice, bob):
    token = token_for(alice)
    ApiToken.objects.filter(user=alice).delete()
    results = services.message_create_batch(
        posts=[post(room, alice, token=token), post(room, bob, token=token_for(bob))]
    )
    assert stored(results) == [False, True]  # only the revoked one, not its batch
    assert list(Message.objects.values_list("username", flat=True)) == ["bob"]


def test_a_logged_out_session_posts_nothing(room, alice):
    key = session_of(alice)
    Session.objects.filter(session_key=key).delete()  # what a logout does
    [result] = services.message_create_batch(posts=[post(room, alice, session_key=key)])
    assert isinstance(result, NotAuthenticated)


def test_a_password_change_ends_the_sessions_posts(room, alice):
    key = session_of(alice)
    alice.set_password("a-brand-new-password-123")
    alice.save()
    [result] = services.message_create_batch(posts=[post(room, alice, session_key=key)])
    assert isinstance(result, NotAuthenticated)
    assert not Message.objects.exists()


def test_a_post_passes_while_one_of_its_credentials_admits_it(room, alice):
    token = token_for(alice)
    gone = session_of(alice)
    Session.objects.filter(session_key=gone).delete()
    [result] = services.message_create_batch(
        posts=[post(room, alice, session_key=gone, token=token)]
    )
    assert not isinstance(result, NotAuthenticated)

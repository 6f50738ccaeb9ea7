"""Fixtures of the notifications tests: a room where alice, bob and carol are members."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import MembershipFactory, RoomFactory, UserFactory


@pytest.fixture(autouse=True)
def _no_alarm(monkeypatch):
    """No timer thread outlives a test: wake-ups are checked, not slept on."""
    from kaiwa.notifications import tasks

    monkeypatch.setattr(tasks.alarm, "arm", lambda at: None)


@pytest.fixture
def carol(db):
    return UserFactory(username="carol")


@pytest.fixture
def room(alice, bob, carol):
    room = RoomFactory(slug="general")
    for user in (alice, bob, carol):
        MembershipFactory(room=room, user=user)
    return room


@pytest.fixture
def later(settings):
    """A time after the batching window of anything written now."""
    return timezone.now() + timedelta(seconds=settings.KAIWA_EMAIL_BATCH_SECONDS + 1)

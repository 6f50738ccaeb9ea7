"""Read positions: merged in memory, stored in batches, never moved back."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError

from kaiwa.chat import services
from kaiwa.chat.models import Membership
from kaiwa.chat.realtime.read_positions import ReadPositions
from tests.factories import MembershipFactory, RoomFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def positions_of(room):
    return dict(Membership.objects.filter(room=room).values_list("user__username", "last_read_seq"))


@pytest.fixture
async def lobby():
    def make():
        room = RoomFactory(slug="lobby", last_seq=10)
        users = [UserFactory(username=name) for name in ("alice", "bob", "carol")]
        for user in users:
            MembershipFactory(room=room, user=user)
        return room, users

    return await database_sync_to_async(make)()


async def test_positions_are_merged_and_stored_in_one_call(lobby, monkeypatch):
    room, (alice, bob, _) = lobby
    calls = []
    real = services.membership_read_batch

    def counting(*, positions):
        calls.append(dict(positions))
        return real(positions=positions)

    monkeypatch.setattr(services, "membership_read_batch", counting)
    positions = ReadPositions(asyncio.get_running_loop())
    for seq in (1, 3, 2):
        positions.note(room.pk, alice.pk, seq)
    positions.note(room.pk, bob.pk, 5)
    await positions.flush()
    assert calls == [{(room.pk, alice.pk): 3, (room.pk, bob.pk): 5}]
    stored = await database_sync_to_async(positions_of)(room)
    assert stored == {"alice": 3, "bob": 5, "carol": 0}


async def test_pending_positions_are_stored_after_the_flush_interval(lobby, settings):
    settings.KAIWA_READ_FLUSH_SECONDS = 0.05
    room, (alice, _, _) = lobby
    positions = ReadPositions(asyncio.get_running_loop())
    positions.note(room.pk, alice.pk, 4)
    assert (await database_sync_to_async(positions_of)(room))["alice"] == 0
    await asyncio.sleep(0.5)
    assert (await database_sync_to_async(positions_of)(room))["alice"] == 4
    assert positions.pending == {}
    assert positions.task is None


async def test_a_stored_position_never_moves_back(lobby):
    room, (alice, _, _) = lobby
    await database_sync_to_async(Membership.objects.filter(user=alice).update)(last_read_seq=7)
    positions = ReadPositions(asyncio.get_running_loop())
    positions.note(room.pk, alice.pk, 4)
    await positions.flush()
    assert (await database_sync_to_async(positions_of)(room))["alice"] == 7


async def test_positions_survive_a_failed_write(lobby, monkeypatch):
    room, (alice, bob, _) = lobby
    real = services.membership_read_batch
    failures = [OperationalError("database is down")]

    def flaky(*, positions):
        if failures:
            raise failures.pop()
        return real(positions=positions)

    monkeypatch.setattr(services, "membership_read_batch", flaky)
    positions = ReadPositions(asyncio.get_running_loop())
    positions.note(room.pk, alice.pk, 2)
    await positions.flush()  # fails: kept
    positions.note(room.pk, alice.pk, 1)  # lower: does not replace the kept 2
    positions.note(room.pk, bob.pk, 6)
    assert positions.pending == {(room.pk, alice.pk): 2, (room.pk, bob.pk): 6}
    await positions.flush()
    stored = await database_sync_to_async(positions_of)(room)
    assert stored == {"alice": 2, "bob": 6, "carol": 0}
    if positions.task is not None:
        positions.task.cancel()


def test_read_batch_moves_members_up_only_and_ignores_strangers(db):
    room = RoomFactory(slug="lobby", last_seq=10)
    alice, bob, stranger = (UserFactory(username=n) for n in ("alice", "bob", "stranger"))
    MembershipFactory(room=room, user=alice, last_read_seq=5)
    MembershipFactory(room=room, user=bob)
    services.membership_read_batch(
        positions={(room.pk, alice.pk): 3, (room.pk, bob.pk): 8, (room.pk, stranger.pk): 9}
    )
    assert not Membership.objects.filter(user=stranger).exists()
    assert positions_of(room) == {"alice": 5, "bob": 8}

"""Group admission (kaiwa.chat.realtime.admission) and shared room creation (kaiwa.chat.realtime.writer)."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from kaiwa.chat import selectors, services
from kaiwa.chat.errors import NotAuthenticated, RoomForbidden, RoomNotFound
from kaiwa.chat.models import Membership, Room
from kaiwa.chat.realtime import hub as hub_module
from kaiwa.chat.realtime.admission import Admitter
from kaiwa.chat.realtime.hub import get_hub
from kaiwa.chat.realtime.writer import MessageWriter
from tests.factories import MembershipFactory, RoomFactory, UserFactory, token_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def people():
    def make():
        users = [UserFactory(username=f"u{i}") for i in range(6)]
        tokens = [token_for(u) for u in users]
        RoomFactory(slug="lobby")
        MembershipFactory(room=RoomFactory(slug="secret", private=True), user=users[0])
        return users, tokens

    return await database_sync_to_async(make)()


async def test_concurrent_joins_are_admitted_in_few_calls(people, monkeypatch):
    users, tokens = people
    calls = []
    real = selectors.room_admit_batch

    def counting(*, admissions):
        calls.append(len(admissions))
        return real(admissions=admissions)

    monkeypatch.setattr(selectors, "room_admit_batch", counting)
    admitter = Admitter(asyncio.get_running_loop())
    results = await asyncio.gather(
        *(admitter.admit(selectors.Admission(slug="lobby", token=t)) for t in tokens)
    )
    assert [user.username for user, _ in results] == [u.username for u in users]
    assert all(room.slug == "lobby" and room.read_seq is None for _, room in results)
    assert sum(calls) == 6
    assert len(calls) < 6


async def test_each_join_of_a_batch_gets_its_own_answer(people):
    users, tokens = people
    admitter = Admitter(asyncio.get_running_loop())
    asks = [
        selectors.Admission(slug="secret", token=tokens[0]),  # a member
        selectors.Admission(slug="secret", token=tokens[1]),  # a stranger
        selectors.Admission(slug="lobby", token="no-such-token"),
        selectors.Admission(slug="new-room", token=tokens[2]),
        selectors.Admission(slug="dm-1-2", token=tokens[3]),
    ]
    results = await asyncio.gather(*(admitter.admit(a) for a in asks), return_exceptions=True)
    assert results[0][1].slug == "secret"
    assert results[0][1].read_seq == 0
    assert isinstance(results[1], RoomForbidden)
    assert isinstance(results[2], NotAuthenticated)
    assert results[3] == (users[2], None)  # to be created by the writer
    assert isinstance(results[4], RoomForbidden)


async def test_joiners_of_a_new_room_share_one_creation(people, monkeypatch):
    users, _ = people
    calls = []
    real = services.room_create_batch

    def counting(*, requests):
        calls.append(sorted({r.slug for r in requests}))
        return real(requests=requests)

    monkeypatch.setattr(services, "room_create_batch", counting)
    writer = MessageWriter(asyncio.get_running_loop())
    creators = [services.Creator(user_id=u.pk) for u in users]
    asks = zip(["a", "b", "a", "a", "lobby"], creators, strict=False)
    rooms = await asyncio.gather(*(writer.create_room(s, c) for s, c in asks))
    assert [r.slug for r in rooms] == ["a", "b", "a", "a", "lobby"]
    assert calls == [["a", "b", "lobby"]]
    made_by = database_sync_to_async(lambda: dict(Room.objects.values_list("slug", "created_by")))
    assert (await made_by())["a"] == users[0].pk  # the first who asked
    await asyncio.gather(*(writer.add_member(rooms[0].pk, u.pk) for u in users))
    count = database_sync_to_async(Membership.objects.filter(room__slug="a").count)
    assert await count() == len(users)
    assert await database_sync_to_async(Room.objects.filter(slug="a").count)() == 1


async def test_feeds_opening_together_read_their_rooms_in_few_calls(people, monkeypatch):
    """A storm opening many room feeds at once (kaiwa.chat.realtime.hub.Hub):
    their snapshots are read in batches, each feed gets its own room's, and
    an unknown room fails its own feed only."""
    from kaiwa.chat import selectors

    def make():
        for n in range(8):
            RoomFactory(slug=f"room-{n}")

    await database_sync_to_async(make)()
    calls = []
    real = selectors.room_snapshots

    def counting(*, requests):
        calls.append(len(requests))
        return real(requests=requests)

    monkeypatch.setattr(hub_module, "room_snapshots", counting)
    hub = get_hub()
    slugs = [f"room-{n}" for n in range(8)] + ["nowhere"]
    outcomes = await asyncio.gather(
        *(hub.subscribe_room(slug, object()) for slug in slugs), return_exceptions=True
    )
    assert [feed.slug for feed in outcomes[:8]] == slugs[:8]
    assert all(feed.ready.is_set() and feed.hwm == 0 for feed in outcomes[:8])
    assert isinstance(outcomes[8], RoomNotFound)
    assert "nowhere" not in hub.feeds  # a feed that failed to open is forgotten
    assert sum(calls) == 9
    assert len(calls) < 9
    await hub.close()

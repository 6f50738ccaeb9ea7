"""Group commit: MessageWriter stores concurrent posts in few transactions."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import IntegrityError, OperationalError

from kaiwa.chat import services
from kaiwa.chat.models import Message
from kaiwa.chat.realtime.writer import MessageWriter
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def lobby():
    alice = await database_sync_to_async(UserFactory)(username="alice")
    room = await database_sync_to_async(services.room_join)(user=alice, slug="lobby")
    return alice, room


def post(room, user, text, client_id=None):
    return services.Post(
        room=room, user=user, username=user.username, text=text, client_id=client_id
    )


async def test_concurrent_posts_share_transactions_and_keep_order(lobby, monkeypatch):
    alice, room = lobby
    batches = []
    real = services.message_create_batch

    def counting(*, posts):
        batches.append(len(posts))
        return real(posts=posts)

    monkeypatch.setattr(services, "message_create_batch", counting)
    writer = MessageWriter(asyncio.get_running_loop())
    results = await asyncio.gather(*(writer.submit(post(room, alice, f"m{i}")) for i in range(20)))
    assert [(m.seq, m.text, created) for m, created in results] == [
        (i + 1, f"m{i}", True) for i in range(20)
    ]
    assert sum(batches) == 20
    assert len(batches) < 20
    assert await database_sync_to_async(Message.objects.count)() == 20


async def test_a_database_error_fails_every_post_of_the_batch(lobby, monkeypatch):
    alice, room = lobby

    def broken(*, posts):
        raise OperationalError("database is down")

    monkeypatch.setattr(services, "message_create_batch", broken)
    writer = MessageWriter(asyncio.get_running_loop())
    results = await asyncio.gather(
        *(writer.submit(post(room, alice, f"m{i}")) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, OperationalError) for r in results)
    assert writer.task is None  # ready for the next post


async def test_an_integrity_error_retries_posts_one_by_one(lobby, monkeypatch):
    alice, room = lobby
    real = services.message_create_batch

    def racing(*, posts):
        if len(posts) > 1:  # another process stored one of these client_ids meanwhile
            raise IntegrityError("duplicate key")
        if posts[0].client_id == "taken":
            raise IntegrityError("duplicate key")
        return real(posts=posts)

    monkeypatch.setattr(services, "message_create_batch", racing)
    writer = MessageWriter(asyncio.get_running_loop())
    results = await asyncio.gather(
        writer.submit(post(room, alice, "a", "c-a")),
        writer.submit(post(room, alice, "b", "taken")),
        writer.submit(post(room, alice, "c", "c-c")),
        return_exceptions=True,
    )
    assert [r[0].text for r in (results[0], results[2])] == ["a", "c"]
    assert isinstance(results[1], IntegrityError)


async def test_a_batch_the_database_refuses_is_retried_one_by_one(lobby, monkeypatch):
    from django.db import DataError

    alice, room = lobby
    real = services.message_create_batch

    def picky(*, posts):  # as PostgreSQL refuses a whole batch for one bad row
        if any(p.text == "poison" for p in posts):
            raise DataError("invalid byte sequence")
        return real(posts=posts)

    monkeypatch.setattr(services, "message_create_batch", picky)
    writer = MessageWriter(asyncio.get_running_loop())
    texts = ["m0", "m1", "poison", "m3"]
    results = await asyncio.gather(
        *(writer.submit(post(room, alice, t)) for t in texts), return_exceptions=True
    )
    assert isinstance(results[2], DataError)
    stored = [(m.seq, m.text) for m, _ in (results[0], results[1], results[3])]
    assert stored == [(1, "m0"), (2, "m1"), (3, "m3")]  # others stored, seq gapless

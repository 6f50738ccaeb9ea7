"""`typing` frames: relayed to the room's other sockets, never stored,
throttled, and not in rooms above KAIWA_TYPING_MAX_MEMBERS."""

import pytest
from channels.db import database_sync_to_async

from kaiwa.chat.models import Message, Room
from tests.communicator import join
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def pair():
    make = database_sync_to_async(UserFactory)
    alice, bob = await make(username="alice"), await make(username="bob")
    return await join(user=alice), await join(user=bob)


async def frames_until_pong(socket):
    """The frames a socket gets before the answer to a ping sent now."""
    await socket.send_json_to({"type": "ping"})
    got = []
    while (frame := await socket.recv())["type"] != "pong":
        got.append(frame)
    return got


async def test_typing_reaches_the_others_not_the_typist_and_is_never_stored(pair):
    a, b = pair
    await a.send_json_to({"type": "typing"})
    assert await b.recv() == {
        "type": "typing",
        "room": "lobby",
        "username": "alice",
        "state": "start",
    }
    await a.send_json_to({"type": "typing", "state": "stop"})
    assert (await b.recv())["state"] == "stop"
    assert await frames_until_pong(a) == []
    assert not await database_sync_to_async(Message.objects.exists)()
    last_seq = await database_sync_to_async(lambda: Room.objects.get(slug="lobby").last_seq)()
    assert last_seq == 0


async def test_a_start_is_relayed_at_most_every_two_seconds(pair):
    a, b = pair
    for _ in range(5):
        await a.send_json_to({"type": "typing"})
    await frames_until_pong(a)  # all five were handled
    got = await frames_until_pong(b)
    assert [f["state"] for f in got] == ["start"]


async def test_no_typing_in_rooms_above_the_size_limit(settings, pair):
    settings.KAIWA_TYPING_MAX_MEMBERS = 1
    a, b = pair
    await a.send_json_to({"type": "typing"})
    await frames_until_pong(a)
    assert await frames_until_pong(b) == []


async def test_a_bad_state_is_bad_frame(pair):
    a, _ = pair
    await a.send_json_to({"type": "typing", "state": "maybe"})
    assert (await a.recv())["code"] == "bad_frame"

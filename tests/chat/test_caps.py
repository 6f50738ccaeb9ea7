"""Caps on what one message may accumulate (issue 22 #1, #9): distinct
reactions (KAIWA_MAX_REACTIONS_PER_MESSAGE) and edits
(KAIWA_MAX_EDITS_PER_MESSAGE), refused with ``forbidden`` over WebSocket and
REST alike, and a history answer of bounded size."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from kaiwa.chat.models import Message, Reaction, Room
from tests.communicator import join
from tests.factories import RoomFactory, UserFactory


def rest(user):
    client = Client()
    client.force_login(user)
    return client


def message_of(user, text="hi"):
    room = RoomFactory(slug="lobby")
    message = Message.objects.create(
        room=room, seq=1, author=user, username=user.username, text=text
    )
    Room.objects.filter(pk=room.pk).update(last_seq=1)
    return message


async def next_of(socket, kind):
    while (got := await socket.recv())["type"] != kind:
        pass
    return got


@pytest.mark.django_db
def test_a_message_holds_at_most_the_cap_of_distinct_reactions(alice, bob, settings):
    settings.KAIWA_MAX_REACTIONS_PER_MESSAGE = 3
    url = f"/api/messages/{message_of(alice).pk}/reactions"
    a, b = rest(alice), rest(bob)
    for emoji in ("a", "b", "c"):
        assert a.put(f"{url}/{emoji}").status_code == 204
    for user in UserFactory.create_batch(3):  # many rows of one emoji count once
        assert rest(user).put(f"{url}/a").status_code == 204
    refused = b.put(f"{url}/d")
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "3 different reactions" in refused.json()["detail"]
    assert b.put(f"{url}/a").status_code == 204  # an emoji it holds: anyone may add it
    assert a.delete(f"{url}/c").status_code == 204
    assert b.put(f"{url}/d").status_code == 204  # a place freed
    assert sorted(set(Reaction.objects.values_list("emoji", flat=True))) == ["a", "b", "d"]


@pytest.mark.django_db(transaction=True)
async def test_the_reaction_cap_holds_over_websocket(settings):
    settings.KAIWA_MAX_REACTIONS_PER_MESSAGE = 2
    alice = await database_sync_to_async(UserFactory)(username="alice")
    message = await database_sync_to_async(message_of)(alice)
    socket = await join(user=alice)
    for emoji in ("a", "b"):
        await socket.send_json_to(
            {"type": "react", "id": str(message.pk), "emoji": emoji, "on": True}
        )
        await next_of(socket, "reaction")
    await socket.send_json_to({"type": "react", "id": str(message.pk), "emoji": "c", "on": True})
    assert (await next_of(socket, "error"))["code"] == "forbidden"
    assert await database_sync_to_async(Reaction.objects.count)() == 2

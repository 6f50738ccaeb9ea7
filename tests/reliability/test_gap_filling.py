"""Gap filling: a live connection never skips a seq, even when the broadcast
of a stored message was lost (its process died between commit and publish, or
Redis dropped it).

A gap followed by a later message is filled when the later seq arrives
(tests/chat/test_consumers.py ``test_a_lost_broadcast_is_filled_from_the_database``,
and the Redis-restart and SIGKILL runs of test_crash_safety). Here the LAST
message's broadcast is lost and nothing follows: the hub's watcher, which
compares each feed with its room's ``last_seq`` every KAIWA_SEQ_CHECK_SECONDS,
finds it.
"""

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from kaiwa.chat import fanout, services
from kaiwa.chat.models import Room
from kaiwa.chat.routing import websocket_urlpatterns
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


async def joined(user, path="/ws/chat/tail/"):
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    while (await communicator.receive_json_from(timeout=5))["type"] != "ready":
        pass
    return communicator


async def test_a_lost_broadcast_of_the_last_message_is_still_delivered(settings, monkeypatch):
    settings.KAIWA_GAP_GRACE_SECONDS = 0.05
    settings.KAIWA_SEQ_CHECK_SECONDS = 0.1
    alice = await database_sync_to_async(UserFactory)(username="alice")
    bob = await database_sync_to_async(UserFactory)(username="bob")
    listener = await joined(bob)
    room = await database_sync_to_async(Room.objects.get)(slug="tail")
    # Stored, never published: as if its process died right after the commit.
    monkeypatch.setattr(fanout, "publish_message", lambda *args, **kwargs: None)
    await database_sync_to_async(services.message_create)(
        room=room, user=alice, username="alice", text="the last word"
    )
    try:
        frame = await listener.receive_json_from(timeout=5)
    except TimeoutError:
        frame = None
    await listener.disconnect()
    assert frame is not None and (frame["seq"], frame["message"]) == (1, "the last word")

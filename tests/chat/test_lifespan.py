"""The ASGI lifespan: at shutdown, pending read positions are written and the hub closed."""

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async

from config.asgi import application
from kaiwa.chat.models import Membership
from kaiwa.chat.realtime.hub import get_hub
from kaiwa.chat.realtime.read_positions import get_read_positions
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)


async def lifespan_message(communicator, kind):
    await communicator.send_input({"type": f"lifespan.{kind}"})
    return (await communicator.receive_output(timeout=5))["type"]


async def test_shutdown_writes_pending_read_positions_and_closes_the_hub(settings, monkeypatch):
    settings.KAIWA_READ_FLUSH_SECONDS = 3600  # only the shutdown may write it
    membership = await database_sync_to_async(MembershipFactory)()
    closed = []
    hub = get_hub()
    monkeypatch.setattr(hub, "close", lambda: closed.append(hub) or _nothing())
    get_read_positions().note(membership.room_id, membership.user_id, 7)

    communicator = ApplicationCommunicator(application, {"type": "lifespan"})
    assert await lifespan_message(communicator, "startup") == "lifespan.startup.complete"
    assert await lifespan_message(communicator, "shutdown") == "lifespan.shutdown.complete"

    stored = await database_sync_to_async(
        lambda: Membership.objects.get(pk=membership.pk).last_read_seq
    )()
    assert stored == 7
    assert closed == [hub]


async def _nothing():
    return None

"""A mention added by an edit notifies as a new mention would, once."""

import pytest

from kaiwa.chat import services
from kaiwa.notifications.models import MissedMessage

pytestmark = pytest.mark.django_db


def notified(message):
    return sorted(
        MissedMessage.objects.filter(message=message).values_list("user__username", flat=True)
    )


def test_a_mention_added_by_an_edit_notifies(room, alice, bob, carol):
    message, _ = services.message_create(room=room, user=alice, username="alice", text="hi")
    assert notified(message) == []
    services.message_edit(room=room, user=alice, message_id=message.pk, text="hi @bob")
    assert notified(message) == ["bob"]


def test_a_mention_kept_by_an_edit_does_not_notify_again(room, alice, bob, carol):
    message, _ = services.message_create(room=room, user=alice, username="alice", text="hi @bob")
    services.message_edit(room=room, user=alice, message_id=message.pk, text="hi @bob @carol")
    assert notified(message) == ["bob", "carol"]  # bob once, carol new

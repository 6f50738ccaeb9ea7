"""Model signals of the chat app.

A message row deleted outside the services (the admin, a shell) must not be
served again from a feed's memory (``fanout`` invariant 4): on commit, every
process drops it from its room feed.
"""

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from . import fanout
from .models import Message


@receiver(pre_delete, sender=Message, dispatch_uid="kaiwa.chat.message_forget")
def message_forget_on_delete(sender: Any, instance: Message, **kwargs: Any) -> None:
    """Queue ``fanout.publish_forget`` for the deleted message's room and seq."""
    slug = instance.room.slug  # read now: on a room's cascade the row goes first
    transaction.on_commit(partial(fanout.publish_forget, slug, instance.seq))

"""The notifications app listens to the chat app's events (kaiwa.chat.signals)."""

import copy
from functools import partial
from typing import Any

from django.db import transaction
from django.dispatch import receiver

from kaiwa.chat.models import Message
from kaiwa.chat.signals import message_edited, message_stored

from . import selectors, services, tasks


@receiver(message_stored, dispatch_uid="kaiwa.notifications.missed_messages")
def missed_messages_on_store(sender: type[Message], message: Message, **kwargs: Any) -> None:
    """Write the missed-message rows of a new mention or DM in its transaction,
    and on commit schedule each recipient's wake-up at the rows' due time."""
    for row in services.missed_messages_queue(message=message):
        # robust: a broker that is down must not cost the message its broadcast;
        # the periodic sweep sends the batch anyway.
        transaction.on_commit(
            partial(tasks.missed_message_wake_up, user_id=row.user_id, at=row.due_at),
            robust=True,
        )


@receiver(message_edited, dispatch_uid="kaiwa.notifications.missed_messages_edit")
def missed_messages_on_edit(
    sender: type[Message], message: Message, old_text: str, **kwargs: Any
) -> None:
    """A mention added by an edit notifies as a new mention would; who the
    former text notified already is not notified again."""
    former = copy.copy(message)
    former.text = old_text
    already = selectors.missed_message_recipients(message=former)
    for row in services.missed_messages_queue(message=message, already=already):
        transaction.on_commit(
            partial(tasks.missed_message_wake_up, user_id=row.user_id, at=row.due_at),
            robust=True,
        )

"""Reads of the notifications app: who a message notifies, which batches are due."""

from datetime import datetime

from django.db.models import Min
from django.db.models.functions import Lower

# The mention grammar is chat's: its formatting marks up the same mentions.
from kaiwa.chat.formatting import MENTION_PATTERN, MENTION_TRAILING
from kaiwa.chat.models import Membership, Message

from .models import MissedMessage

# Bounds the work a single message can cause: mentions beyond this are ignored.
MENTIONS_MAX = 50


def mention_names(*, text: str) -> list[str]:
    """The tokens ``text`` mentions with ``@token``: lower-cased, unique, in order.

    A token is a run of username characters and may carry sentence
    punctuation (``"thanks @bob."`` gives ``"bob."``): see
    ``missed_message_recipients``. At most MENTIONS_MAX tokens.
    """
    tokens = dict.fromkeys(token.lower() for token in MENTION_PATTERN.findall(text))
    return list(tokens)[:MENTIONS_MAX]


def missed_message_recipients(*, message: Message) -> dict[int, str]:
    """Who ``message`` should notify: ``{user id: MissedMessage.Reason}``.

    In a direct-message room, every active member but the author (reason
    ``dm``); elsewhere, the active members of the room that the text mentions
    with ``@username`` (case-insensitive), but the author (reason
    ``mention``). A message with no ``@`` outside a DM costs no query.

    A guest's message (no author: KAIWA_ALLOW_GUESTS) notifies no one, as
    anyone could otherwise make Kaiwa email a member.
    """
    room = message.room
    direct = room.is_direct
    if message.author_id is None:
        return {}
    if not direct and "@" not in message.text:  # most messages: no query, no queryset
        return {}
    members = Membership.objects.filter(room_id=room.pk, user__is_active=True)
    members = members.exclude(user_id=message.author_id)
    if direct:
        user_ids = members.values_list("user_id", flat=True)
        return dict.fromkeys(user_ids, MissedMessage.Reason.DIRECT)
    tokens = mention_names(text=message.text)
    if not tokens:
        return {}
    candidates = {name for token in tokens for name in (token, token.rstrip(MENTION_TRAILING))}
    found = dict(
        members.annotate(name=Lower("user__username"))
        .filter(name__in=candidates)
        .values_list("name", "user_id")
    )
    # "@bob." names a member called "bob." if there is one, else "bob": never both.
    recipients: dict[int, str] = {}
    for token in tokens:
        user_id = found.get(token) or found.get(token.rstrip(MENTION_TRAILING))
        if user_id is not None:
            recipients[user_id] = MissedMessage.Reason.MENTION
    return recipients


def missed_message_users_due(*, now: datetime) -> list[int]:
    """Ids of the users with a pending row whose window closed at or before ``now``."""
    return list(
        MissedMessage.objects.filter(state=MissedMessage.State.PENDING, due_at__lte=now)
        .order_by()
        .values_list("user_id", flat=True)
        .distinct()
    )


def missed_message_next_due() -> datetime | None:
    """When the earliest pending window closes, or None when nothing is pending."""
    return MissedMessage.objects.filter(state=MissedMessage.State.PENDING).aggregate(
        at=Min("due_at")
    )["at"]

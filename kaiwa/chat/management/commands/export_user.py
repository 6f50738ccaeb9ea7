"""``kaiwa manage export_user <username> [--output PATH]``: what Kaiwa holds
about one user, as JSON Lines (a data-subject request, an audit).

Lines, each with a ``type``: ``profile`` (username, email, names, joined,
last login), one ``membership`` per room (room, joined, read position), one
``message`` per message he wrote (the message object of PROTOCOL.md in its
current state: a deleted one as a tombstone, without its text), one
``reaction`` per reaction of his, one ``token`` per API token (name, created,
expiry; never the token). Messages come in batches of CHUNK.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kaiwa.accounts.models import ApiToken
from kaiwa.chat.frames import message_payload, timestamp
from kaiwa.chat.models import Membership, Message, Reaction
from kaiwa.chat.selectors import reactions_of

CHUNK = 1000  # messages per query batch


def _when(value: Any) -> str | None:
    return timestamp(value) if value is not None else None


class Command(BaseCommand):
    help = "Write what Kaiwa holds about one user as JSON Lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--output", default="-", help="a file path, or - for stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        out = self.stdout if options["output"] == "-" else open(options["output"], "w")  # noqa: SIM115

        def line(payload: dict[str, Any]) -> None:
            out.write(orjson.dumps(payload).decode() + "\n")

        try:
            line(
                {
                    "type": "profile",
                    "username": user.username,
                    "email": user.email,
                    "first_name": user.first_name,
                    "last_name": user.last_name,
                    "date_joined": _when(user.date_joined),
                    "last_login": _when(user.last_login),
                }
            )
            for m in Membership.objects.filter(user=user).select_related("room").order_by("pk"):
                line(
                    {
                        "type": "membership",
                        "room": m.room.slug,
                        "joined_at": _when(m.joined_at),
                        "last_read_seq": m.last_read_seq,
                    }
                )
            mine = Message.objects.filter(author=user).select_related("room").order_by("pk")
            last = 0
            while batch := list(mine.filter(pk__gt=last)[:CHUNK]):
                last = batch[-1].pk
                reactions = reactions_of(message_ids=[m.pk for m in batch if m.deleted_at is None])
                for message in batch:
                    payload = message_payload(message, message.room.slug, reactions.get(message.pk))
                    line({**payload, "type": "message"})
            for r in Reaction.objects.filter(user=user).select_related("message__room"):
                line(
                    {
                        "type": "reaction",
                        "room": r.message.room.slug,
                        "id": str(r.message_id),
                        "emoji": r.emoji,
                        "created_at": _when(r.created_at),
                    }
                )
            for t in ApiToken.objects.filter(user=user).order_by("created"):
                line(
                    {
                        "type": "token",
                        "name": t.name,
                        "created": _when(t.created),
                        "expiry": _when(t.expiry),
                    }
                )
        finally:
            if out is not self.stdout:
                out.close()

"""``kaiwa manage retention_apply [--room ROOM]``: apply retention now.

What the beat of ``kaiwa worker`` does every KAIWA_RETENTION_SWEEP_SECONDS
(``kaiwa.chat.tasks.retention_sweep``), for a deployment without a worker
(embedded defaults: run it from cron) or to see it done: one line per room
where it deleted anything.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from kaiwa.chat import retention
from kaiwa.chat.models import Room


class Command(BaseCommand):
    help = "Delete the room events older than each room's retention (KAIWA_RETENTION_DAYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--room", help="only this room (its slug)")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["room"]:
            room = Room.objects.filter(slug=options["room"]).first()
            if room is None:
                raise CommandError(f"No room {options['room']!r}.")
            done = [retention.room_retention_apply(room=room, now=now)]
        else:
            done = retention.retention_apply(now=now)
        for purged in done:
            if not (purged.messages or purged.events):
                continue
            self.stdout.write(
                f"{purged.room}: purged to seq {purged.purged_seq}, "
                f"{purged.messages} messages and {purged.events} other room events deleted"
            )
        if not any(p.messages or p.events for p in done):
            self.stdout.write("Nothing to delete.")

"""``kaiwa manage export_room <room> [--output PATH]``: a room's history as JSON Lines.

One line per stored room event, in ``seq`` order, exactly as a resume from
``after=0`` would replay them (PROTOCOL.md section 4): messages in their
current state (a deleted one as a tombstone, without its text), edits,
deletions and reactions as stored (the edits of a deleted message without
their text). For audits: nothing a client could not have received.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kaiwa.chat.models import Room
from kaiwa.chat.selectors import room_event_frames

CHUNK = 1000  # room events per query batch


class Command(BaseCommand):
    help = "Write a room's room events (seq order, current state) as JSON Lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", help="the room's slug")
        parser.add_argument("--output", default="-", help="a file path, or - for stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        room = Room.objects.filter(slug=options["room"]).first()
        if room is None:
            raise CommandError(f"No room {options['room']!r}.")
        out = self.stdout if options["output"] == "-" else open(options["output"], "w")  # noqa: SIM115
        written = 0
        try:
            for after in range(0, room.last_seq, CHUNK):
                for _, frame in room_event_frames(
                    room_id=room.pk, room_slug=room.slug, after=after, before=after + CHUNK + 1
                ):
                    out.write(frame + "\n")
                    written += 1
        finally:
            if out is not self.stdout:
                out.close()
        self.stderr.write(f"{written} room events of {room.slug} (last seq {room.last_seq}).")

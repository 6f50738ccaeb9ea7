"""Read positions (``Membership.read_seq``): one, or a batch merged by the
socket layer's ``ReadPositions``; a position never moves back."""

from functools import partial

from django.contrib.auth.models import User
from django.db import connection, transaction

from kaiwa.chat.errors import (
    RoomForbidden,
)
from kaiwa.chat.models import (
    Membership,
    Room,
)
from kaiwa.chat.realtime import publish
from kaiwa.chat.validators import read_seq_check


def membership_read(*, room: Room, user: User, seq: object, origin: str | None = None) -> int:
    """Move ``user``'s read position in ``room`` up to ``seq`` (it never moves back).

    Tells the user's connections but ``origin`` (a socket id) with a ``read``
    frame on commit. The REST call uses it; sockets merge their ``read``
    frames in memory instead (``kaiwa.chat.realtime.read_positions``).
    Returns the stored position. Raises MessageInvalid when ``seq`` is not a
    non-negative int, RoomForbidden when ``user`` is not a member.
    """
    seq = read_seq_check(seq=seq)
    with transaction.atomic():
        # A position past the last message would hide messages not yet sent.
        seq = min(seq, Room.objects.values_list("last_seq", flat=True).get(pk=room.pk))
        membership = Membership.objects.select_for_update().filter(room=room, user=user).first()
        if membership is None:
            raise RoomForbidden("Not a member of this room.")
        if seq > membership.last_read_seq:
            membership.last_read_seq = seq
            membership.save(update_fields=["last_read_seq"])
            transaction.on_commit(partial(publish.publish_read, user.pk, room.slug, seq, origin))
        return membership.last_read_seq


READ_BATCH_ROWS = 5000  # positions per statement: 3 parameters each, under SQLite's 32,766


def membership_read_batch(*, positions: dict[tuple[int, int], int]) -> None:
    """Store many read positions at once: ``{(room id, user id): seq}``.

    A position only moves up (a lower ``seq`` than the stored one changes
    nothing); unknown memberships are ignored. One ``UPDATE ... FROM`` per
    READ_BATCH_ROWS positions (PostgreSQL, SQLite 3.33+), in one
    transaction. Database errors propagate.
    """
    table = connection.ops.quote_name(Membership._meta.db_table)
    items = [(room_id, user_id, seq) for (room_id, user_id), seq in positions.items()]
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(items), READ_BATCH_ROWS):
            chunk = items[start : start + READ_BATCH_ROWS]
            values = ", ".join(["(%s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"WITH v(room_id, user_id, seq) AS (VALUES {values}) "
                f"UPDATE {table} SET last_read_seq = v.seq FROM v "
                f"WHERE {table}.room_id = v.room_id AND {table}.user_id = v.user_id "
                f"AND {table}.last_read_seq < v.seq",
                [value for row in chunk for value in row],
            )

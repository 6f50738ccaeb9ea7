"""Reads of the chat app: visible rooms, message pages, the join backlog."""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from .errors import RoomNotFound
from .models import DM_PREFIX, Membership, Message, Room
from .validators import room_slug_check

MESSAGE_PAGE_MAX = 200
ROOM_PAGE_DEFAULT = 200  # rooms per GET /api/rooms/ page without ?limit=
ROOM_PAGE_MAX = 500


def room_list_visible(*, user: Any) -> QuerySet[Room]:
    """Rooms ``user`` may see: every public room and the private rooms he is in."""
    return Room.objects.filter(Q(private=False) | Exists(_membership_of(user)))


def _membership_of(user: Any) -> QuerySet[Membership]:
    return Membership.objects.filter(room=OuterRef("pk"), user=user)


def room_list_listed(*, user: Any) -> QuerySet[Room]:
    """Rooms listed to ``user`` (``GET /api/rooms/``, the ``/chat/`` page):
    those he may see, less the direct messages nobody has written in yet
    that someone else opened. Opening a conversation tells its recipient
    nothing until something is said; he may still enter it."""
    unsaid = Q(slug__startswith=DM_PREFIX, last_seq=0) & ~Q(created_by=user)
    return room_list_visible(user=user).exclude(unsaid)


def room_page(*, user: Any, after: str | None, limit: int) -> tuple[list[Room], str | None]:
    """Up to ``limit`` rooms listed to ``user`` (``room_list_listed``) with a
    slug after ``after`` (None: from the first), in slug order, and the
    cursor of the next page: the last slug returned, None on the last page.
    Keyset pagination: a page costs the same wherever it starts."""
    rooms = room_list_listed(user=user).order_by("slug")
    if after is not None:
        rooms = rooms.filter(slug__gt=after)
    page = list(rooms[: limit + 1])
    return page[:limit], page[limit - 1].slug if len(page) > limit else None


def room_list_index(*, user: Any) -> QuerySet[Room]:
    """Rooms listed to ``user`` with ``mine`` (bool: he is a member), his
    first, then by slug: what the ``/chat/`` page pages through."""
    rooms = room_list_listed(user=user).annotate(mine=Exists(_membership_of(user)))
    return rooms.order_by("-mine", "slug")


def room_get_visible(*, user: Any, slug: str) -> Room:
    """The room ``slug`` if ``user`` may see it.

    Raises RoomNotFound for a bad name, an unknown room, and a private room
    ``user`` is not in: a stranger learns nothing about a private room.
    """
    room_slug_check(slug=slug)
    room = room_list_visible(user=user).filter(slug=slug).first()
    if room is None:
        raise RoomNotFound("No such room.")
    return room


def message_list(
    *, room: Room, after: int | None = None, before: int | None = None, limit: int = 50
) -> list[Message]:
    """Up to ``limit`` messages of ``room``, ascending ``seq``.

    With ``after``, the first ``limit`` with seq > after; otherwise the last
    ``limit`` (with seq < before when given).
    """
    qs = Message.objects.filter(room=room)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    if after is not None:
        return list(qs.filter(seq__gt=after).order_by("seq")[:limit])
    return list(reversed(qs.order_by("-seq")[:limit]))


@dataclass(frozen=True)
class Backlog:
    """What a joining socket is sent before ``ready``.

    ``messages``: ascending seq; ``reset_seq``: set when the client must
    reload over REST instead; ``latest_seq``: the room's seq when read.
    """

    messages: list[Message]
    reset_seq: int | None
    latest_seq: int


def message_backlog(*, room: Room, after: int | None) -> Backlog:
    """The backlog of PROTOCOL.md section 1 for a socket joining ``room``.

    Without ``after``: the last KAIWA_BACKLOG_MESSAGES messages. With
    ``after``: every message with seq > after, or a reset when more than
    KAIWA_RESUME_LIMIT are missing or ``after`` is past the room's seq.
    """
    latest = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
    if after is None:
        # Bounded by `latest`: a message committed since belongs to the live
        # stream, which delivers every seq above `latest` exactly once.
        messages = message_list(room=room, before=latest + 1, limit=settings.KAIWA_BACKLOG_MESSAGES)
        return Backlog(messages, None, latest)
    if after > latest or latest - after > settings.KAIWA_RESUME_LIMIT:
        return Backlog([], latest, latest)
    return Backlog(message_list(room=room, after=after, limit=latest - after), None, latest)


def message_range(*, room_slug: str, after: int, before: int) -> list[Message]:
    """Messages of room ``room_slug`` with after < seq < before, ascending: gap filling."""
    return list(
        Message.objects.filter(room__slug=room_slug, seq__gt=after, seq__lt=before).order_by("seq")
    )


def room_snapshot(*, slug: str, limit: int) -> tuple[int, list[Message]]:
    """The room's latest seq and its last ``limit`` messages with seq <= it,
    ascending. Two queries, written in SQL (``Manager.raw``): a room feed
    opens with them, many at once in a connect storm, and compiling the
    ORM's versions costs about a millisecond of Python each. Raises
    RoomNotFound for an unknown room."""
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, last_seq FROM {q(Room._meta.db_table)} WHERE slug = %s", [slug])
        row = cursor.fetchone()
    if row is None:
        raise RoomNotFound("No such room.")
    room_id, latest = row
    if limit <= 0:
        return latest, []
    rows = Message.objects.raw(
        f"SELECT * FROM {q(Message._meta.db_table)} WHERE room_id = %s AND seq <= %s "
        "ORDER BY seq DESC LIMIT %s",
        [room_id, latest, limit],
    )
    return latest, list(reversed(list(rows)))


def room_last_seqs(*, slugs: list[str]) -> dict[str, int]:
    """``{slug: last_seq}`` of the rooms named in ``slugs`` (unknown ones left out)."""
    return dict(Room.objects.filter(slug__in=slugs).values_list("slug", "last_seq"))

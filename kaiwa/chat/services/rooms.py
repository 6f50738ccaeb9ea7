"""Room writes: joining (a public room is created on first join), creating
rooms in batches under the per-user cap and rate, memberships, direct messages."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Count, Q

from kaiwa.chat import quotas
from kaiwa.chat.errors import (
    ChatError,
    MessageInvalid,
    RoomCapReached,
    RoomCreateRateLimited,
    RoomForbidden,
    RoomNotFound,
)
from kaiwa.chat.models import (
    DM_PREFIX,
    Membership,
    Room,
)
from kaiwa.chat.selectors import room_admit


def room_join(*, user: User | None, slug: str) -> Room:
    """Admit ``user`` (a User, or None for a guest) to the room ``slug``.

    A public room is created on first join, as in the Channels tutorial, and
    a signed-in user becomes a member. Returns the Room, with ``read_seq``
    set to the user's stored read position (0 for a guest).

    Raises RoomNotFound for a bad name, RoomForbidden for a private room
    ``user`` is not a member of and for any unknown ``dm-`` room, and what
    ``room_create_batch`` refuses a creation with. Sockets use
    ``room_admit`` (reads only) and leave the writes to the write thread.
    """
    room = room_admit(user=user, slug=slug)
    if room is None:
        creator = Creator(user_id=user.pk if user is not None else None)
        (created,) = room_create_batch(requests=[RoomRequest(slug=slug, creator=creator)])
        if isinstance(created, ChatError):
            raise created
        room = created
    if user is not None and room.read_seq is None:
        membership_create_batch(pairs=[(room.pk, user.pk)])
    room.read_seq = room.read_seq or 0
    return room


def membership_create_batch(*, pairs: Sequence[tuple[int, int]]) -> None:
    """Make each ``(room id, user id)`` of ``pairs`` a membership, in one
    ``INSERT ... ON CONFLICT DO NOTHING``: one that exists already, or is
    created concurrently, is no error. Database errors propagate."""
    Membership.objects.bulk_create(
        [Membership(room_id=room_id, user_id=user_id) for room_id, user_id in pairs],
        ignore_conflicts=True,
    )


@dataclass(frozen=True)
class Creator:
    """Who asks for a new room: a signed-in user (``user_id``), or a guest
    known by his client ``ip`` (None when the server has no address)."""

    user_id: int | None = None
    ip: str | None = None

    @property
    def key(self) -> str:
        """The name of this creator's budget: ``user:<id>`` or ``ip:<address>``."""
        return f"user:{self.user_id}" if self.user_id is not None else f"ip:{self.ip}"


@dataclass(frozen=True)
class RoomRequest:
    """A join asking for the public room ``slug``, to be made by ``creator``
    unless it exists."""

    slug: str
    creator: Creator


def room_create_batch(*, requests: Sequence[RoomRequest]) -> list[Room | ChatError]:
    """Create the public rooms asked for in ``requests`` that do not exist
    yet; returns, in order, the Room of each request (``read_seq`` None; it
    may be private: the caller must check) or the ChatError refusing it.

    A room that exists already is never refused. A new one is made by the
    first of its requests whose creator is within his budgets, and counts
    against them: KAIWA_MAX_ROOMS_PER_USER public rooms created (counted from
    the rows, so across processes; RoomCapReached, 4403) and
    KAIWA_ROOM_CREATE_RATE_PER_MINUTE (``quotas.room_create_allowed``, per
    process; RoomCreateRateLimited, 4429). A guest's budgets are those of his
    IP. A ``dm-`` name is RoomForbidden. Three queries for any number of
    requests: a COUNT of the creators' rooms, one ``INSERT ... ON CONFLICT DO
    NOTHING``, one SELECT. Names must be checked already
    (``room_slug_check``). Database errors propagate.

    On PostgreSQL the batch runs in one transaction that first takes an
    advisory lock per creator, so that two processes creating rooms for the
    same creator count and insert one after the other and the cap holds
    across processes (one statement more). SQLite's one writer per process
    needs none.
    """
    creators = {r.creator for r in requests}
    with _creators_locked(creators):
        return _room_create_locked(requests, creators)


ROOM_CREATE_LOCK_PREFIX = "kaiwa.room_create:"


@contextmanager
def _creators_locked(creators: set[Creator]) -> Iterator[None]:
    """A transaction holding a PostgreSQL advisory lock (transaction-scoped)
    on each of ``creators``' room budgets, taken in one order (hash, then
    key) so that batches cannot deadlock; nothing elsewhere or with the cap
    off."""
    if connection.vendor != "postgresql" or settings.KAIWA_MAX_ROOMS_PER_USER <= 0:
        yield
        return
    keys = sorted(ROOM_CREATE_LOCK_PREFIX + c.key for c in creators)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(h)) FROM ("
                " SELECT hashtextextended(k, 0) AS h FROM unnest(%s::text[]) AS k ORDER BY h, k"
                ") AS ordered",
                [keys],
            )
        yield


def _room_create_locked(
    requests: Sequence[RoomRequest], creators: set[Creator]
) -> list[Room | ChatError]:
    counts = _rooms_created_counts(creators=creators)
    new: dict[str, Room] = {}
    refused: dict[int, ChatError] = {}
    for index, request in enumerate(requests):
        if request.slug in new:
            continue
        error = _room_create_refusal(request, counts)
        if error is not None:
            refused[index] = error
            continue
        counts[request.creator.key] = counts.get(request.creator.key, 0) + 1
        creator = request.creator
        new[request.slug] = Room(
            slug=request.slug,
            title=request.slug,
            created_by_id=creator.user_id,
            created_from_ip=creator.ip if creator.user_id is None else None,
        )
    Room.objects.bulk_create(list(new.values()), ignore_conflicts=True)
    rooms = {r.slug: r for r in Room.objects.filter(slug__in={r.slug for r in requests})}
    # A refused request still gets its room when it exists: made by another
    # request, another process, or before.
    gone = RoomNotFound("No such room.")  # deleted as soon as created
    return [rooms.get(r.slug) or refused.get(i, gone) for i, r in enumerate(requests)]


def _room_create_refusal(request: RoomRequest, counts: dict[str, int]) -> ChatError | None:
    """Why ``request`` may not create its room (None: it may), given
    ``counts``: rooms created so far per creator key."""
    if request.slug.startswith(DM_PREFIX):
        return RoomForbidden("This room is private.")
    cap = settings.KAIWA_MAX_ROOMS_PER_USER
    if cap > 0 and counts.get(request.creator.key, 0) >= cap:
        return RoomCapReached(f"You have created {cap} rooms, the most one user may.")
    if not quotas.room_create_allowed(request.creator.key):
        return RoomCreateRateLimited()
    return None


def _rooms_created_counts(*, creators: set[Creator]) -> dict[str, int]:
    """``{creator key: public rooms he created}`` (direct messages are not
    counted) for ``creators``; one query, none with the cap off."""
    if settings.KAIWA_MAX_ROOMS_PER_USER <= 0 or not creators:
        return {}
    user_ids = {c.user_id for c in creators if c.user_id is not None}
    ips = {c.ip for c in creators if c.user_id is None and c.ip is not None}
    rows = (
        Room.objects.filter(Q(created_by_id__in=user_ids) | Q(created_from_ip__in=ips))
        .exclude(slug__startswith=DM_PREFIX)
        .values("created_by_id", "created_from_ip")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[str, int] = {}
    for row in rows:
        creator = Creator(user_id=row["created_by_id"], ip=row["created_from_ip"])
        counts[creator.key] = counts.get(creator.key, 0) + row["n"]
    return counts


def dm_open(*, user: User, other_username: object) -> tuple[Room, bool]:
    """The private room of ``user`` and the user named ``other_username``.

    The same room every time, whoever opens it: slug ``dm-<low id>-<high id>``,
    ``created_by`` the user who opened it first. Reopening one is free; a new
    one, or an unknown name, costs a token of ``user``'s room-creation rate
    (``quotas.room_create_allowed``), so that an unknown name and a new
    conversation answer alike once it is spent. Direct messages do not count
    against KAIWA_MAX_ROOMS_PER_USER.

    Returns ``(room, created)``. Raises MessageInvalid for a bad name,
    RoomCreateRateLimited over the rate, RoomNotFound for an unknown or
    inactive user.
    """
    if not isinstance(other_username, str) or not other_username:
        raise MessageInvalid("'username' must be a non-empty string.")
    other = get_user_model().objects.filter(username=other_username, is_active=True).first()
    slug = f"{DM_PREFIX}{min(user.pk, other.pk)}-{max(user.pk, other.pk)}" if other else None
    room = Room.objects.filter(slug=slug).first() if slug else None
    if room is None and not quotas.room_create_allowed(Creator(user_id=user.pk).key):
        raise RoomCreateRateLimited("Too many new conversations; try again in a minute.")
    if other is None:
        raise RoomNotFound("No such user.")
    with transaction.atomic():
        room, created = Room.objects.get_or_create(
            slug=slug,
            defaults={
                "private": True,
                "title": f"{user.username}, {other.username}",
                "created_by": user,
            },
        )
        for member in {user, other}:
            Membership.objects.get_or_create(room=room, user=member)
    return room, created

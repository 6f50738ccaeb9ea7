"""Writes of the chat app: joining rooms, posting messages, read positions, DMs.

Each service runs under ``transaction.atomic`` and queues its broadcast with
``transaction.on_commit``, so nothing is broadcast that is not stored.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import OuterRef, Q, Subquery

from kaiwa.accounts.selectors import socket_user_get
from kaiwa.notifications import services as notifications

from . import fanout
from .errors import MessageInvalid, NotAuthenticated, RoomForbidden, RoomNotFound
from .models import Membership, Message, Room, room_slug_validator

DM_PREFIX = "dm-"


def room_slug_check(*, slug: str) -> str:
    """Return ``slug`` if it is a valid room name; raises RoomNotFound otherwise."""
    try:
        room_slug_validator(slug)
    except Exception as exc:
        raise RoomNotFound("Bad room name: 1 to 64 characters of [A-Za-z0-9_-].") from exc
    return slug


def room_join(*, user: Any, slug: str) -> Room:
    """Admit ``user`` (a User, or None for a guest) to the room ``slug``.

    A public room is created on first join, as in the Channels tutorial, and
    a signed-in user becomes a member. Returns the Room, with ``read_seq``
    set to the user's stored read position (0 for a guest).

    Raises RoomNotFound for a bad name, and RoomForbidden for a private room
    ``user`` is not a member of and for any unknown ``dm-`` room. One query
    when the room exists and the user is already a member; two more the first
    time (creating the room, the membership).
    """
    room_slug_check(slug=slug)
    room = _room_with_read_seq(slug=slug, user=user)
    if room is None:
        if slug.startswith(DM_PREFIX):
            # DM names are predictable: answer as for an existing private room,
            # so that a stranger cannot tell which pairs of users have one.
            raise RoomForbidden("This room is private.")
        room = _room_create_public(slug=slug)
        room.read_seq = None
    if room.private and room.read_seq is None:
        raise RoomForbidden("This room is private.")
    if user is not None and room.read_seq is None:
        # One INSERT ... ON CONFLICT DO NOTHING: a concurrent join is no error.
        Membership.objects.bulk_create([Membership(room=room, user=user)], ignore_conflicts=True)
    room.read_seq = room.read_seq or 0
    return room


def _room_with_read_seq(*, slug: str, user: Any) -> Room | None:
    """The room ``slug`` with ``read_seq``: ``user``'s read position, None
    when he is not a member (always None for a guest). One query."""
    rooms = Room.objects.filter(slug=slug)
    if user is None:
        room = rooms.first()
        if room is not None:
            room.read_seq = None
        return room
    position = Membership.objects.filter(room=OuterRef("pk"), user=user).values("last_read_seq")
    return rooms.annotate(read_seq=Subquery(position[:1])).first()


def room_join_socket(*, user: Any, session: Any, token: str | None, slug: str) -> tuple[Any, Room]:
    """Authenticate a WebSocket handshake and admit it to the room ``slug``,
    in one call on one database thread.

    ``user``: an already authenticated user (None to authenticate here from
    the scope's ``session`` or Bearer ``token``, see
    ``kaiwa.accounts.selectors.socket_user_get``). Returns ``(user, room)``,
    ``user`` None for a guest. Raises NotAuthenticated (close 4401) when no
    credential is valid and guests are off, and what ``room_join`` raises.
    """
    if user is None:
        user = socket_user_get(session=session, token=token)
    if user is None and not settings.KAIWA_ALLOW_GUESTS:
        raise NotAuthenticated("Log in, or send a Bearer token.")
    return user, room_join(user=user, slug=slug)


def _room_create_public(*, slug: str) -> Room:
    try:
        with transaction.atomic():
            return Room.objects.create(slug=slug, title=slug)
    except IntegrityError:  # another connection created it first
        return Room.objects.get(slug=slug)


def message_text_check(*, text: Any) -> str:
    """Return ``text`` if it is a str of 1 to KAIWA_MAX_MESSAGE_CHARS characters.

    Raises MessageInvalid with code ``bad_frame`` (not a string, empty) or
    ``too_long``.
    """
    if not isinstance(text, str) or not text:
        raise MessageInvalid("'message' must be a non-empty string.", code="bad_frame")
    limit = settings.KAIWA_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise MessageInvalid(f"'message' is longer than {limit} characters.", code="too_long")
    return text


def client_id_check(*, client_id: Any) -> str | None:
    """Return ``client_id`` (None, or a str of 1 to 64 characters); raises MessageInvalid."""
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        raise MessageInvalid("'client_id' must be a string of 1 to 64 characters.")
    return client_id


@dataclass(frozen=True)
class Post:
    """A message to store: ``text`` and ``client_id`` already checked
    (message_text_check, client_id_check); ``user`` None for a guest."""

    room: Room
    user: Any
    username: str
    text: str
    client_id: str | None = None


def message_create(
    *, room: Room, user: Any, username: str, text: Any, client_id: Any = None
) -> tuple[Message, bool]:
    """Store a message in ``room`` with the next ``seq`` and broadcast it on commit.

    ``user`` is the author (None for a guest), ``username`` the name shown.
    With a ``client_id`` already used by this author in this room, the
    original message is returned and nothing is stored or broadcast.

    Returns ``(message, created)``. Raises MessageInvalid on a bad text or
    client_id; database errors propagate (the consumer answers
    ``unavailable``) and leave nothing half-stored.
    """
    post = Post(
        room=room,
        user=user,
        username=username,
        text=message_text_check(text=text),
        client_id=client_id_check(client_id=client_id),
    )
    try:
        return message_create_batch(posts=[post])[0]
    except IntegrityError:
        # The same client_id committed by a concurrent request: this time the
        # lookup finds it and returns the original.
        return message_create_batch(posts=[post])[0]


def message_create_batch(*, posts: Sequence[Post]) -> list[tuple[Message, bool]]:
    """Store checked ``posts`` in one transaction (group commit), in order.

    Each room's ``last_seq`` is raised once by its number of new messages
    under the room's row lock (rooms locked in id order, so concurrent
    batches cannot deadlock), which keeps ``seq`` gapless and in post order.
    A post whose ``client_id`` its author already used in that room (before,
    or earlier in the batch) gets the original message back.

    Returns one ``(message, created)`` per post. Each new message is
    broadcast on commit. Database errors propagate and store nothing.
    """
    first_use: dict[tuple[int, str, str | None], int] = {}  # client_id key -> post index
    fresh: dict[int, list[int]] = {}  # room id -> indexes of posts to insert
    with transaction.atomic():
        originals = _messages_by_client_id(posts)
        for index, post in enumerate(posts):
            key = (post.room.pk, post.username, post.client_id)
            if post.client_id is not None:
                if key in originals or key in first_use:
                    continue
                first_use[key] = index
            fresh.setdefault(post.room.pk, []).append(index)
        created = _messages_insert(posts, fresh)
        for message in created.values():
            transaction.on_commit(partial(fanout.publish_message, message, message.room.slug))
            notifications.missed_messages_queue(message=message)  # mentions and DMs: email rows
    results = []
    for index, post in enumerate(posts):
        key = (post.room.pk, post.username, post.client_id)
        if index in created:
            results.append((created[index], True))
        elif key in originals:
            results.append((originals[key], False))
        else:  # the same client_id earlier in this batch
            results.append((created[first_use[key]], False))
    return results


def _messages_by_client_id(posts: Sequence[Post]) -> dict[tuple[int, str, str | None], Any]:
    keyed = [p for p in posts if p.client_id is not None]
    if not keyed:
        return {}
    match = Q()
    for p in keyed:
        match |= Q(room_id=p.room.pk, username=p.username, client_id=p.client_id)
    return {
        (m.room_id, m.username, m.client_id): m
        for m in Message.objects.select_related("room").filter(match)
    }


def _messages_insert(posts: Sequence[Post], fresh: dict[int, list[int]]) -> dict[int, Message]:
    last_seqs = _room_seqs_advance({room_id: len(indexes) for room_id, indexes in fresh.items()})
    messages: dict[int, Message] = {}
    for room_id, indexes in fresh.items():
        first = last_seqs[room_id] - len(indexes) + 1
        for seq, index in enumerate(indexes, start=first):
            post = posts[index]
            messages[index] = Message(
                room=post.room,
                seq=seq,
                author=post.user,
                username=post.username,
                text=post.text,
                client_id=post.client_id,
            )
    Message.objects.bulk_create(list(messages.values()))
    return messages


def _room_seqs_advance(counts: dict[int, int]) -> dict[int, int]:
    """Raise each room's ``last_seq`` by ``counts[room id]``; returns the new values.

    Two statements for any number of rooms: lock the rows in id order (so
    concurrent batches cannot deadlock; on SQLite the IMMEDIATE transaction
    already holds the write lock), then one ``UPDATE ... RETURNING``
    (PostgreSQL, SQLite 3.35+). The locks last until commit, so ``seq`` stays
    gapless and unique per room.
    """
    if not counts:
        return {}
    ids = sorted(counts)
    list(Room.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))
    table = connection.ops.quote_name(Room._meta.db_table)
    cases = " ".join(["WHEN %s THEN %s"] * len(ids))
    marks = ", ".join(["%s"] * len(ids))
    params = [value for room_id in ids for value in (room_id, counts[room_id])] + ids
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + CASE id {cases} END "
            f"WHERE id IN ({marks}) RETURNING id, last_seq",
            params,
        )
        return dict(cursor.fetchall())


def read_seq_check(*, seq: Any) -> int:
    """Return ``seq`` if it is a non-negative int; raises MessageInvalid."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise MessageInvalid("'seq' must be a non-negative integer.")
    return seq


def membership_read(*, room: Room, user: Any, seq: Any, origin: str | None = None) -> int:
    """Move ``user``'s read position in ``room`` up to ``seq`` (it never moves back).

    Tells the user's connections but ``origin`` (a socket id) with a ``read``
    frame on commit. The REST call uses it; sockets merge their ``read``
    frames in memory instead (``kaiwa.chat.reads``).
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
            transaction.on_commit(partial(fanout.publish_read, user.pk, room.slug, seq, origin))
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


def dm_open(*, user: Any, other_username: Any) -> tuple[Room, bool]:
    """The private room of ``user`` and the user named ``other_username``.

    The same room every time, whoever opens it: slug ``dm-<low id>-<high id>``.
    Returns ``(room, created)``. Raises RoomNotFound for an unknown user and
    MessageInvalid for a bad name.
    """
    if not isinstance(other_username, str) or not other_username:
        raise MessageInvalid("'username' must be a non-empty string.")
    other = get_user_model().objects.filter(username=other_username, is_active=True).first()
    if other is None:
        raise RoomNotFound("No such user.")
    low, high = sorted([user.pk, other.pk])
    slug = f"{DM_PREFIX}{low}-{high}"
    with transaction.atomic():
        room, created = Room.objects.get_or_create(
            slug=slug,
            defaults={"private": True, "title": f"{user.username}, {other.username}"},
        )
        for member in {user, other}:
            Membership.objects.get_or_create(room=room, user=member)
    return room, created

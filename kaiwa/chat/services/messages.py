"""Message posts: one or a batch in one transaction, each with the room's next
``seq``, idempotent by ``client_id``, refused for authors whose access ended.

Each post is broadcast with ``transaction.on_commit`` (``realtime.publish``),
so nothing is broadcast that is not stored."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower

from kaiwa.accounts.selectors import credentials_revoked
from kaiwa.chat import signals
from kaiwa.chat.errors import (
    ChatError,
    NotAuthenticated,
    RoomForbidden,
)
from kaiwa.chat.formatting import MENTION_PATTERN, MENTION_TRAILING, message_html
from kaiwa.chat.models import (
    Membership,
    Message,
    Room,
)
from kaiwa.chat.realtime import publish
from kaiwa.chat.validators import client_id_check, message_text_check


@dataclass(frozen=True)
class Post:
    """A message to store: ``text`` and ``client_id`` already checked
    (message_text_check, client_id_check); ``user`` None for a guest.

    ``session_key`` and ``token``: the credentials of the socket that posts
    (None over REST, whose request was authenticated a moment ago). The
    write transaction stores the post only if one of them still admits its
    user (``_credentials_revoked``): nothing posted after a logout, a
    password change or a token's revocation is stored, even before the
    socket's close."""

    room: Room
    user: User | None
    username: str
    text: str
    client_id: str | None = None
    session_key: str | None = None
    token: str | None = None


def message_create(
    *, room: Room, user: User | None, username: str, text: object, client_id: object = None
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
        (result,) = message_create_batch(posts=[post])
    except IntegrityError:
        # The same client_id committed by a concurrent request: this time the
        # lookup finds it and returns the original.
        (result,) = message_create_batch(posts=[post])
    if isinstance(result, ChatError):
        raise result
    return result


def message_create_batch(*, posts: Sequence[Post]) -> list[tuple[Message, bool] | ChatError]:
    """Store checked ``posts`` in one transaction (group commit), in order.

    Each room's ``last_seq`` is raised once by its number of new messages
    under the room's row lock (rooms locked in id order, so concurrent
    batches cannot deadlock), which keeps ``seq`` gapless and in post order.
    A post whose ``client_id`` its author already used in that room (before,
    or earlier in the batch) gets the original message back. A post whose
    author may not post any more (``posts_refused``: deactivated, or no
    longer a member of a private room) is not stored.

    Returns one ``(message, created)`` per post, or the ChatError of a
    refused post. Each new message is broadcast on commit. Database errors
    propagate and store nothing.
    """
    first_use: dict[tuple[int, str, str | None], int] = {}  # client_id key -> post index
    fresh: dict[int, list[int]] = {}  # room id -> indexes of posts to insert
    # Rendered before the transaction: Markdown costs up to a few milliseconds
    # for a long text, which no other writer should wait for.
    htmls = [message_html_render(text=p.text, room=p.room) for p in posts]
    with transaction.atomic():
        refused = posts_refused(posts)
        originals = _messages_by_client_id([p for i, p in enumerate(posts) if i not in refused])
        for index, post in enumerate(posts):
            if index in refused:
                continue
            key = (post.room.pk, post.username, post.client_id)
            if post.client_id is not None:
                if key in originals or key in first_use:
                    continue
                first_use[key] = index
            fresh.setdefault(post.room.pk, []).append(index)
        created = _messages_insert(posts, fresh, htmls)
        for message in created.values():
            transaction.on_commit(partial(publish.publish_message, message, message.room.slug))
            signals.message_stored.send(sender=Message, message=message)  # email rows
    results: list[tuple[Message, bool] | ChatError] = []
    for index, post in enumerate(posts):
        key = (post.room.pk, post.username, post.client_id)
        if index in refused:
            results.append(refused[index])
        elif index in created:
            results.append((created[index], True))
        elif key in originals:
            results.append((originals[key], False))
        else:  # the same client_id earlier in this batch
            results.append((created[first_use[key]], False))
    return results


def posts_refused(posts: Sequence[Post]) -> dict[int, ChatError]:
    """``{index: error}`` of the posts whose author may not post any more:
    a deactivated (or deleted) user (NotAuthenticated), or anyone not a
    member of a room that is private now (RoomForbidden).

    Read in the batch's transaction: a revocation committed before it is
    never missed, whether or not the author's socket has been closed yet
    (``kaiwa.chat.receivers``). Two queries, three when a room is private.
    """
    room_ids = {p.room.pk for p in posts}
    user_ids = {p.user.pk for p in posts if p.user is not None}
    private = set(Room.objects.filter(pk__in=room_ids, private=True).values_list("pk", flat=True))
    active: set[int] = set()
    members: set[tuple[int, int]] = set()
    if user_ids:
        users = get_user_model().objects.filter(pk__in=user_ids, is_active=True)
        active = set(users.values_list("pk", flat=True))
        if private:
            rows = Membership.objects.filter(room_id__in=private, user_id__in=user_ids)
            members = set(rows.values_list("room_id", "user_id"))
    refused: dict[int, ChatError] = {}
    revoked = credentials_revoked([p for p in posts if p.user is not None and p.user.pk in active])
    for index, post in enumerate(posts):
        if id(post) in revoked:
            refused[index] = NotAuthenticated("Your session or token is no longer valid.")
        elif post.user is not None and post.user.pk not in active:
            refused[index] = NotAuthenticated("Your account is no longer active.")
        elif post.room.pk in private and (
            post.user is None or (post.room.pk, post.user.pk) not in members
        ):
            refused[index] = RoomForbidden("This room is private.")
    return refused


def _messages_by_client_id(posts: Sequence[Post]) -> dict[tuple[int, str, str | None], Message]:
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


def _messages_insert(
    posts: Sequence[Post], fresh: dict[int, list[int]], htmls: list[str]
) -> dict[int, Message]:
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
                html=htmls[index],
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


def message_html_render(*, text: str, room: Room | None = None) -> str:
    """The ``html`` of a message text (kaiwa.chat.formatting), mentions marked
    for the members of ``room`` it names (one query, only for a text with an
    ``@``; every ``@name`` without a room)."""
    if room is None or "@" not in text:
        return message_html(text=text)
    tokens = [m.group(1).lower() for m in MENTION_PATTERN.finditer(text)]
    names = {*tokens, *(t.rstrip(MENTION_TRAILING) for t in tokens)}
    # Case-insensitive, as notifications finds whom a mention names.
    members = Membership.objects.annotate(name=Lower("user__username")).filter(
        room=room, name__in=names
    )
    return message_html(text=text, members=list(members.values_list("user__username", flat=True)))

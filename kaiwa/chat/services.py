"""Writes of the chat app: joining rooms, posting messages, read positions, DMs.

Each service runs under ``transaction.atomic`` and queues its broadcast with
``transaction.on_commit``, so nothing is broadcast that is not stored.
"""

import contextvars
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from kaiwa.accounts.selectors import session_user_get, token_users_get

from . import events, fanout, frames, limits
from .errors import (
    ChatError,
    MessageForbidden,
    MessageInvalid,
    MessageNotFound,
    NotAuthenticated,
    RoomCapReached,
    RoomCreateRateLimited,
    RoomForbidden,
    RoomNotFound,
)
from .formatting import MENTION_PATTERN, MENTION_TRAILING, message_html
from .models import DM_PREFIX, Membership, Message, MessageVersion, Reaction, Room, RoomEvent
from .validators import message_id_check, room_slug_check


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


def room_admit(*, user: User | None, slug: str) -> Room | None:
    """The read-only half of ``room_join``: may ``user`` (None for a guest) enter ``slug``?

    Returns the Room with ``read_seq``: the user's read position, None when
    he is not a member yet of this public room (he becomes one by joining);
    or None when the public room does not exist yet (joining creates it).
    Raises RoomNotFound for a bad name, RoomForbidden for a private room
    ``user`` is not in and for any unknown ``dm-`` room. One query.
    """
    room_slug_check(slug=slug)
    user_id = user.pk if user is not None else None
    room = _rooms_with_read_seq(pairs=[(slug, user_id)]).get((slug, user_id))
    return _room_admission(slug=slug, room=room)


def _room_admission(*, slug: str, room: Room | None) -> Room | None:
    """Apply the rules of ``room_admit`` to the looked-up ``room`` (None: no such room)."""
    if room is None:
        if slug.startswith(DM_PREFIX):
            # DM names are predictable: answer as for an existing private room,
            # so that a stranger cannot tell which pairs of users have one.
            raise RoomForbidden("This room is private.")
        return None
    if room.private and room.read_seq is None:
        raise RoomForbidden("This room is private.")
    return room


ROOM_JOIN_FIELDS = ("id", "slug", "title", "private", "last_seq")


def _rooms_with_read_seq(
    *, pairs: Sequence[tuple[str, int | None]]
) -> dict[tuple[str, int | None], Room]:
    """For each ``(slug, user id)`` of ``pairs`` whose room exists, the Room
    with ``read_seq``: that user's read position, None when he is not a
    member (a None user id is a guest). One query for all pairs.

    Written in SQL, the pairs joined as a ``VALUES`` list: every WebSocket
    join runs it, and compiling the ORM's version costs about a millisecond
    of Python. Each room is built as ``Room.objects.only(*ROOM_JOIN_FIELDS)``
    would build it.
    """
    if not pairs:
        return {}
    q = connection.ops.quote_name
    columns = ", ".join(f"r.{q(name)}" for name in ROOM_JOIN_FIELDS)
    values = ", ".join(["(%s, CAST(%s AS BIGINT))"] * len(pairs))
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH v(slug, user_id) AS (VALUES {values}) "
            f"SELECT v.user_id, {columns}, m.last_read_seq FROM v "
            f"JOIN {q(Room._meta.db_table)} r ON r.slug = v.slug "
            f"LEFT JOIN {q(Membership._meta.db_table)} m "
            "ON m.room_id = r.id AND m.user_id = v.user_id",
            [value for pair in pairs for value in pair],
        )
        rows = cursor.fetchall()
    rooms = {}
    for user_id, room_id, slug, title, private, last_seq, read_seq in rows:
        fields = [room_id, slug, title, bool(private), last_seq]
        room = Room.from_db(connection.alias, list(ROOM_JOIN_FIELDS), fields)
        room.read_seq = read_seq
        rooms[(slug, user_id)] = room
    return rooms


@dataclass(frozen=True)
class Admission:
    """A WebSocket handshake asking to enter room ``slug``: an already
    authenticated ``user``, or the scope's ``session`` and Bearer ``token``."""

    slug: str
    user: User | None = None
    session: SessionBase | None = None
    token: str | None = None


ADMIT_BATCH_MAX = 500  # handshakes per call: 2 parameters each in one statement


def room_admit_batch(
    *, admissions: Sequence[Admission]
) -> list[tuple[User | None, Room | None] | ChatError]:
    """Authenticate WebSocket handshakes and check they may enter their
    rooms, reading only, all at once, in order.

    Each admission is authenticated by its ``user`` when given, else by its
    session cookie, else by its Bearer token
    (``kaiwa.accounts.selectors``). Each result is ``(user, room)``, with
    ``user`` None for a guest and ``room`` as ``room_admit`` gives it; or the
    ChatError of a refused one: NotAuthenticated (close 4401) when no
    credential is valid and guests are off, or what ``room_admit`` raises.
    Queries: one for all tokens, one for all rooms, two per session cookie.
    Names must be checked already (``room_slug_check``). Database errors
    propagate.
    """
    users: list[User | None] = []
    for admission in admissions:
        user = admission.user
        if user is None and admission.session is not None:
            user = session_user_get(session=admission.session)
        users.append(user)
    wanted = [a.token for a, u in zip(admissions, users, strict=True) if u is None and a.token]
    by_token = token_users_get(keys=wanted)
    pairs: list[tuple[str, int | None]] = []
    for i, admission in enumerate(admissions):
        if users[i] is None and admission.token:
            users[i] = by_token.get(admission.token)
        user = users[i]
        pairs.append((admission.slug, user.pk if user is not None else None))
    rooms = _rooms_with_read_seq(pairs=pairs)
    results: list[tuple[User | None, Room | None] | ChatError] = []
    for (slug, user_id), user in zip(pairs, users, strict=True):
        if user is None and not settings.KAIWA_ALLOW_GUESTS:
            results.append(NotAuthenticated("Log in, or send a Bearer token."))
            continue
        try:
            results.append((user, _room_admission(slug=slug, room=rooms.get((slug, user_id)))))
        except ChatError as exc:
            results.append(exc)
    return results


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
    KAIWA_ROOM_CREATE_RATE_PER_MINUTE (``limits.room_create_allowed``, per
    process; RoomCreateRateLimited, 4429). A guest's budgets are those of his
    IP. A ``dm-`` name is RoomForbidden. Three queries for any number of
    requests: a COUNT of the creators' rooms, one ``INSERT ... ON CONFLICT DO
    NOTHING``, one SELECT. Names must be checked already
    (``room_slug_check``). Database errors propagate.
    """
    counts = _rooms_created_counts(creators={r.creator for r in requests})
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
    if not limits.room_create_allowed(request.creator.key):
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


# Characters a text column cannot hold: NUL (PostgreSQL refuses it in text)
# and lone UTF-16 surrogates (no UTF-8 encoding exists for them).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_storable_check(*, value: str, name: str) -> str:
    """Return ``value`` if a database can store it; raises MessageInvalid
    (``bad_frame``) for a NUL character or a lone surrogate, which PostgreSQL
    refuses: checked before a post joins a batch, so one bad message cannot
    fail the others stored with it."""
    if UNSTORABLE.search(value):
        raise MessageInvalid(
            f"'{name}' holds a character that cannot be stored (NUL or a lone surrogate).",
            code="bad_frame",
        )
    return value


def message_text_check(*, text: object) -> str:
    """Return ``text`` if it is a str of 1 to KAIWA_MAX_MESSAGE_CHARS storable characters.

    Raises MessageInvalid with code ``bad_frame`` (not a string, empty, a NUL
    or a lone surrogate) or ``too_long``.
    """
    if not isinstance(text, str) or not text:
        raise MessageInvalid("'message' must be a non-empty string.", code="bad_frame")
    limit = settings.KAIWA_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise MessageInvalid(f"'message' is longer than {limit} characters.", code="too_long")
    return text_storable_check(value=text, name="message")


def client_id_check(*, client_id: object) -> str | None:
    """Return ``client_id`` (None, or a str of 1 to 64 storable characters); raises MessageInvalid."""
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        raise MessageInvalid("'client_id' must be a string of 1 to 64 characters.")
    return text_storable_check(value=client_id, name="client_id")


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
    author may not post any more (``_posts_refused``: deactivated, or no
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
        refused = _posts_refused(posts)
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
            transaction.on_commit(partial(fanout.publish_message, message, message.room.slug))
            events.message_stored.send(sender=Message, message=message)  # email rows
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


def _posts_refused(posts: Sequence[Post]) -> dict[int, ChatError]:
    """``{index: error}`` of the posts whose author may not post any more:
    a deactivated (or deleted) user (NotAuthenticated), or anyone not a
    member of a room that is private now (RoomForbidden).

    Read in the batch's transaction: a revocation committed before it is
    never missed, whether or not the author's socket has been closed yet
    (``kaiwa.chat.signals``). Two queries, three when a room is private.
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
    revoked = _credentials_revoked([p for p in posts if p.user is not None and p.user.pk in active])
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


def _credentials_revoked(posts: Sequence[Post]) -> set[int]:
    """``id(post)`` of the posts none of whose credentials admits its user any
    more: the session is gone (logout) or belongs to a former password (the
    session hash, as ``django.contrib.auth.get_user`` checks it), and the
    token is gone (revoked, or every token of a password change) or expired.
    Posts without credentials (REST) pass. At most three queries, each only
    when some post carries that kind of credential."""
    checked = [p for p in posts if p.session_key or p.token]
    if not checked:
        return set()
    valid: set[int] = set()
    keys = {p.session_key for p in checked if p.session_key}
    if keys and settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        live = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
        sessions = {s.session_key: s.get_decoded() for s in live}
        users = get_user_model().objects.in_bulk({p.user.pk for p in checked if p.user})
        for post in checked:
            data = sessions.get(post.session_key or "")
            user = users.get(post.user.pk) if post.user is not None else None
            if _session_admits(data, user):
                valid.add(id(post))
    elif keys:
        valid |= {id(p) for p in checked if p.session_key}  # another engine: not checked here
    tokens = {p.token for p in checked if p.token and id(p) not in valid}
    if tokens:
        holders = token_users_get(keys=list(tokens))
        for post in checked:
            holder = holders.get(post.token or "")
            if holder is not None and post.user is not None and holder.pk == post.user.pk:
                valid.add(id(post))
    return {id(p) for p in checked} - valid


def _session_admits(data: dict[str, object] | None, user: User | None) -> bool:
    """Whether the decoded session ``data`` still signs ``user`` in (his id,
    and the hash of his current password, as ``django.contrib.auth.get_user``)."""
    if not data or user is None or str(data.get(auth.SESSION_KEY)) != str(user.pk):
        return False
    stored = data.get(auth.HASH_SESSION_KEY)
    return isinstance(stored, str) and constant_time_compare(stored, user.get_session_auth_hash())


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


def read_seq_check(*, seq: object) -> int:
    """Return ``seq`` if it is a non-negative int; raises MessageInvalid."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise MessageInvalid("'seq' must be a non-negative integer.")
    return seq


def membership_read(*, room: Room, user: User, seq: object, origin: str | None = None) -> int:
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


def dm_open(*, user: User, other_username: object) -> tuple[Room, bool]:
    """The private room of ``user`` and the user named ``other_username``.

    The same room every time, whoever opens it: slug ``dm-<low id>-<high id>``,
    ``created_by`` the user who opened it first. Reopening one is free; a new
    one, or an unknown name, costs a token of ``user``'s room-creation rate
    (``limits.room_create_allowed``), so that an unknown name and a new
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
    if room is None and not limits.room_create_allowed(Creator(user_id=user.pk).key):
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


# --- room events: edit, delete, react (PROTOCOL.md version 2) ---------------------------


def emoji_check(*, emoji: object) -> str:
    """Return ``emoji`` if it is 1 to 32 characters without whitespace
    (PROTOCOL.md section 2); raises MessageInvalid (``bad_frame``)."""
    if not isinstance(emoji, str) or not 1 <= len(emoji) <= 32 or any(c.isspace() for c in emoji):
        raise MessageInvalid("'emoji' must be 1 to 32 characters without whitespace.")
    return text_storable_check(value=emoji, name="emoji")


def _message_live(
    *, room: Room, message_id: int, reacted: tuple[User, str] | None = None
) -> Message:
    """The live message ``message_id`` of ``room`` (read after ``_event_scope``
    locked the room); with ``reacted=(user, emoji)``, its ``reacted``
    attribute says whether that reaction exists (in the same query). Raises
    MessageNotFound."""
    found = Message.objects.select_related("room").filter(
        pk=message_id, room=room, deleted_at__isnull=True
    )
    if reacted is not None:
        user, emoji = reacted
        found = found.annotate(
            reacted=Exists(Reaction.objects.filter(message=OuterRef("pk"), user=user, emoji=emoji))
        )
    message = found.first()
    if message is None:
        raise MessageNotFound("No such message.")
    return message


def _room_seqs_locked(room_ids: list[int]) -> dict[int, int]:
    """Lock the rooms' rows (their seq counters) in id order until commit;
    returns ``{room id: last_seq}``. One statement."""
    rows = Room.objects.select_for_update().filter(pk__in=room_ids).order_by("pk")
    return dict(rows.values_list("pk", "last_seq"))


def _room_seqs_set(seqs: dict[int, int]) -> None:
    """Set each room's ``last_seq`` to ``seqs[room id]`` (rows locked by
    ``_room_seqs_locked``). One statement for any number of rooms."""
    if not seqs:
        return
    ids = sorted(seqs)
    table = connection.ops.quote_name(Room._meta.db_table)
    cases = " ".join(["WHEN %s THEN %s"] * len(ids))
    marks = ", ".join(["%s"] * len(ids))
    params = [value for room_id in ids for value in (room_id, seqs[room_id])] + ids
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = CASE id {cases} END WHERE id IN ({marks})", params
        )


@dataclass
class _EventBatch:
    """The room events of one transaction: each takes its room's next seq as
    it is made, and all are stored together at the end (``store``), with the
    rooms' counters, in two statements."""

    seqs: dict[int, int]  # room id -> last seq taken (the rooms' rows locked)
    events: list[tuple[RoomEvent, str]] = field(default_factory=list)  # (unsaved, room slug)

    def take(
        self, *, room: Room, message: Message, kind: str, username: str, data: dict
    ) -> RoomEvent:
        seq = self.seqs[room.pk] + 1
        self.seqs[room.pk] = seq
        event = RoomEvent(
            room=room, seq=seq, kind=kind, message=message, username=username, data=data
        )
        self.events.append((event, room.slug))
        return event

    def blank_edits(self, message_pk: int) -> None:
        """Empty the edits of a message deleted after them in this batch (as
        ``message_delete`` empties the stored ones)."""
        for event, _ in self.events:
            if event.message_id == message_pk and event.kind == RoomEvent.EDIT:
                event.data = {}

    def store(self) -> None:
        """Insert the events, advance the counters, publish each on commit."""
        if not self.events:
            return
        RoomEvent.objects.bulk_create([event for event, _ in self.events])
        rooms = {event.room_id for event, _ in self.events}
        _room_seqs_set({room: seq for room, seq in self.seqs.items() if room in rooms})
        for event, slug in self.events:
            frame = frames.event_frame(event, slug, event.message_id)
            transaction.on_commit(partial(fanout.publish_frame, slug, event.seq, frame))


# The batch of the running room_event_batch (or single service call).
_event_batch: contextvars.ContextVar[_EventBatch | None] = contextvars.ContextVar(
    "kaiwa_event_batch", default=None
)


@contextmanager
def _event_scope(*, room: Room, user: User | None) -> Iterator[_EventBatch]:
    """Where a room event is made. Inside ``room_event_batch``: its batch,
    which checked access and locked the rooms for all its events at once.
    Alone (REST, the admin): a transaction that raises NotAuthenticated for an
    inactive user and RoomForbidden for a private room ``user`` is not a
    member of (as ``_posts_refused`` does for posts), locks the room's row
    (so that the message read next is the state the event applies to), and
    stores the event at the end."""
    batch = _event_batch.get()
    if batch is not None:
        yield batch
        return
    with transaction.atomic():
        refused = _posts_refused([Post(room=room, user=user, username="", text="")])
        if refused:
            raise refused[0]
        batch = _EventBatch(seqs=_room_seqs_locked([room.pk]))
        token = _event_batch.set(batch)
        try:
            yield batch
        finally:
            _event_batch.reset(token)
        batch.store()


def message_edit(*, room: Room, user: User | None, message_id: object, text: object) -> RoomEvent:
    """Replace the text of ``user``'s message ``message_id`` in ``room``: a
    room event with the room's next seq (PROTOCOL.md ``edit``), the former
    text kept as a ``MessageVersion``. Only the author may edit, within
    KAIWA_EDIT_WINDOW_SECONDS of posting when that is set (0: no window).

    Raises MessageInvalid (bad text), MessageNotFound (unknown, other room,
    deleted), MessageForbidden (not the author, window passed), RoomForbidden (a
    private room left), NotAuthenticated (inactive user).
    """
    text = message_text_check(text=text)
    message_pk = message_id_check(message_id=message_id)
    with _event_scope(room=room, user=user) as batch:
        message = _message_live(room=room, message_id=message_pk)
        if user is None or message.author_id != user.pk:
            raise MessageForbidden("Only its author may edit a message.")
        window = settings.KAIWA_EDIT_WINDOW_SECONDS
        if window > 0 and (timezone.now() - message.created_at).total_seconds() > window:
            raise MessageForbidden("This message can no longer be edited.")
        now = timezone.now()
        MessageVersion.objects.create(
            message=message, text=message.text, since=message.edited_at or message.created_at
        )
        old_text = message.text
        message.text = text
        message.html = message_html_render(text=text, room=room)
        message.edited_at = now
        message.save(update_fields=["text", "html", "edited_at"])
        data = {"message": text, "html": message.html, "edited_at": frames.timestamp(now)}
        event = batch.take(
            room=room, message=message, kind=RoomEvent.EDIT, username=message.username, data=data
        )
        events.message_edited.send(sender=Message, message=message, old_text=old_text)
    return event


def message_delete(*, room: Room, user: User | None, message_id: object) -> RoomEvent:
    """Delete message ``message_id`` of ``room``: its author, or staff, may.
    The row stays as a tombstone (text emptied) and the deletion is a room
    event with the room's next seq; the texts of its edit events and former
    versions are erased too, so that no frame or answer carries them again.

    Raises MessageNotFound, MessageForbidden (not the author nor staff),
    RoomForbidden, NotAuthenticated.
    """
    message_pk = message_id_check(message_id=message_id)
    with _event_scope(room=room, user=user) as batch:
        message = _message_live(room=room, message_id=message_pk)
        staff = user is not None and user.is_staff
        if not staff and (user is None or message.author_id != user.pk):
            raise MessageForbidden("Only its author or staff may delete a message.")
        message.text = message.html = ""
        message.deleted_at = timezone.now()
        message.save(update_fields=["text", "html", "deleted_at"])
        MessageVersion.objects.filter(message=message).delete()
        Reaction.objects.filter(message=message).delete()
        RoomEvent.objects.filter(message=message, kind=RoomEvent.EDIT).update(data={})
        batch.blank_edits(message.pk)
        username = user.username if user is not None else ""
        return batch.take(
            room=room, message=message, kind=RoomEvent.DELETE, username=username, data={}
        )


def reaction_set(
    *, room: Room, user: User | None, message_id: object, emoji: object, on: object
) -> RoomEvent | None:
    """Add (``on`` true) or remove ``user``'s reaction ``emoji`` to message
    ``message_id`` of ``room``: a room event with the room's next seq, or None
    when the reaction already was in that state (a no-op, PROTOCOL.md).

    Raises MessageInvalid (bad emoji or ``on``), MessageNotFound,
    RoomForbidden, NotAuthenticated (also for guests: a reaction is a user's).
    """
    emoji = emoji_check(emoji=emoji)
    if not isinstance(on, bool):
        raise MessageInvalid("'on' must be true or false.")
    if user is None:
        raise NotAuthenticated("Guests cannot react.")
    message_pk = message_id_check(message_id=message_id)
    with _event_scope(room=room, user=user) as batch:
        if on:
            message = _message_live(room=room, message_id=message_pk, reacted=(user, emoji))
            if message.reacted:  # type: ignore[attr-defined]  # annotated by _message_live
                return None
            Reaction.objects.create(message=message, user=user, username=user.username, emoji=emoji)
        else:
            message = _message_live(room=room, message_id=message_pk)
            mine = Reaction.objects.filter(message=message, user=user, emoji=emoji)
            if not mine.delete()[0]:
                return None
        return batch.take(
            room=room,
            message=message,
            kind=RoomEvent.REACTION,
            username=user.username,
            data={"emoji": emoji, "on": on},
        )


@dataclass(frozen=True)
class EventRequest:
    """A room event a socket asks for: ``service`` (``message_edit``,
    ``message_delete`` or ``reaction_set``) and its keyword arguments."""

    service: Callable[..., RoomEvent | None]
    kwargs: dict[str, object]


def room_event_batch(*, requests: Sequence[EventRequest]) -> list[object]:
    """Run the room events of several sockets in one transaction: access is
    checked and the rooms locked once for all (``_event_scope``), each event
    takes its room's next seq in order, and all are stored together at the
    end. Returns, per request, what its service returned or the ChatError it
    raised (a refused request changes nothing: every service raises its
    ChatError before it writes, so no savepoint is needed); a database error
    fails the whole batch (raised)."""
    results: list[object] = []
    with transaction.atomic():
        asked = [
            Post(room=r.kwargs["room"], user=r.kwargs["user"], username="", text="")  # type: ignore[arg-type]
            for r in requests
        ]
        refused = _posts_refused(asked)
        batch = _EventBatch(seqs=_room_seqs_locked(sorted({post.room.pk for post in asked})))
        token = _event_batch.set(batch)
        try:
            for index, request in enumerate(requests):
                if index in refused:
                    results.append(refused[index])
                    continue
                try:
                    results.append(request.service(**request.kwargs))
                except ChatError as exc:
                    results.append(exc)
        finally:
            _event_batch.reset(token)
        batch.store()
    return results


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

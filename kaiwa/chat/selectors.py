"""Reads of the chat app: visible rooms, message pages, the join backlog."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from kaiwa.accounts.selectors import session_user_get, token_users_get
from kaiwa.chat import frames
from kaiwa.chat.errors import (
    ChatError,
    MessageNotFound,
    NotAuthenticated,
    RoomForbidden,
    RoomNotFound,
)
from kaiwa.chat.formatting import message_html
from kaiwa.chat.models import (
    DM_PREFIX,
    Membership,
    Message,
    Reaction,
    Room,
    RoomEvent,
)
from kaiwa.chat.validators import message_id_check, room_slug_check

MESSAGE_PAGE_MAX = 200
ROOM_PAGE_DEFAULT = 200  # rooms per GET /api/rooms/ page without ?limit=
ROOM_PAGE_MAX = 500


def room_list_visible(*, user: User) -> QuerySet[Room]:
    """Rooms ``user`` may see: every public room and the private rooms he is in."""
    return Room.objects.filter(Q(private=False) | Exists(_membership_of(user)))


def _membership_of(user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(room=OuterRef("pk"), user=user)


def room_list_listed(*, user: User) -> QuerySet[Room]:
    """Rooms listed to ``user`` (``GET /api/rooms/``, the ``/chat/`` page):
    those he may see, less the direct messages nobody has written in yet
    that someone else opened. Opening a conversation tells its recipient
    nothing until something is said; he may still enter it."""
    unsaid = Q(slug__startswith=DM_PREFIX, last_seq=0) & ~Q(created_by=user)
    return room_list_visible(user=user).exclude(unsaid)


def room_title_for(*, room: Room, user: User) -> str:
    """The title ``user`` sees for ``room``: its ``title`` (or slug), and for a
    direct message the other people's usernames, without ``user``'s own (a
    DM's title lists both, as ``dm_open`` stored it; usernames hold no ", ").

    Returns a string of at most 200 characters; raises nothing."""
    if not room.title:
        return room.slug
    if room.slug.startswith(DM_PREFIX):
        others = [name for name in room.title.split(", ") if name != user.username]
        return ", ".join(others) or user.username
    return room.title


def room_page(*, user: User, after: str | None, limit: int) -> tuple[list[Room], str | None]:
    """Up to ``limit`` rooms listed to ``user`` (``room_list_listed``) with a
    slug after ``after`` (None: from the first), in slug order, and the
    cursor of the next page: the last slug returned, None on the last page.
    Keyset pagination: a page costs the same wherever it starts."""
    rooms = room_list_listed(user=user).order_by("slug")
    if after is not None:
        rooms = rooms.filter(slug__gt=after)
    page = list(rooms[: limit + 1])
    return page[:limit], page[limit - 1].slug if len(page) > limit else None


def room_member_count(*, room_id: int) -> int:
    """How many members the room has (one query)."""
    return Membership.objects.filter(room_id=room_id).count()


def presence_rooms(*, user_ids: list[int], max_members: int) -> list[tuple[int, str, str]]:
    """``[(user id, username, room slug)]`` for every membership of
    ``user_ids`` in a room of at most ``max_members`` members: where their
    ``presence`` frames go (PROTOCOL.md section 3). Two queries."""
    rows = list(
        Membership.objects.filter(user_id__in=user_ids).values_list(
            "user_id", "user__username", "room_id", "room__slug"
        )
    )
    large = set(
        Membership.objects.filter(room_id__in={room for _, _, room, _ in rows})
        .values("room_id")
        .annotate(n=Count("id"))
        .filter(n__gt=max_members)
        .values_list("room_id", flat=True)
    )
    return [(user, name, slug) for user, name, room, slug in rows if room not in large]


def room_members(*, room: Room) -> list[tuple[int, str]]:
    """``[(user id, username)]`` of the room's members, by username (one query)."""
    return list(
        Membership.objects.filter(room=room)
        .order_by("user__username")
        .values_list("user_id", "user__username")
    )


def room_unread_counts(*, user: User, room_ids: list[int]) -> dict[int, tuple[int, int]]:
    """``{room id: (unread, mentions)}`` for ``user`` in the rooms he is a
    member of among ``room_ids`` (PROTOCOL.md section 5): messages after his
    read position that are neither his nor deleted, and those of them whose
    html marks a mention of him. One query for all rooms."""
    if not room_ids:
        return {}
    q = connection.ops.quote_name
    marks = ", ".join(["%s"] * len(room_ids))
    # kaiwa.chat.formatting spells data-username as the member's username.
    name = user.get_username().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    mention = f'%data-username="{name}"%'
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.room_id, COUNT(*), "
            "COALESCE(SUM(CASE WHEN m.html LIKE %s ESCAPE '\\' THEN 1 ELSE 0 END), 0) "
            f"FROM {q(Message._meta.db_table)} m "
            f"JOIN {q(Membership._meta.db_table)} ms "
            "ON ms.room_id = m.room_id AND ms.user_id = %s "
            f"WHERE m.room_id IN ({marks}) AND m.seq > ms.last_read_seq "
            "AND m.deleted_at IS NULL AND (m.author_id IS NULL OR m.author_id <> %s) "
            "GROUP BY m.room_id",
            [mention, user.pk, *room_ids, user.pk],
        )
        return {room_id: (unread, mentions) for room_id, unread, mentions in cursor.fetchall()}


def room_list_index(*, user: User) -> QuerySet[Room]:
    """Rooms listed to ``user`` with ``mine`` (bool: he is a member), his
    first, then by slug: what the ``/chat/`` page pages through."""
    rooms = room_list_listed(user=user).annotate(mine=Exists(_membership_of(user)))
    return rooms.order_by("-mine", "slug")


def room_get_visible(*, user: User, slug: str) -> Room:
    """The room ``slug`` if ``user`` may see it.

    Raises RoomNotFound for a bad name, an unknown room, and a private room
    ``user`` is not in: a stranger learns nothing about a private room.
    """
    room_slug_check(slug=slug)
    room = room_list_visible(user=user).filter(slug=slug).first()
    if room is None:
        raise RoomNotFound("No such room.")
    return room


def message_get_visible(*, user: User, message_id: object) -> Message:
    """The message ``message_id`` (deleted ones included) if ``user`` may see
    its room; raises MessageNotFound otherwise, alike for an unknown id and
    a message of a private room he is not in."""
    message = (
        Message.objects.select_related("room")
        .filter(pk=message_id_check(message_id=message_id))
        .first()
    )
    if message is None or not room_list_visible(user=user).filter(pk=message.room_id).exists():
        raise MessageNotFound("No such message.")
    return message


def message_versions(*, message: Message) -> list[dict[str, Any]]:
    """``GET /api/messages/<id>/history``: ``[{"message", "html", "edited_at"}]``
    oldest first, the original included (its ``edited_at`` is null) and the
    current text last. Raises MessageNotFound for a deleted message.

    Bounded whatever is stored: at most KAIWA_MAX_EDITS_PER_MESSAGE + 1
    versions, the original and the latest (versions stored under a higher
    cap, or before there was one, are left out from the middle). Each
    version's ``html`` is the one stored with it; only a version stored
    before that column is rendered, and only when it is in the answer. Two
    queries."""
    if message.deleted_at is not None:
        raise MessageNotFound("No such message.")
    latest = max(0, settings.KAIWA_MAX_EDITS_PER_MESSAGE - 1)
    first = list(message.versions.all()[:1])
    rest = list(message.versions.exclude(pk__in=[v.pk for v in first]).reverse()[:latest])
    versions = [(v.text, v.html, v.since) for v in [*first, *rest[::-1]]]
    texts = [*versions, (message.text, message.html, message.edited_at)]
    result = []
    for index, (text, html, since) in enumerate(texts):
        edited = None if index == 0 or since is None else frames.timestamp(since)
        html = html or message_html(text=text)
        result.append({"message": text, "html": html, "edited_at": edited})
    return result


def message_list(
    *, room: Room, after: int | None = None, before: int | None = None, limit: int = 50
) -> list[Message]:
    """Up to ``limit`` messages of ``room``, ascending ``seq``, deleted ones
    included as tombstones (their text is empty).

    With ``after``, the first ``limit`` with seq > after; otherwise the last
    ``limit`` (with seq < before when given).
    """
    qs = Message.objects.filter(room=room)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    if after is not None:
        return list(qs.filter(seq__gt=after).order_by("seq")[:limit])
    return list(reversed(qs.order_by("-seq")[:limit]))


def reactions_of(*, message_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """``{message id: [{"emoji", "count", "usernames"}]}`` for the messages
    that have reactions (one query)."""
    if not message_ids:
        return {}
    rows: dict[int, list[tuple[str, str]]] = {}
    for message_id, emoji, username in Reaction.objects.filter(
        message_id__in=message_ids
    ).values_list("message_id", "emoji", "username"):
        rows.setdefault(message_id, []).append((emoji, username))
    return {m: frames.reaction_summaries(r) for m, r in rows.items()}


def message_payloads(*, messages: list[Message], room_slug: str) -> list[dict[str, Any]]:
    """The message objects of ``messages`` in their current state, reactions
    included (one query for all)."""
    reactions = reactions_of(message_ids=[m.pk for m in messages if m.deleted_at is None])
    return [frames.message_payload(m, room_slug, reactions.get(m.pk)) for m in messages]


def room_event_frames(
    *, room_id: int, room_slug: str, after: int, before: int
) -> list[tuple[int, str]]:
    """Every stored room event of the room with after < seq < before, as
    ``(seq, frame)`` ascending (PROTOCOL.md section 4): messages in their
    current state, edits, deletions and reactions as stored. Three queries.
    A seq with no row (a message row deleted outside the services) is left
    out: callers that know it was committed treat it as a hole."""
    messages = list(
        Message.objects.filter(room_id=room_id, seq__gt=after, seq__lt=before).order_by("seq")
    )
    found = [
        (p["seq"], frames.encode(p))
        for p in message_payloads(messages=messages, room_slug=room_slug)
    ]
    events = RoomEvent.objects.filter(room_id=room_id, seq__gt=after, seq__lt=before)
    found += [(e.seq, frames.event_frame(e, room_slug, e.message_id)) for e in events]
    return sorted(found)


@dataclass(frozen=True)
class Backlog:
    """What a joining socket is sent before ``ready``.

    ``frames``: encoded room events, ascending seq; ``reset_seq``: set when
    the client must reload over REST instead; ``latest_seq``: the room's seq
    when read.
    """

    frames: list[str]
    reset_seq: int | None
    latest_seq: int


def message_backlog(*, room: Room, after: int | None) -> Backlog:
    """The backlog of PROTOCOL.md section 1 for a socket joining ``room``.

    Without ``after``: the last KAIWA_BACKLOG_MESSAGES messages in their
    current state, deleted ones left out. With ``after``: every room event
    with seq > after (``room_event_frames``), or a reset when more than
    KAIWA_RESUME_LIMIT are missing, ``after`` is past the room's seq, or
    retention deleted some of what it asks for (``after`` below the room's
    ``purged_seq``, kaiwa.chat.retention).
    """
    latest, purged = Room.objects.values_list("last_seq", "purged_seq").get(pk=room.pk)
    if after is None:
        # Bounded by `latest`: an event committed since belongs to the live
        # stream, which delivers every seq above `latest` exactly once.
        live = Message.objects.filter(room=room, seq__lte=latest, deleted_at__isnull=True)
        messages = list(reversed(live.order_by("-seq")[: settings.KAIWA_BACKLOG_MESSAGES]))
        payloads = message_payloads(messages=messages, room_slug=room.slug)
        return Backlog([frames.encode(p) for p in payloads], None, latest)
    if after > latest or after < purged or latest - after > settings.KAIWA_RESUME_LIMIT:
        return Backlog([], latest, latest)
    events = room_event_frames(room_id=room.pk, room_slug=room.slug, after=after, before=latest + 1)
    return Backlog([f for _, f in events], None, latest)


def room_event_range(*, room_slug: str, after: int, before: int) -> list[tuple[int, str]]:
    """``room_event_frames`` of the room named ``room_slug``: gap filling."""
    room_id = Room.objects.values_list("pk", flat=True).get(slug=room_slug)
    return room_event_frames(room_id=room_id, room_slug=room_slug, after=after, before=before)


def room_snapshots(
    *, requests: Sequence[tuple[str, int]]
) -> list[tuple[int, list[tuple[int, str]], int] | RoomNotFound]:
    """What a room feed opens with, for each ``(slug, limit)`` of
    ``requests``, in order: the room's latest seq, its last ``limit`` room
    events with seq <= it as ``(seq, frame)`` ascending
    (``room_event_frames``; none at or below the room's ``purged_seq``), and
    that ``purged_seq``; or RoomNotFound for an unknown room. The feeds that
    open together (a connect storm opens hundreds) share one query for their
    rooms, written in SQL (compiling the ORM's costs about a millisecond of
    Python); then ``room_event_frames`` (three queries) runs for each room
    that has events to remember."""
    slugs = sorted({slug for slug, _ in requests})
    rows: dict[str, tuple[int, int, int]] = {}
    q = connection.ops.quote_name
    for start in range(0, len(slugs), SNAPSHOT_ROOMS_MAX):
        part = slugs[start : start + SNAPSHOT_ROOMS_MAX]
        marks = ", ".join(["%s"] * len(part))
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT slug, id, last_seq, purged_seq FROM {q(Room._meta.db_table)} "
                f"WHERE slug IN ({marks})",
                part,
            )
            for slug, room_id, latest, purged in cursor.fetchall():
                rows[slug] = (room_id, latest, purged)
    results: list[tuple[int, list[tuple[int, str]], int] | RoomNotFound] = []
    for slug, limit in requests:
        row = rows.get(slug)
        if row is None:
            results.append(RoomNotFound("No such room."))
            continue
        room_id, latest, purged = row
        if limit <= 0 or latest == 0:
            results.append((latest, [], purged))
            continue
        after = max(purged, latest - limit)
        recent = room_event_frames(room_id=room_id, room_slug=slug, after=after, before=latest + 1)
        results.append((latest, recent, purged))
    return results


SNAPSHOT_ROOMS_MAX = 500  # rooms per query: SQLite allows 999 parameters at least


def room_last_seqs(*, slugs: list[str]) -> dict[str, tuple[int, int]]:
    """``{slug: (last_seq, purged_seq)}`` of the rooms named in ``slugs``
    (unknown ones left out). One query."""
    rows = Room.objects.filter(slug__in=slugs).values_list("slug", "last_seq", "purged_seq")
    return {slug: (last_seq, purged) for slug, last_seq, purged in rows}


SEARCH_WORDS_MAX = 10  # words of a query used (web-search's ``or`` and ``-word`` included)


def message_search(
    *, user: User, query: str, room: Room | None = None, limit: int = 20
) -> list[Message]:
    """``GET /api/search/``: up to ``limit`` messages matching ``query`` in
    the rooms ``user`` can see (only ``room`` when given), deleted ones never.

    PostgreSQL: full-text search (``django.contrib.postgres.search``, the
    ``simple`` configuration, so any language is split on words; web-search
    syntax: ``"a phrase"``, ``-word``, ``or``), best matches first, on the GIN
    index of migration 0006. SQLite: every word of the query must appear in
    the text, case-insensitively for ASCII letters (SQLite's LIKE), newest
    first. Either way only the first SEARCH_WORDS_MAX words count: each term
    is one more index scan (or one more LIKE), and ``q`` is rate-limited per
    user but 200 characters hold a hundred terms.
    """
    words = query.split()[:SEARCH_WORDS_MAX]
    messages = Message.objects.filter(
        room__in=room_list_visible(user=user), deleted_at__isnull=True
    ).select_related("room")
    if room is not None:
        messages = messages.filter(room=room)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        document = SearchVector("text", config="simple")
        found = SearchQuery(" ".join(words), config="simple", search_type="websearch")
        ranked = messages.annotate(document=document, rank=SearchRank(document, found))
        return list(ranked.filter(document=found).order_by("-rank", "-created_at")[:limit])
    for word in words:
        messages = messages.filter(text__icontains=word)
    return list(messages.order_by("-created_at", "-pk")[:limit])


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

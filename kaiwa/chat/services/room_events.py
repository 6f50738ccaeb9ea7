"""Room events on a message (PROTOCOL.md section 3): edit, delete, react.

Each takes the room's next ``seq`` under the room's lock, is stored as a
``RoomEvent`` and broadcast on commit."""

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from kaiwa.chat import frames, signals
from kaiwa.chat.errors import (
    ChatError,
    MessageCapReached,
    MessageForbidden,
    MessageInvalid,
    MessageNotFound,
    NotAuthenticated,
)
from kaiwa.chat.models import (
    Message,
    MessageVersion,
    Reaction,
    Room,
    RoomEvent,
)
from kaiwa.chat.realtime import publish
from kaiwa.chat.services.messages import Post, message_html_render, posts_refused
from kaiwa.chat.validators import emoji_check, message_id_check, message_text_check


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
            transaction.on_commit(partial(publish.publish_frame, slug, event.seq, frame))


# The batch of the running room_event_batch (or single service call).
_event_batch: contextvars.ContextVar[_EventBatch | None] = contextvars.ContextVar(
    "kaiwa_event_batch", default=None
)


def _moderator_check(user: User | None) -> None:
    """Raise MessageForbidden unless ``user`` is active staff now (read in the
    write transaction, as ``posts_refused`` reads a poster)."""
    staff = get_user_model().objects.filter(is_active=True, is_staff=True)
    if user is None or not staff.filter(pk=user.pk).exists():
        raise MessageForbidden("Only staff moderate rooms they are not members of.")


@contextmanager
def _event_scope(
    *, room: Room, user: User | None, moderation: bool = False
) -> Iterator[_EventBatch]:
    """Where a room event is made. Inside ``room_event_batch``: its batch,
    which checked access and locked the rooms for all its events at once.
    Alone (REST, the admin): a transaction that raises NotAuthenticated for an
    inactive user and RoomForbidden for a private room ``user`` is not a
    member of (as ``posts_refused`` does for posts), locks the room's row
    (so that the message read next is the state the event applies to), and
    stores the event at the end. With ``moderation`` (the admin), active
    staff need no membership and anyone else gets MessageForbidden."""
    batch = _event_batch.get()
    if batch is not None:
        yield batch
        return
    with transaction.atomic():
        if moderation:
            _moderator_check(user)
        elif refused := posts_refused([Post(room=room, user=user, username="", text="")]):
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
    deleted), MessageForbidden (not the author, window passed),
    MessageCapReached (edited KAIWA_MAX_EDITS_PER_MESSAGE times already),
    RoomForbidden (a private room left), NotAuthenticated (inactive user).
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
        _edit_cap_check(message=message)
        now = timezone.now()
        MessageVersion.objects.create(
            message=message,
            text=message.text,
            html=message.html,  # as rendered then: the history renders nothing
            since=message.edited_at or message.created_at,
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
        signals.message_edited.send(sender=Message, message=message, old_text=old_text)
    return event


def message_delete(
    *, room: Room, user: User | None, message_id: object, moderation: bool = False
) -> RoomEvent:
    """Delete message ``message_id`` of ``room``: its author, or staff, may.
    The row stays as a tombstone (text emptied) and the deletion is a room
    event with the room's next seq; the texts of its edit events and former
    versions are erased too, so that no frame or answer carries them again.

    ``moderation`` (the admin's deletions): staff delete in any room, private
    ones they are not members of included; no socket or REST call sets it.

    Raises MessageNotFound, MessageForbidden (not the author nor staff),
    RoomForbidden, NotAuthenticated.
    """
    message_pk = message_id_check(message_id=message_id)
    with _event_scope(room=room, user=user, moderation=moderation) as batch:
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
    MessageCapReached (a new distinct emoji beyond
    KAIWA_MAX_REACTIONS_PER_MESSAGE), RoomForbidden, NotAuthenticated (also
    for guests: a reaction is a user's).
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
            _reaction_cap_check(message=message, emoji=emoji)
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


def _edit_cap_check(*, message: Message) -> None:
    """Raise MessageCapReached when ``message`` has been edited
    KAIWA_MAX_EDITS_PER_MESSAGE times (each edit keeps a version, and 300
    slow-to-parse versions made each history request cost a minute, issue
    22 #1). One count, under the room's lock."""
    cap = settings.KAIWA_MAX_EDITS_PER_MESSAGE
    if MessageVersion.objects.filter(message=message).count() >= cap:
        raise MessageCapReached(
            f"This message was edited {cap} times, the most one may be; post a new one."
        )


def _reaction_cap_check(*, message: Message, emoji: str) -> None:
    """Raise MessageCapReached when ``emoji`` would be a new distinct emoji
    on ``message`` beyond KAIWA_MAX_REACTIONS_PER_MESSAGE (a message's
    reactions ride in every join's backlog and page load). One query,
    reading at most the cap's number of rows, under the room's lock."""
    cap = settings.KAIWA_MAX_REACTIONS_PER_MESSAGE
    held = (  # ordered by emoji alone: Meta.ordering's columns would undo the DISTINCT
        Reaction.objects.filter(message=message)
        .order_by("emoji")
        .values_list("emoji", flat=True)
        .distinct()
    )
    emojis = set(held[: cap + 1])
    if emoji not in emojis and len(emojis) >= cap:
        raise MessageCapReached(
            f"This message has {cap} different reactions, the most it may hold; add one of those."
        )


@dataclass(frozen=True)
class EventRequest:
    """A room event a socket asks for: ``service`` (``message_edit``,
    ``message_delete`` or ``reaction_set``) and its keyword arguments
    (``room`` and ``user`` among them).

    ``session_key`` and ``token``: the credentials of the socket that asks,
    as a ``Post`` has them (``kaiwa.accounts.selectors.Credentialed``): the
    write transaction runs the event only if one of them still admits its
    user, so nothing is stored after a logout, a password change or a
    token's revocation, even before the socket's close. None for neither
    (REST, the admin: authenticated a moment ago)."""

    service: Callable[..., RoomEvent | None]
    kwargs: dict[str, object]
    session_key: str | None = None
    token: str | None = None


def room_event_batch(*, requests: Sequence[EventRequest]) -> list[object]:
    """Run the room events of several sockets in one transaction: access
    (the user, the room, and the socket's credentials, as ``posts_refused``
    checks a post's) is checked and the rooms locked once for all
    (``_event_scope``), each event
    takes its room's next seq in order, and all are stored together at the
    end. Returns, per request, what its service returned or the ChatError it
    raised (a refused request changes nothing: every service raises its
    ChatError before it writes, so no savepoint is needed); a database error
    fails the whole batch (raised)."""
    results: list[object] = []
    with transaction.atomic():
        asked = [
            Post(
                room=r.kwargs["room"],  # type: ignore[arg-type]
                user=r.kwargs["user"],  # type: ignore[arg-type]
                username="",
                text="",
                session_key=r.session_key,
                token=r.token,
            )
            for r in requests
        ]
        refused = posts_refused(asked)
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

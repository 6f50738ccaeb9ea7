"""Rooms, memberships and messages.

A room's ``last_seq`` is its sequence counter: ``message_create_batch``
(behind ``message_create`` and the socket writer) raises it by the number of
messages it stores in the room, under the room's row lock, in the transaction
that inserts them, so ``seq`` is gapless per room whatever the number of
processes.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

ROOM_SLUG_PATTERN = r"[A-Za-z0-9_-]{1,64}"
room_slug_validator = RegexValidator(
    rf"^{ROOM_SLUG_PATTERN}\Z", "1 to 64 characters of letters, digits, '_' and '-'."
)
# Direct-message rooms are named dm-<low user id>-<high user id>; no public
# room is ever created under this prefix, so every dm- name a user is not in
# answers alike (4403, 404), whether it exists or not.
DM_PREFIX = "dm-"


class Room(models.Model):
    slug = models.CharField(max_length=64, unique=True, validators=[room_slug_validator])
    title = models.CharField(max_length=200, blank=True)
    private = models.BooleanField(default=False)
    last_seq = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # Who made the room: the per-user (or, for guests, per-IP) room budget
    # counts these rows (services.room_create_batch); an empty direct message
    # is listed to its opener only (selectors.room_list_listed).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rooms_created",
    )
    created_from_ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    # Retention (kaiwa.chat.retention): days this room keeps its messages;
    # None: KAIWA_RETENTION_DAYS; 0: forever, whatever the global setting.
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days messages are kept in this room. Empty: KAIWA_RETENTION_DAYS; 0: forever.",
    )
    # Every room event with seq <= purged_seq was deleted by retention (a few
    # messages may stay, see kaiwa.chat.retention): a resume from below it
    # gets ``reset``.
    purged_seq = models.PositiveBigIntegerField(default=0)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="rooms"
    )
    # Not a column: the joining user's read position, set by services.room_join.
    read_seq: int | None = None

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_direct(self) -> bool:
        """True for the private room of two users opened by ``POST /api/dms/``."""
        return self.private and self.slug.startswith(DM_PREFIX)


class Membership(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    last_read_seq = models.PositiveBigIntegerField(default=0)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_room_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept on the row: guests have no user, and a frame needs no join to build.
    username = models.CharField(max_length=150)
    text = models.TextField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The text rendered from its Markdown subset (kaiwa.chat.formatting), at
    # write time: frames and REST answers never render.
    html = models.TextField(default="", blank=True)
    # Set by the last edit (services.message_edit); None until edited.
    edited_at = models.DateTimeField(null=True, blank=True)
    # A deleted message stays as a tombstone (its text emptied) so that seq
    # never has a hole and no feed waits for a row that will not come.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "username", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="message_room_author_client_id_unique",
            ),
        ]
        # Retention finds a room's messages older than its cutoff (kaiwa.chat.retention).
        indexes = [models.Index(fields=["room", "created_at"], name="message_room_created")]

    def __str__(self) -> str:
        return f"{self.room.slug}#{self.seq} {self.username}"


class RoomEvent(models.Model):
    """A stored room event other than a message (PROTOCOL.md section 4): an
    edit, a deletion or a reaction change. It takes the room's next ``seq``
    like a message, from the same counter (``Room.last_seq``), so messages
    and events together number 1, 2, 3... with no gap.

    ``data``: for an edit ``{"message", "html", "edited_at"}`` (emptied when
    the message is deleted later: no frame carries a deleted text again);
    for a reaction ``{"emoji", "on"}``; for a deletion ``{}``. ``username``
    is the author (edit) or the reactor (reaction) or who deleted it.
    """

    EDIT = "edit"
    DELETE = "delete"
    REACTION = "reaction"
    KINDS = [(EDIT, "edit"), (DELETE, "delete"), (REACTION, "reaction")]

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=16, choices=KINDS)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    username = models.CharField(max_length=150)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="roomevent_room_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} {self.kind}"


class MessageVersion(models.Model):
    """An earlier text of an edited message (Zulip's ``edit_history``): the
    original and each replaced text, with when it became the text.

    ``html``: that text as it was rendered when it was the message's (the
    message's ``html``, kept by the edit that replaced it), so that the
    history is never rendered on a request; empty on versions stored
    before this column (migration 0008)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="versions")
    text = models.TextField()
    html = models.TextField(default="", blank=True)
    since = models.DateTimeField()  # created_at of the original, else the edit's time

    class Meta:
        ordering = ["message", "since", "id"]

    def __str__(self) -> str:
        return f"{self.message_id} since {self.since:%Y-%m-%d %H:%M}"


class Reaction(models.Model):
    """One user's reaction with one emoji to one message (PROTOCOL.md: one per
    user, message and emoji)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    username = models.CharField(max_length=150)
    emoji = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["message", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="reaction_message_user_emoji_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.username} {self.emoji} on {self.message_id}"


class RelayedEvent(models.Model):
    """A fan-out control event written by a process that shares no channel
    layer with the server (a shell or management command on embedded
    defaults, where the layer is in-memory): the server's hub reads these rows
    every KAIWA_SEQ_CHECK_SECONDS and applies them (kaiwa.chat.realtime.relay), so that
    a revocation made there still closes the sockets within seconds. Rows
    older than a minute are deleted."""

    event = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.pk} {self.event.get('type')}"

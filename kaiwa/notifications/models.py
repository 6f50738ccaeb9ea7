"""Missed-message notifications: the pending rows, and the emails that carried them.

A ``MissedMessage`` row is written in the very transaction that stores a
message mentioning a member of its room, or a direct message: it is the only
record that the user may need an email, never a Celery countdown or process
memory. ``kaiwa.notifications.services.missed_message_email_send`` claims a
user's pending rows with ``SELECT ... FOR UPDATE SKIP LOCKED``, re-checks
them, sends one email and marks them, all in one transaction; a
``MissedMessageEmail`` row records each email sent.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from kaiwa.chat.models import Message, Room


class MissedMessage(models.Model):
    """One message ``user`` should hear about by email unless he reads it first."""

    # Single values (labels come from the names) keep mypy, which runs without
    # the Django plugin, seeing plain strings.
    class Reason(models.TextChoices):
        MENTION = "mention"
        DIRECT = "dm"

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"  # listed in ``email``
        SKIPPED = "skipped"  # dropped by the re-check: see ``skip_reason``

    class Skip(models.TextChoices):
        READ = "read"  # read before the email was sent
        DELETED = "deleted"  # the message was deleted
        NOT_MEMBER = "not_member"  # the user left the room
        INACTIVE = "inactive"  # the user was deactivated
        NO_ADDRESS = "no_address"  # the user has no email address
        REFUSED = "refused"  # the SMTP server refused the address or, for good, the email

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="missed_messages"
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    # SET_NULL, not CASCADE: a deleted message leaves the row, skipped as "deleted".
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    skip_reason = models.CharField(max_length=16, choices=Skip.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The batching window of this row closes at due_at (created_at plus
    # KAIWA_EMAIL_BATCH_SECONDS); a user's batch is due with its oldest row.
    due_at = models.DateTimeField()
    email = models.ForeignKey(
        "MissedMessageEmail",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="missed_messages",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "message"], name="missedmessage_user_message_unique"
            )
        ]
        indexes = [
            # Only pending rows are ever searched; sent and skipped rows are history.
            models.Index(
                fields=["due_at"], condition=Q(state="pending"), name="missedmessage_pending_due"
            ),
            models.Index(
                fields=["user"], condition=Q(state="pending"), name="missedmessage_pending_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} <- {self.room}#{self.message_id} ({self.reason}, {self.state})"


class MissedMessageEmail(models.Model):
    """One missed-message email, written in the transaction that sent it.

    ``message_id`` is its RFC 5322 ``Message-ID`` header (with the angle
    brackets): ``<kaiwa.missed.<user id>.<first row id>@<KAIWA_BASE_URL host>>``.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="missed_message_emails"
    )
    message_id = models.CharField(max_length=255, unique=True)
    to = models.EmailField(max_length=254)
    subject = models.CharField(max_length=255)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self) -> str:
        return f"{self.to}: {self.subject}"

"""Writes of the notifications app: queueing missed messages, sending their emails.

The design, after Zulip's missed-message emails and its
``deliver_scheduled_emails`` (rows claimed ``FOR UPDATE SKIP LOCKED`` and
marked in the transaction that sends them):

- ``missed_messages_queue`` runs inside the transaction that stores a
  message (``receivers``, on the chat app's ``message_stored`` event): a
  mention or DM row commits with its message or not at all. Each row is due
  ``KAIWA_EMAIL_BATCH_SECONDS`` after it is written; on commit the receiver
  schedules a wake-up at that time (``tasks.missed_message_wake_up``).
- ``missed_message_email_send`` sends a user's batch once its oldest pending
  row is due: it locks the user's pending rows, re-checks each (read since?
  message deleted? still a member?), sends one email listing the rest, and
  marks them sent, in one transaction that commits only after the SMTP
  server accepted the email.

What that guarantees: a row is listed in at most one committed email, and a
worker that dies before the SMTP server accepted the email (killed, network
cut, SMTP error) leaves its rows pending for the retry or the next sweep,
because the database rolls back the transaction of a dead connection. The
one window left is between the server's acceptance and our COMMIT (a
millisecond or so): a crash or a database failure exactly there sends the
email again on retry, with the same ``Message-ID``, which mail clients use
to drop duplicates. Exactly-once across SMTP and a database is not possible
without the mail server's cooperation; this is the narrowest window.
"""

import logging
import smtplib
from collections import OrderedDict
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from kaiwa import metrics
from kaiwa.chat.models import Membership, Message

from . import selectors
from .models import MissedMessage, MissedMessageEmail

logger = logging.getLogger(__name__)


def missed_messages_queue(
    *, message: Message, already: Collection[int] = ()
) -> list[MissedMessage]:
    """Record who should get an email about the new ``message``, if unread in time.

    Call inside the transaction that stores ``message`` (the receiver of
    ``kaiwa.chat.signals.message_stored`` does). Writes one pending row per
    recipient (see ``selectors.missed_message_recipients``), due
    KAIWA_EMAIL_BATCH_SECONDS (seconds) from now. Returns the rows written
    (empty for most messages, at no query cost); the caller schedules their
    wake-ups (``tasks.missed_message_wake_up``) on commit.
    """
    recipients = selectors.missed_message_recipients(message=message)
    for user_id in already:  # an edit: who the former text notified already
        recipients.pop(user_id, None)
    if not recipients:
        return []
    now = timezone.now()
    due_at = now + timedelta(seconds=settings.KAIWA_EMAIL_BATCH_SECONDS)
    rows = MissedMessage.objects.bulk_create(
        MissedMessage(
            user_id=user_id,
            room_id=message.room_id,
            message=message,
            reason=reason,
            created_at=now,
            due_at=due_at,
        )
        for user_id, reason in recipients.items()
    )
    return rows


def missed_message_email_send(
    *, user_id: int, now: datetime | None = None
) -> MissedMessageEmail | None:
    """Send user ``user_id`` one email listing his pending missed messages, if due.

    The batch is due when its oldest pending row's ``due_at`` is at or
    before ``now`` (a datetime, default the current time); it then lists
    every pending row of the user that survives the re-check. Rows locked by
    another worker are skipped (``SKIP LOCKED``), so two workers never list
    the same row. Rows read, deleted, or out of the user's rooms since are
    marked skipped. Returns the ``MissedMessageEmail`` sent, or None when
    nothing was due or nothing survived.

    Raises what the email backend raises (``smtplib.SMTPException``,
    ``OSError``) and database errors; the transaction is then rolled back
    and every row stays pending, for the task's retry. A recipient the SMTP
    server refuses is not retried: its rows are skipped as ``refused``.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            MissedMessage.objects.select_for_update(skip_locked=True)
            .filter(user_id=user_id, state=MissedMessage.State.PENDING)
            .order_by("id")
        )
        if not rows or min(row.due_at for row in rows) > now:
            return None
        user = get_user_model().objects.filter(pk=user_id).first()
        if user is None:  # deleted meanwhile: his rows go with him
            return None
        keep = _missed_messages_recheck(user=user, rows=rows)
        if not keep:
            return None
        return _missed_message_email_deliver(user=user, rows=keep)


def _missed_messages_recheck(*, user: User, rows: list[MissedMessage]) -> list[MissedMessage]:
    """Mark skipped the rows the user need not hear about any more; return the rest.

    Each kept row has ``message`` loaded (with its room).
    """
    messages = Message.objects.select_related("room").in_bulk(
        [row.message_id for row in rows if row.message_id is not None]
    )
    read = dict(
        Membership.objects.filter(user=user, room_id__in={row.room_id for row in rows}).values_list(
            "room_id", "last_read_seq"
        )
    )
    keep, skipped = [], []
    for row in rows:
        message = messages.get(row.message_id) if row.message_id is not None else None
        row.skip_reason = _skip_reason(user=user, message=message, read_seq=read.get(row.room_id))
        if row.skip_reason:
            skipped.append(row)
        else:
            row.message = message
            keep.append(row)
    _missed_messages_mark(rows=skipped, state=MissedMessage.State.SKIPPED)
    return keep


def _skip_reason(*, user: User, message: Message | None, read_seq: int | None) -> str:
    """Why a row must not be emailed any more ('' when it must)."""
    if not user.is_active:
        return MissedMessage.Skip.INACTIVE
    if not user.email:
        return MissedMessage.Skip.NO_ADDRESS
    if message is None or message.deleted_at is not None:  # gone, or a tombstone
        return MissedMessage.Skip.DELETED
    if read_seq is None:
        return MissedMessage.Skip.NOT_MEMBER
    if read_seq >= message.seq:
        return MissedMessage.Skip.READ
    return ""


def _missed_messages_mark(
    *, rows: list[MissedMessage], state: str, email: MissedMessageEmail | None = None
) -> None:
    for row in rows:
        row.state = state
        row.email = email
        if state == MissedMessage.State.SENT:
            row.skip_reason = ""
    MissedMessage.objects.bulk_update(rows, ["state", "skip_reason", "email"])


def _missed_message_email_deliver(
    *, user: User, rows: list[MissedMessage]
) -> MissedMessageEmail | None:
    """Build, record and send the email listing ``rows``; mark them sent (or refused)."""
    email = missed_message_email_build(user=user, rows=rows)
    record = MissedMessageEmail.objects.create(
        user=user,
        message_id=email.extra_headers["Message-ID"],
        to=user.email,
        subject=email.subject[:255],
    )
    try:
        email.send()
    except smtplib.SMTPRecipientsRefused:
        # A permanent answer about this address: retrying cannot help.
        logger.warning("missed-message email to %s refused; %d rows skipped", user.pk, len(rows))
        _missed_message_email_refused(record=record, rows=rows)
        return None
    except smtplib.SMTPResponseException as exc:
        if exc.smtp_code < 500:  # 4xx: temporary, the task retries
            raise
        # 5xx (552 too large, 554 rejected ...): permanent for this email. Give
        # it up, so that it never blocks the user's next notifications.
        logger.warning(
            "missed-message email to %s refused for good (%d %r); %d rows skipped",
            user.pk,
            exc.smtp_code,
            exc.smtp_error,
            len(rows),
        )
        _missed_message_email_refused(record=record, rows=rows)
        return None
    _missed_messages_mark(rows=rows, state=MissedMessage.State.SENT, email=record)
    metrics.MISSED_MESSAGE_EMAILS.inc()
    logger.info("missed-message email %s: %d messages to user %s", record.pk, len(rows), user.pk)
    return record


def _missed_message_email_refused(*, record: MissedMessageEmail, rows: list[MissedMessage]) -> None:
    """Forget the email the SMTP server refused for good; its rows are skipped."""
    record.delete()
    for row in rows:
        row.skip_reason = MissedMessage.Skip.REFUSED
    _missed_messages_mark(rows=rows, state=MissedMessage.State.SKIPPED)


def missed_message_email_build(*, user: User, rows: list[MissedMessage]) -> EmailMultiAlternatives:
    """The email listing ``rows`` (each with ``message`` and its room loaded), grouped by room.

    Subject, text and HTML bodies come from the templates
    ``notifications/missed_messages_subject.txt``, ``.txt`` and ``.html``;
    links point to KAIWA_BASE_URL. The ``Message-ID`` depends only on the user
    and the batch's first row, so a resent batch carries the same one. At
    most KAIWA_EMAIL_MAX_MESSAGES messages are listed, so that an email stays
    far below mail servers' size limits (SMTP 552); the rest are counted, with
    a link to each of their rooms.
    """
    base_url = settings.KAIWA_BASE_URL
    listed, unlisted = (
        rows[: settings.KAIWA_EMAIL_MAX_MESSAGES],
        rows[settings.KAIWA_EMAIL_MAX_MESSAGES :],
    )
    rooms: OrderedDict[int, dict[str, Any]] = OrderedDict()
    for row in listed:
        message = row.message
        assert message is not None  # re-checked
        room = message.room
        group = rooms.setdefault(
            room.pk,
            {
                "label": (
                    f"Direct message from {message.username}"
                    if row.reason == MissedMessage.Reason.DIRECT
                    else f"#{room.slug}"
                ),
                "url": f"{base_url}/chat/{room.slug}/",
                "messages": [],
            },
        )
        group["messages"].append(message)
    authors = list(dict.fromkeys(m.username for g in rooms.values() for m in g["messages"]))
    more_rooms = {
        row.message.room.slug: f"{base_url}/chat/{row.message.room.slug}/"
        for row in unlisted
        if row.message is not None
    }
    context = {
        "user": user,
        "count": len(rows),
        "rooms": list(rooms.values()),
        "authors": authors,
        "base_url": base_url,
        "more": len(unlisted),
        "more_rooms": list(more_rooms.items()),
    }
    subject = " ".join(
        render_to_string("notifications/missed_messages_subject.txt", context).split()
    )
    host = urlsplit(base_url).hostname or "localhost"
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifications/missed_messages.txt", context),
        to=[user.email],
        headers={
            "Message-ID": f"<kaiwa.missed.{user.pk}.{rows[0].pk}@{host}>",
            "Auto-Submitted": "auto-generated",  # RFC 3834: no auto-replies
        },
    )
    email.attach_alternative(
        render_to_string("notifications/missed_messages.html", context), "text/html"
    )
    return email


def missed_message_emails_send_due(*, now: datetime | None = None) -> int:
    """Send every due batch in this process, one user after another: the sweep.

    Used by ``kaiwa manage send_missed_message_emails`` and, without a
    broker, by the in-process alarm. A user whose send fails is logged and
    left pending. Returns the number of emails sent.
    """
    now = now or timezone.now()
    sent = 0
    for user_id in selectors.missed_message_users_due(now=now):
        try:
            sent += missed_message_email_send(user_id=user_id, now=now) is not None
        except Exception:
            logger.exception("missed-message email to user %s failed; left pending", user_id)
    return sent


CLEANUP_BATCH = 1000  # rows per delete statement of missed_messages_cleanup


def missed_messages_cleanup(*, now: datetime, keep_days: int | None = None) -> tuple[int, int]:
    """Delete the missed-message rows that are history (sent or skipped) and
    the records of emails sent, older than ``keep_days`` days (default
    KAIWA_MISSED_MESSAGE_KEEP_DAYS; 0 keeps everything), at most
    CLEANUP_BATCH rows per statement. Pending rows are never touched.
    Returns (rows deleted, email records deleted)."""
    days = settings.KAIWA_MISSED_MESSAGE_KEEP_DAYS if keep_days is None else keep_days
    if days <= 0:
        return 0, 0
    cutoff = now - timedelta(days=days)
    done = MissedMessage.objects.exclude(state=MissedMessage.State.PENDING)
    rows = _delete_in_batches(done.filter(created_at__lt=cutoff))
    emails = _delete_in_batches(MissedMessageEmail.objects.filter(sent_at__lt=cutoff))
    if rows or emails:
        logger.info("missed messages: %d rows and %d email records deleted", rows, emails)
    return rows, emails


def _delete_in_batches(rows: QuerySet[Any]) -> int:
    deleted = 0
    while True:
        ids = list(rows.order_by("pk").values_list("pk", flat=True)[:CLEANUP_BATCH])
        if not ids:
            return deleted
        _, counts = rows.model.objects.filter(pk__in=ids).delete()
        deleted += counts.get(rows.model._meta.label, 0)

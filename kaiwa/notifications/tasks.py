"""Celery tasks of the notifications app, and the wake-ups that schedule them.

The pending rows are the truth; tasks only decide *when* to look at them:

- a wake-up per new row: ``missed_message_email_send`` with ``eta`` at the
  row's ``due_at``, queued on commit;
- the sweep ``missed_message_emails_sweep``, every KAIWA_EMAIL_SWEEP_SECONDS
  from the beat embedded in ``kaiwa worker``: it catches what a wake-up
  missed (broker down at commit, a worker killed while holding ``eta``
  tasks, whose messages Redis redelivers only after its visibility timeout);
- without a broker (tasks eager), one timer thread per process (``Alarm``)
  sleeps until the earliest ``due_at``, since eager tasks ignore ``eta``.

Every task takes ids and is idempotent: running it twice, or late, sends
nothing twice (see ``services.missed_message_email_send``).
"""

import logging
import threading
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from . import selectors, services

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    # SMTPException is an OSError: SMTP down, timeouts, 4xx answers.
    autoretry_for=(OSError, DatabaseError),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=10,
)
def missed_message_email_send(user_id: int) -> int | None:
    """Send user ``user_id``'s due missed-message batch; returns the email's id or None.

    Retried with exponential backoff (5 s doubling up to 10 min, jittered,
    10 times) on SMTP and database errors; past that the sweep tries again.
    """
    email = services.missed_message_email_send(user_id=user_id)
    return email.pk if email is not None else None


@shared_task(acks_late=True)
def missed_message_emails_sweep() -> int:
    """Queue ``missed_message_email_send`` for every user whose batch is due.

    Returns the number of users queued. Run periodically (CELERY_BEAT_SCHEDULE).
    """
    user_ids = selectors.missed_message_users_due(now=timezone.now())
    for user_id in user_ids:
        missed_message_email_send.delay(user_id)
    return len(user_ids)


def missed_message_wake_up(*, user_id: int, at: datetime) -> None:
    """Arrange for user ``user_id``'s batch to be looked at when it is due at ``at``.

    With a broker: queue the send task with ``eta=at`` (no publish retry: if
    the broker is down, the sweep covers it, and the caller is not held up).
    Without one: arm this process's ``Alarm``. Never raises; failures are logged.
    """
    try:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            alarm.arm(at)
        else:
            missed_message_email_send.apply_async(args=[user_id], eta=at, retry=False)
    except Exception:
        logger.exception("could not schedule the missed-message wake-up of user %s", user_id)


class Alarm:
    """Without a broker: one timer thread that wakes at the earliest due time.

    On waking it sends every due batch in-process
    (``services.missed_message_emails_send_due``), then re-arms for the next
    pending row, at least ``KAIWA_EMAIL_SWEEP_SECONDS`` later when something
    due could not be sent. Rows left by a stopped process are sent at the
    next wake-up of any process, or by ``kaiwa manage send_missed_message_emails``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._at: datetime | None = None

    def arm(self, at: datetime) -> None:
        """Wake at ``at`` (a datetime) unless already due to wake no later."""
        with self._lock:
            if self._timer is not None and self._at is not None and self._at <= at:
                return
            if self._timer is not None:
                self._timer.cancel()
            delay = max(0.0, (at - timezone.now()).total_seconds())
            self._timer = threading.Timer(delay, self._fire)
            self._timer.daemon = True
            self._at = at
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer, self._at = None, None
        try:
            services.missed_message_emails_send_due()
            next_at = selectors.missed_message_next_due()
        except Exception:
            logger.exception("missed-message alarm failed; trying again later")
            next_at = timezone.now()
        finally:
            connections.close_all()  # this thread's connections
        if next_at is None:
            return
        now = timezone.now()
        # Something due is still pending (its send failed): not in a tight loop.
        later = now + timedelta(seconds=settings.KAIWA_EMAIL_SWEEP_SECONDS)
        self.arm(next_at if next_at > now else later)


alarm = Alarm()


@shared_task(acks_late=True)
def missed_messages_cleanup() -> int:
    """Delete the sent and skipped missed-message rows and the email records
    older than KAIWA_MISSED_MESSAGE_KEEP_DAYS (``services.missed_messages_cleanup``);
    returns the rows deleted. Run periodically (CELERY_BEAT_SCHEDULE)."""
    rows, _ = services.missed_messages_cleanup(now=timezone.now())
    return rows

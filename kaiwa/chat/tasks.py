"""Celery tasks of the chat app: retention (kaiwa.chat.retention)."""

from celery import shared_task
from django.utils import timezone

from kaiwa.chat import retention


@shared_task(acks_late=True)
def retention_sweep() -> int:
    """Apply retention to every room that has it (``retention.retention_apply``);
    returns the number of rooms where it deleted anything. Run periodically
    (CELERY_BEAT_SCHEDULE, every KAIWA_RETENTION_SWEEP_SECONDS); idempotent,
    so two beats or a late run do no harm."""
    return len(retention.retention_apply(now=timezone.now()))

"""Control events between processes that share no channel layer.

On embedded defaults the channel layer is in-memory: a revocation made in a
shell or a management command (a membership deleted, a user deactivated, a
password changed, a token revoked) could not reach the server's open
sockets, and they would keep reading until their periodic re-check
(KAIWA_REVALIDATE_SECONDS). Such a process writes the event to the
``RelayedEvent`` table instead (``relay_write``); the server's hub reads new
rows with its seq check, every KAIWA_SEQ_CHECK_SECONDS (``relay_read``), and
applies them as if they had come through a shared layer. With ``REDIS_URL``
the channel layer carries them and this table stays empty.
"""

from datetime import timedelta
from typing import Any

from django.utils import timezone

from kaiwa.chat.models import RelayedEvent

KEEP = timedelta(minutes=1)  # rows older than this are deleted: every hub has read them


def relay_write(*, event: dict[str, Any]) -> None:
    """Store ``event`` (a channel-layer event dict) for the server's hub."""
    RelayedEvent.objects.create(event=event)


def relay_latest_id() -> int:
    """The id of the newest stored event (0 for none): where a new hub starts."""
    return RelayedEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def relay_read(*, after: int) -> tuple[int, list[dict[str, Any]]]:
    """Events stored with id > ``after``, oldest first, and the newest id seen;
    deletes rows older than a minute. Two queries."""
    rows = list(RelayedEvent.objects.filter(pk__gt=after).order_by("pk").values_list("pk", "event"))
    RelayedEvent.objects.filter(created_at__lt=timezone.now() - KEEP).delete()
    return (rows[-1][0] if rows else after), [event for _, event in rows]

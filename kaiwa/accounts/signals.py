"""Model signals of the accounts app: every saved user holds a ``UsernameClaim``."""

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services import username_claim_set


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="kaiwa.accounts.username_claim")
def username_claim_on_save(
    sender: Any,
    instance: Any,
    created: bool,
    raw: bool = False,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    """Claim the saved user's key, in his save's transaction; a save that
    leaves the username alone (``last_login``) is skipped, and so are fixtures.
    A name whose key another user holds raises ``IntegrityError``."""
    if raw or (update_fields is not None and "username" not in update_fields):
        return
    username_claim_set(user=instance, created=created)

"""Signals of the accounts app: every saved user holds a ``UsernameClaim``;
his API tokens end with his password, his activity, and (sign-in tokens) his logout."""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from .models import SIGNIN_TOKEN_NAME
from .services import tokens_revoke, username_claim_set


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="kaiwa.accounts.username_claim")
def username_claim_on_save(
    sender: type[User],
    instance: User,
    created: bool,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """Claim the saved user's key, in his save's transaction; a save that
    leaves the username alone (``last_login``) is skipped, and so are fixtures.
    A name whose key another user holds raises ``IntegrityError``."""
    if raw or (update_fields is not None and "username" not in update_fields):
        return
    username_claim_set(user=instance, created=created)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="kaiwa.accounts.tokens_revoke")
def tokens_revoke_on_credentials(
    sender: type[User],
    instance: User,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """A user saved with a new password, or deactivated: all his API tokens
    are deleted (their sockets close with 4401). One query per full save of
    an existing user; a ``last_login`` update costs nothing."""
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return
    old = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if old is None:
        return
    if old["password"] != instance.password or (old["is_active"] and not instance.is_active):
        tokens_revoke(user_id=instance.pk)


@receiver(user_logged_out, dispatch_uid="kaiwa.accounts.signin_tokens_revoke")
def signin_tokens_revoke_on_logout(
    sender: type[User | None], request: HttpRequest | None, user: User | None, **kwargs: Any
) -> None:
    """A logout also ends the user's sign-in tokens (``POST /api/auth/token``);
    tokens he named for bots stay until he revokes them or they expire."""
    if user is not None:
        tokens_revoke(user_id=user.pk, name=SIGNIN_TOKEN_NAME)

"""Accounts services: API tokens and username claims."""

from typing import Any

from django.contrib.auth import authenticate
from rest_framework.authtoken.models import Token

from .models import UsernameClaim
from .validators import username_key


def token_issue(*, username: str, password: str) -> Token | None:
    """The API token of the user with these credentials (created on first
    call, the same token after), or None when the credentials are wrong."""
    user = authenticate(username=username, password=password)
    if user is None:
        return None
    token, _ = Token.objects.get_or_create(user=user)
    return token


def username_claim_set(*, user: Any, created: bool = False) -> None:
    """Make ``user``'s ``UsernameClaim`` hold the key of his current name
    (created for a new user, or one ``bulk_create`` made). Call it inside the
    transaction that saved the user. Raises ``IntegrityError`` when another
    user holds that key; a legacy ``<key>#<id>`` claim is left as it is."""
    key = username_key(user.username)
    claim = None if created else UsernameClaim.objects.filter(user=user).first()
    if claim is None:
        UsernameClaim.objects.create(user=user, key=key)
    elif claim.key not in (key, f"{key}#{user.pk}"):
        claim.key = key
        claim.save(update_fields=["key"])

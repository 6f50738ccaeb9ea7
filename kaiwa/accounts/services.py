"""Accounts services: API tokens and sign-up."""

from typing import Any

from django.contrib.auth import authenticate
from rest_framework.authtoken.models import Token


def token_user_get(*, key: str) -> Any:
    """The active user owning API token ``key``, or None."""
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def token_issue(*, username: str, password: str) -> Token | None:
    """The API token of the user with these credentials (created on first
    call, the same token after), or None when the credentials are wrong."""
    user = authenticate(username=username, password=password)
    if user is None:
        return None
    token, _ = Token.objects.get_or_create(user=user)
    return token

"""Accounts services: API tokens and sign-up."""

from django.contrib.auth import authenticate
from rest_framework.authtoken.models import Token


def token_issue(*, username: str, password: str) -> Token | None:
    """The API token of the user with these credentials (created on first
    call, the same token after), or None when the credentials are wrong."""
    user = authenticate(username=username, password=password)
    if user is None:
        return None
    token, _ = Token.objects.get_or_create(user=user)
    return token

"""Reads of the accounts app: who a WebSocket handshake belongs to."""

from types import SimpleNamespace
from typing import Any

from django.contrib import auth
from rest_framework.authtoken.models import Token


def token_user_get(*, key: str) -> Any:
    """The active user owning API token ``key``, or None. One query."""
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def socket_user_get(*, session: Any, token: str | None) -> Any:
    """The signed-in user of a WebSocket handshake, or None (PROTOCOL.md
    section 1: the session cookie first, then the Bearer ``token``).

    ``session`` is the scope's Django session (Channels' SessionMiddleware;
    None or an empty session when the handshake carried no cookie). The
    session is checked as Django checks it for a request
    (``django.contrib.auth.get_user``: the user exists, is allowed by his
    backend, and his password hash still matches the session's). Queries: a
    cookie costs two (session, user), a token one, neither none.
    """
    if session is not None and session.session_key:
        user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
        if user.is_authenticated:
            return user
    if token:
        return token_user_get(key=token)
    return None

"""ASGI middleware for WebSocket handshakes: sessions, Bearer tokens and Origin checks."""

from importlib import import_module
from typing import Any

from channels.security.websocket import AllowedHostsOriginValidator
from channels.sessions import CookieMiddleware
from django.conf import settings

# Scope key of the handshake's ``Authorization: Bearer`` token (None without one).
BEARER_TOKEN_KEY = "kaiwa.bearer_token"


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def BrowserOriginValidator(application: Any) -> Any:  # noqa: N802 (wraps like Channels' own)
    """``AllowedHostsOriginValidator`` for browsers; a client that sends no
    ``Origin`` (a bot, a load generator) is not a browser and cannot be the
    victim of cross-site WebSocket hijacking, so it passes."""
    checked = AllowedHostsOriginValidator(application)

    async def validator(scope: dict, receive: Any, send: Any) -> Any:
        if not any(name.lower() == b"origin" for name, _ in scope.get("headers", [])):
            return await application(scope, receive, send)
        return await checked(scope, receive, send)

    return validator


def WebsocketAuthStack(inner: Any) -> Any:  # noqa: N802
    """Attach the handshake's credentials to the scope without querying anything.

    ``scope["session"]``: the Django session named by the session cookie
    (a ``SESSION_ENGINE`` store, which loads itself on first use), or None
    without a cookie; ``scope[BEARER_TOKEN_KEY]``: the Bearer token, or None.
    The consumer resolves them to a user in a batch with other joins
    (``kaiwa.chat.joins``). Channels' ``SessionMiddleware`` and
    ``AuthMiddleware`` would each make a trip to Channels' one shared database
    thread for every handshake (the first even without a cookie), which
    serialises a connect storm. The session is never saved from a socket:
    sockets do not change it.
    """
    engine = import_module(settings.SESSION_ENGINE)

    async def credentials(scope: dict, receive: Any, send: Any) -> Any:
        key = scope["cookies"].get(settings.SESSION_COOKIE_NAME)
        session = engine.SessionStore(key) if key else None
        token = bearer_token(scope.get("headers", []))
        return await inner({**scope, "session": session, BEARER_TOKEN_KEY: token}, receive, send)

    return CookieMiddleware(credentials)

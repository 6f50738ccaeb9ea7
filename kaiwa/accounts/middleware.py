"""ASGI middleware for WebSocket handshakes: sessions, Bearer tokens and Origin checks."""

from typing import Any

from channels.security.websocket import AllowedHostsOriginValidator
from channels.sessions import SessionMiddlewareStack

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

    The session (Channels' ``SessionMiddlewareStack``, loaded lazily) and the
    Bearer token (``scope[BEARER_TOKEN_KEY]``) are resolved to a user by the
    consumer, in the same database call as its room join
    (``kaiwa.accounts.selectors.socket_user_get``): a join then costs one
    trip to a database thread instead of three (Channels' AuthMiddleware
    resolves the user on its own shared thread before the consumer runs).
    """

    async def credentials(scope: dict, receive: Any, send: Any) -> Any:
        token = bearer_token(scope.get("headers", []))
        return await inner({**scope, BEARER_TOKEN_KEY: token}, receive, send)

    return SessionMiddlewareStack(credentials)

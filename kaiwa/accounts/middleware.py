"""ASGI middleware for WebSocket handshakes: Bearer tokens and Origin checks."""

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


@database_sync_to_async
def token_user(key: str) -> Any:
    """The active user owning API token ``key``, or AnonymousUser."""
    from .services import token_user_get

    return token_user_get(key=key) or AnonymousUser()


class BearerTokenAuthMiddleware(BaseMiddleware):
    """Authenticate a WebSocket by ``Authorization: Bearer <token>`` when the
    session cookie did not (PROTOCOL.md section 1: the cookie wins)."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            key = bearer_token(scope.get("headers", []))
            if key is not None:
                scope = dict(scope, user=await token_user(key))
        return await super().__call__(scope, receive, send)


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
    """Session cookie first (Channels' AuthMiddlewareStack), then Bearer token."""
    return AuthMiddlewareStack(BearerTokenAuthMiddleware(inner))

"""ASGI middleware for WebSocket handshakes: sessions, Bearer tokens and Origin checks."""

from collections.abc import Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

if TYPE_CHECKING:
    # The scope type of types-channels, named for type checkers only.
    from channels.consumer import _ChannelScope

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


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase bytes) in an ASGI scope, or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def origin_allowed(scope: Mapping[str, Any], origin: str) -> bool:
    """Django's CSRF origin check (``CsrfViewMiddleware._origin_verified``)
    for a WebSocket handshake: ``origin`` must be the site's own origin
    (scheme, host and port of the handshake: ``ws`` as ``http``, ``wss`` as
    ``https``, the ``Host`` header in ALLOWED_HOSTS) or one of
    CSRF_TRUSTED_ORIGINS (``https://*.example.com`` patterns included).

    Host names alone are not enough (Channels' ``AllowedHostsOriginValidator``):
    a page on another port or scheme of the same host would otherwise open a
    socket with the victim's cookie, which is sent whatever the port.
    """
    host = header(scope, b"host") or ""
    domain, _ = split_domain_port(host)
    secure = scope.get("scheme") in ("wss", "https")
    own = f"{'https' if secure else 'http'}://{host}"
    if domain and validate_host(domain, settings.ALLOWED_HOSTS) and origin == own:
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in [o for o in trusted if "*" not in o]:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    patterns = [urlsplit(o) for o in trusted if "*" in o]
    return any(
        p.scheme == parsed.scheme and is_same_domain(parsed.netloc, p.netloc.lstrip("*"))
        for p in patterns
    )


def BrowserOriginValidator(application: Any) -> Any:  # named like Channels' own wrappers
    """Refuse (HTTP 403) a browser handshake whose ``Origin`` is not the site's
    own origin or a trusted one (``origin_allowed``). A client that sends no
    ``Origin`` (a bot, a load generator) is not a browser and cannot be the
    victim of cross-site WebSocket hijacking, so it passes."""

    async def validator(
        scope: "_ChannelScope", receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> Any:
        origin = header(scope, b"origin")
        if origin is None or origin_allowed(scope, origin):
            return await application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)  # one per socket: it keeps state

    return validator


def WebsocketAuthStack(inner: Any) -> Any:  # named like Channels' AuthMiddlewareStack
    """Attach the handshake's credentials to the scope without querying anything.

    ``scope["session"]``: the Django session named by the session cookie
    (a ``SESSION_ENGINE`` store, which loads itself on first use), or None
    without a cookie; ``scope[BEARER_TOKEN_KEY]``: the Bearer token, or None.
    The consumer resolves them to a user in a batch with other joins
    (``kaiwa.chat.realtime.admission``). Channels' ``SessionMiddleware`` and
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

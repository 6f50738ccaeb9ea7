"""The ASGI middleware that keeps the server's own ``send`` in the scope."""

from __future__ import annotations

from typing import Any

# Scope key of the server's own ASGI send: fan-out frames skip the middleware
# wrappers (Channels' session middleware inspects every message it forwards).
RAW_SEND_KEY = "kaiwa.raw_send"


def RawSendMiddleware(application: Any) -> Any:  # an ASGI middleware factory, named as one
    """Keep the server's ``send`` in the scope under RAW_SEND_KEY."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await application({**scope, RAW_SEND_KEY: send}, receive, send)

    return middleware

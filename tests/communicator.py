"""Kaiwa's WebSocket consumer in process: Channels' ``WebsocketCommunicator`` on
the chat routes, with the reads every consumer test needs.

The one in-process socket client of the suite; tests against real processes
use the real-socket client of ``tests/wsclient.py``. Every read is bounded
(``TIMEOUT`` seconds), so that a missing frame fails the test instead of
hanging it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore

from kaiwa.accounts.middleware import BEARER_TOKEN_KEY
from kaiwa.chat.realtime.middleware import RAW_SEND_KEY
from kaiwa.chat.routing import websocket_urlpatterns

TIMEOUT = 5.0  # seconds; in process, a frame normally comes in milliseconds
application = URLRouter(websocket_urlpatterns)


class Socket(WebsocketCommunicator):
    """One socket to ``path`` (``/ws/chat/<room>/`` and its query string).

    Its credentials are put in the scope as Kaiwa's ASGI stack would:
    ``user`` as if resolved already (``AnonymousUser()`` for a guest), or a
    Bearer ``token`` and/or the ``session_key`` of a Django session.
    ``client`` is the client's IP address; ``raw_send`` stands for the
    server's own send (``fanout.RAW_SEND_KEY``), to stall the socket.
    """

    def __init__(
        self,
        path: str = "/ws/chat/lobby/",
        *,
        user: Any = None,
        token: str | None = None,
        session_key: str | None = None,
        client: str | None = None,
        raw_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(application, path)
        if user is not None:
            self.scope["user"] = user
        self.scope["session"] = SessionStore(session_key) if session_key else None
        self.scope[BEARER_TOKEN_KEY] = token
        if client is not None:
            self.scope["client"] = (client, 40000)
        if raw_send is not None:
            self.scope[RAW_SEND_KEY] = raw_send
        self.backlog: list[dict[str, Any]] = []  # the frames before ``ready``
        self.ready: dict[str, Any] | None = None

    async def open(self) -> Socket:
        """The handshake. Kaiwa accepts every socket, then closes one it refuses
        with a close code (``close_code``)."""
        accepted, _ = await self.connect(timeout=TIMEOUT)
        assert accepted, "the handshake was refused"
        return self

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be a JSON object with a ``type``."""
        frame = await self.receive_json_from(timeout)
        assert isinstance(frame, dict), frame
        assert "type" in frame, frame
        return frame

    async def until_ready(self) -> list[dict[str, Any]]:
        """Read up to ``ready``: returns the frames before it (the backlog, a
        ``reset``, an ``error``), also kept in ``backlog``, and keeps ``ready``."""
        while (frame := await self.recv())["type"] != "ready":
            self.backlog.append(frame)
        self.ready = frame
        return self.backlog

    async def close_code(self, timeout: float = TIMEOUT) -> int | None:
        """The code of the close the server sends next (no frame before it)."""
        output = await self.receive_output(timeout)
        assert output["type"] == "websocket.close", f"expected a close, got {output}"
        return output.get("code")

    async def answer(self) -> str | int | None:
        """How the server answers the join: ``"ready"`` (the frames before it
        kept in ``backlog``) or the code it closes the socket with."""
        while True:
            output = await self.receive_output(TIMEOUT)
            if output["type"] == "websocket.close":
                return output.get("code")
            frame = self._decode(output)
            if frame["type"] == "ready":
                self.ready = frame
                return "ready"
            self.backlog.append(frame)

    @staticmethod
    def _decode(output: dict[str, Any]) -> dict[str, Any]:
        assert output["type"] == "websocket.send", output
        assert "text" in output, output
        frame = json.loads(output["text"])
        assert isinstance(frame, dict), frame
        assert "type" in frame, frame
        return frame


async def connect(path: str = "/ws/chat/lobby/", **credentials: Any) -> Socket:
    """A socket past its handshake (nothing read yet); see ``Socket`` for ``credentials``."""
    return await Socket(path, **credentials).open()


async def join(path: str = "/ws/chat/lobby/", **credentials: Any) -> Socket:
    """A socket read up to ``ready`` (its ``backlog`` and ``ready`` filled in)."""
    socket = await connect(path, **credentials)
    await socket.until_ready()
    return socket

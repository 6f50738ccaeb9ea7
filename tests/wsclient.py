"""A small WebSocket/REST client of the Kaiwa wire protocol over real sockets,
for the tests that start real ``kaiwa serve`` processes (e2e, reliability,
notifications): ``Client`` (asyncio), ``joined_sync`` (blocking) and ``Rest``.

The one real-socket client of the suite; consumer tests in process use
``tests/communicator.py``. Every wait is bounded (``TIMEOUT`` seconds) so
that a missing frame fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from tests.kaiwa_process import KaiwaServer, password

TIMEOUT = 10.0

MESSAGE_FIELDS = {
    "type", "room", "seq", "id", "message", "username", "created_at", "html", "edited_at", "reactions"
}  # fmt: skip


def room_name(prefix: str = "r") -> str:
    """A fresh public room name, so that tests sharing a server do not meet."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Client:
    """One WebSocket connection to ``/ws/chat/<room>/``."""

    def __init__(self, ws: ClientConnection, room: str) -> None:
        self.ws = ws
        self.room = room

    @classmethod
    async def open(
        cls,
        server: KaiwaServer,
        room: str,
        *,
        token: str | None = None,
        after: int | str | None = None,
        headers: dict[str, str] | None = None,
        origin: str | None = None,
        path: str | None = None,
        timeout: float = TIMEOUT,
        **options: Any,
    ) -> Client:
        """Connect (the handshake only: no frame is read) within ``timeout``
        seconds; ``options`` go to websockets' ``connect`` (``sock``,
        ``max_queue``, ``compression``...)."""
        url = f"{server.ws}/ws/chat/{room}/" if path is None else server.ws + path
        if after is not None:
            url += f"?after={after}"
        extra = dict(headers or {})
        if token is not None:
            extra.update(bearer(token))
        ws = await connect(
            url,
            additional_headers=extra,
            origin=origin,
            proxy=None,
            open_timeout=timeout,
            close_timeout=2,
            **options,
        )
        return cls(ws, room)

    @classmethod
    async def join(cls, server: KaiwaServer, room: str, **kwargs: Any) -> Client:
        """Connect and read up to ``ready``; the frames read are in ``backlog``."""
        client = await cls.open(server, room, **kwargs)
        client.backlog, client.ready = await client.until_ready()
        return client

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), f"binary frame from the server: {raw!r}"
        frame = json.loads(raw)
        assert isinstance(frame, dict), frame
        assert "type" in frame, frame
        return frame

    async def until_ready(
        self, timeout: float = TIMEOUT
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Frames before ``ready`` and the ``ready`` frame itself (each within ``timeout`` s)."""
        before: list[dict[str, Any]] = []
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == "ready":
                return before, frame
            before.append(frame)

    async def send(self, payload: Any) -> None:
        await self.ws.send(
            payload if isinstance(payload, str | bytes) else json.dumps(payload, ensure_ascii=False)
        )

    async def say(self, text: str, client_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "message", "message": text}
        if client_id is not None:
            frame["client_id"] = client_id
        await self.send(frame)

    async def expect(self, kind: str) -> dict[str, Any]:
        """The next frame, which must be of type ``kind``."""
        frame = await self.recv()
        assert frame["type"] == kind, f"expected a {kind!r} frame, got {frame}"
        return frame

    async def presence_of(self, username: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next ``presence`` frame about ``username`` within ``timeout``
        seconds (other frames skipped); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == "presence" and frame["username"] == username:
                return frame

    async def expect_error(self, code: str) -> dict[str, Any]:
        frame = await self.expect("error")
        assert frame["code"] == code, frame
        assert isinstance(frame["detail"], str), frame
        assert frame["detail"], frame
        return frame

    async def ping(self) -> None:
        """Round trip a ping: the next frame must be the pong (nothing queued before it)."""
        await self.send({"type": "ping"})
        frame = await self.recv()
        assert frame == {"type": "pong"}, f"expected pong, got {frame}"

    async def messages(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The next ``count`` frames, which must all be ``message`` frames."""
        got = []
        for _ in range(count):
            frame = await self.recv(timeout)
            assert frame["type"] == "message", f"expected a message frame, got {frame}"
            got.append(frame)
        return got

    async def expect_close(self, code: int) -> None:
        """The server closes the connection with ``code`` before sending any frame."""
        try:
            raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        except ConnectionClosed as exc:
            closed = exc
        else:
            raise AssertionError(f"expected close {code}, got frame {raw!r}")
        assert closed.rcvd is not None, f"no close frame received ({closed!r})"
        assert closed.rcvd.code == code, f"closed with {closed.rcvd.code}, expected {code}"

    async def close(self) -> None:
        await self.ws.close()


def until_ready_sync(
    ws: SyncConnection, timeout: float = TIMEOUT
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``Client.until_ready`` for a blocking socket: the frames before ``ready``, and ``ready``."""
    before: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv(timeout=timeout))
        assert isinstance(frame, dict), frame
        assert isinstance(frame.get("type"), str), frame
        if frame["type"] == "ready":
            return before, frame
        before.append(frame)


@contextmanager
def joined_sync(server: KaiwaServer, room: str, *, token: str) -> Iterator[SyncConnection]:
    """A blocking socket in ``room``, read up to ``ready`` (for tests that are not
    async); joining makes a new room and a membership."""
    with sync_connect(
        f"{server.ws}/ws/chat/{room}/",
        additional_headers=bearer(token),
        proxy=None,
        open_timeout=TIMEOUT,
    ) as ws:
        until_ready_sync(ws)
        yield ws


async def refused_or_closed(
    server: KaiwaServer, room_path: str, *, http: int, code: int, **kwargs: Any
) -> None:
    """The handshake to ``room_path`` is refused with HTTP ``http`` or accepted and
    then closed with ``code`` (PROTOCOL.md allows either)."""
    try:
        client = await Client.open(server, "", path=room_path, **kwargs)
    except InvalidStatus as refused:
        status = refused.response.status_code
    else:
        try:
            await client.expect_close(code)
        finally:
            await client.close()
        return
    assert status == http, status


def check_message_frame(
    frame: dict[str, Any], *, room: str, username: str, text: str, client_id: str | None = None
) -> None:
    """``frame`` is a well-formed ``message`` frame/object with these values."""
    expected = MESSAGE_FIELDS | ({"client_id"} if client_id is not None else set())
    assert set(frame) == expected, frame
    assert frame["type"] == "message"
    assert frame["room"] == room
    assert frame["username"] == username
    assert frame["message"] == text
    assert isinstance(frame["seq"], int)
    assert not isinstance(frame["seq"], bool)
    assert frame["seq"] >= 1
    assert isinstance(frame["id"], str)
    assert frame["id"]
    if client_id is not None:
        assert frame["client_id"] == client_id
    created = datetime.fromisoformat(frame["created_at"].replace("Z", "+00:00"))
    assert created.utcoffset() is not None
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 3600


async def signed_in(server: KaiwaServer, name: str) -> httpx.AsyncClient:
    """An HTTP client that signed ``name`` in through the login form, as a browser
    does (it holds the ``sessionid`` and ``csrftoken`` cookies); ``aclose`` it."""
    http = httpx.AsyncClient(base_url=server.http, trust_env=False, timeout=TIMEOUT)
    page = await http.get("/accounts/login/")
    assert page.status_code == 200, page.text
    answer = await http.post(
        "/accounts/login/",
        data={
            "username": name,
            "password": password(name),
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
        },
    )
    assert answer.status_code == 302, answer.text
    assert "sessionid" in http.cookies
    return http


class Rest:
    """The REST API as one user (Bearer token)."""

    def __init__(self, server: KaiwaServer, token: str | None) -> None:
        headers = bearer(token) if token else {}
        self.client = httpx.AsyncClient(
            base_url=server.http, headers=headers, timeout=TIMEOUT, trust_env=False
        )

    async def __aenter__(self) -> Rest:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.aclose()

    async def post_message(
        self,
        room: str,
        text: str,
        client_id: str | None = None,
        status: int | tuple[int, ...] = 201,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"message": text}
        if client_id is not None:
            body["client_id"] = client_id
        answer = await self.client.post(f"/api/rooms/{room}/messages/", json=body)
        statuses = status if isinstance(status, tuple) else (status,)
        assert answer.status_code in statuses, (answer.status_code, answer.text)
        return answer.json()

    async def list_messages(self, room: str, **params: Any) -> list[dict[str, Any]]:
        answer = await self.client.get(f"/api/rooms/{room}/messages/", params=params)
        assert answer.status_code == 200, (answer.status_code, answer.text)
        return answer.json()["messages"]

    async def rooms(self) -> list[dict[str, Any]]:
        answer = await self.client.get("/api/rooms/")
        assert answer.status_code == 200, (answer.status_code, answer.text)
        return answer.json()["rooms"]

"""kaiwa.logs: the formats, what is left out at INFO, and the context each
line carries; then a real ``kaiwa serve`` with KAIWA_LOG_FORMAT=json: one
line per request and per socket, every line a JSON object."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest
import structlog
import websockets

from kaiwa import logs
from tests.kaiwa_process import KaiwaServer, base_env, create_users


def record(
    name: str, msg: object, level: int = logging.INFO, args: tuple = ()
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_quiet_filter_drops_per_socket_and_probe_lines_only():
    quiet = logs.QuietFilter()
    assert not quiet.filter(record("uvicorn.error", "connection open"))
    assert not quiet.filter(record("uvicorn.error", '%s - "WebSocket %s" [accepted]'))
    assert quiet.filter(record("uvicorn.error", "Uvicorn running on %s"))
    assert quiet.filter(record("kaiwa.x", "connection open"))  # not uvicorn's
    finished = {"event": "request_finished", "request": "GET /healthz", "code": 200}
    assert not quiet.filter(record("django_structlog", finished))
    assert not quiet.filter(record("django_structlog", {**finished, "request": "GET /metrics?x=1"}))
    # A failing probe is worth a line; other paths always are.
    assert quiet.filter(record("django_structlog", {**finished, "code": 503}))
    assert quiet.filter(record("django_structlog", {**finished, "request": "GET /api/rooms/"}))


def test_plain_lines_carry_the_bound_context():
    formatter = logs.formatter(json=False)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(socket_id="abc-1", room="lobby")
    try:
        line = formatter.format(
            record("kaiwa.chat.realtime.consumers", "socket %s too slow", args=("abc-1",))
        )
    finally:
        structlog.contextvars.clear_contextvars()
    head, _, fields = line.partition(" too slow ")
    assert head.endswith(" INFO kaiwa.chat.realtime.consumers: socket abc-1"), line
    assert sorted(fields.split()) == ["room=lobby", "socket_id=abc-1"]
    assert time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")


def test_json_lines_are_objects_with_the_context_and_the_traceback():
    formatter = logs.formatter(json=True)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            failing = logging.LogRecord(
                "kaiwa.x", logging.ERROR, __file__, 1, "it failed", (), sys.exc_info()
            )
        line = json.loads(formatter.format(failing))
    finally:
        structlog.contextvars.clear_contextvars()
    assert line["event"] == "it failed"
    assert line["level"] == "error"
    assert line["logger"] == "kaiwa.x"
    assert line["request_id"] == "r-1"
    assert line["timestamp"].endswith("Z")
    assert "ValueError: boom" in line["exception"]


@pytest.mark.e2e
def test_a_real_server_logs_one_json_line_per_request_and_per_socket(tmp_path):
    env = base_env(KAIWA_DATA_DIR=str(tmp_path), KAIWA_LOG_FORMAT="json", KAIWA_LOG_LEVEL="INFO")
    create_users(env, "alice")
    server = KaiwaServer(env, tmp_path / "serve.log").start()
    try:
        token = server.token("alice")
        for _ in range(3):
            assert httpx.get(f"{server.http}/healthz", trust_env=False).status_code == 200
        rooms = httpx.get(
            f"{server.http}/api/rooms/",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )
        assert rooms.status_code == 200

        async def chat() -> None:
            uri = f"{server.ws}/ws/chat/lobby/"
            async with websockets.connect(
                uri, additional_headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                while json.loads(await ws.recv())["type"] != "ready":
                    pass
                await ws.send(json.dumps({"message": "hello"}))
                while json.loads(await ws.recv())["type"] != "message":
                    pass

        asyncio.run(chat())
        time.sleep(0.5)  # the close's line
    finally:
        server.stop()
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    requests = [line for line in lines if line["event"] == "request_finished"]
    # (the GETs of the login page are KaiwaServer.start's, waiting for it)
    assert [line["request"] for line in requests if "login" not in line["request"]] == [
        "POST /api/auth/token",
        "GET /api/rooms/",
    ]
    assert all(line["request_id"] and line["ip"] == "127.0.0.1" for line in requests)
    sockets = [line for line in lines if line.get("socket_id")]
    assert [line["event"] for line in sockets] == ["socket_closed"], sockets
    assert sockets[0]["room"] == "lobby"
    assert sockets[0]["ready"] is True
    assert sockets[0]["user_id"]
    assert not [
        line for line in lines if "WebSocket" in line["event"] or "connection" in line["event"]
    ]

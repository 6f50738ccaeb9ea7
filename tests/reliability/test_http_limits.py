"""Bounds on HTTP request heads against a real ``kaiwa serve`` (kaiwa.uvicorn_h11):
a head above KAIWA_MAX_HEADER_BYTES is refused, a connection whose head is not
complete within KAIWA_HEADER_TIMEOUT_SECONDS (1 s here) is closed, whether it
sends nothing or dribbles bytes (slowloris); requests and WebSockets that
outlive that timeout keep working.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.kaiwa_process import KaiwaServer, base_env, create_users
from tests.wsclient import joined_sync, room_name

pytestmark = pytest.mark.e2e

TIMEOUT_SECONDS = 1.0
# The server must close within this; the old server never did.
CLOSE_LIMIT_SECONDS = TIMEOUT_SECONDS + 2.5
HEAD = (
    b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
    + (b"X-Slow: " + b"a" * 60 + b"\r\n") * 4
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[KaiwaServer]:
    tmp = tmp_path_factory.mktemp("httplimits")
    env = base_env(
        KAIWA_DATA_DIR=str(tmp / "data"), KAIWA_HEADER_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS)
    )
    create_users(env, "alice")
    server = KaiwaServer(env, tmp / "serve.log").start()
    yield server
    assert server.proc is not None
    assert server.proc.poll() is None, "the server died"
    server.stop()


def open_connection(server: KaiwaServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def seconds_until_closed(sock: socket.socket, start: float) -> float | None:
    """Wait up to CLOSE_LIMIT_SECONDS after ``start`` (monotonic) for the server
    to close ``sock``; returns the seconds since ``start``, None if it did not
    close (or answered something)."""
    sock.settimeout(max(0.0, start + CLOSE_LIMIT_SECONDS - time.monotonic()))
    try:
        data = sock.recv(1024)
    except ConnectionResetError:
        data = b""
    except TimeoutError:
        return None
    return time.monotonic() - start if data == b"" else None


def dribble(sock: socket.socket, data: bytes, gap: float) -> float | None:
    """Send ``data`` one byte every ``gap`` seconds until the server closes the
    connection; returns the seconds that took, None if it did not close within
    CLOSE_LIMIT_SECONDS (or answered something)."""
    start = time.monotonic()
    sock.settimeout(gap)
    for byte in data:
        if time.monotonic() - start > CLOSE_LIMIT_SECONDS:
            return None
        try:
            sock.sendall(bytes([byte]))
            answer = sock.recv(1024)
        except TimeoutError:
            continue
        except OSError:  # reset, broken pipe: closed
            answer = b""
        return time.monotonic() - start if answer == b"" else None
    return None


def test_it_refuses_a_1_mb_header_and_serves_the_next_client(server):
    with open_connection(server) as sock:
        try:
            sock.sendall(HEAD + b"X-Big: " + b"a" * 1024 * 1024 + b"\r\n\r\n")
            answer = sock.recv(1024)
        except OSError:  # the server closed while we were still sending
            answer = b""
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), answer[:80]
    assert httpx.get(server.http + "/accounts/login/", timeout=10).status_code == 200


def test_it_closes_a_connection_that_sends_nothing(server):
    start = time.monotonic()
    with open_connection(server) as sock:
        closed_after = seconds_until_closed(sock, start)
    assert closed_after is not None, "a silent connection was left open"
    assert closed_after >= TIMEOUT_SECONDS - 0.1


def test_it_closes_a_slowloris(server):
    with open_connection(server) as sock:
        closed_after = dribble(sock, HEAD, gap=0.3)
    assert closed_after is not None, "a head sent one byte per 0.3 s was still read"
    assert closed_after >= TIMEOUT_SECONDS - 0.1


def test_it_closes_a_slowloris_after_a_keep_alive_request(server):
    with open_connection(server) as sock:
        sock.sendall(b"GET /static/chat/kaiwa.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 200
        assert not answer.will_close
        answer.read()
        closed_after = dribble(sock, HEAD, gap=0.3)
    assert closed_after is not None, "a second head sent one byte per 0.3 s was still read"


def test_it_keeps_requests_and_websockets_open_past_the_timeout(server):
    """While a silent connection is closed, a keep-alive connection idle between
    requests (uvicorn's keep-alive is 5 s) and a WebSocket both stay open, and a
    32 KiB header is fine."""
    token = server.token("alice")
    silent = open_connection(server)
    start = time.monotonic()
    keep_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    with joined_sync(server, room_name("limits"), token=token) as ws:
        keep_alive.request("GET", "/accounts/login/", headers={"X-Pad": "a" * 32 * 1024})
        assert keep_alive.getresponse().read()
        assert keep_alive.sock is not None
        first_socket = keep_alive.sock

        assert seconds_until_closed(silent, start) is not None, "a silent connection was left open"
        time.sleep(TIMEOUT_SECONDS)

        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
        keep_alive.request("GET", "/accounts/login/")
        assert keep_alive.getresponse().status == 200
        assert keep_alive.sock is first_socket  # the same connection, not a new one
    keep_alive.close()
    silent.close()

"""Real processes and a real SMTP server for the notifications' end-to-end tests."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from tests.kaiwa_process import KAIWA, KaiwaServer, free_port
from tests.wsclient import joined_sync


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` every 0.1 s until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class SmtpSink:
    """An aiosmtpd SMTP server in this process that keeps every message it accepts.

    ``hold(address)`` makes the next conversation with that recipient stop at
    RCPT until ``release()``: the sending worker is then mid-send, before the
    server has accepted anything.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._hold: str | None = None
        self.held = threading.Event()
        self._release = threading.Event()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.controller.stop()

    def hold(self, address: str) -> None:
        self._hold, self._release = address, threading.Event()
        self.held.clear()

    def release(self) -> None:
        self._hold = None
        self._release.set()

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in m["To"]]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self._hold:
            self.held.set()
            await asyncio.to_thread(self._release.wait, 60)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def body_html(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return part.get_content()


class KaiwaWorker:
    """A ``kaiwa worker`` subprocess (with its embedded beat) in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> KaiwaWorker:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(
            [KAIWA, "worker", "--concurrency=2", "--without-mingle", "--without-gossip"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: SIGKILL reaches the pool and beat too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kaiwa worker exited: {self.log_path.read_text()}")
            if b" ready." in self.log_path.read_bytes()[offset:]:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"kaiwa worker did not start: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process, pool children, beat): a crash."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class User:
    """One user of a running ``kaiwa serve``: REST with a Bearer token, WebSocket joins."""

    def __init__(self, server: KaiwaServer, name: str) -> None:
        self.server = server
        self.name = name
        self.token = server.token(name)
        self.http = httpx.Client(
            base_url=server.http,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
            trust_env=False,
        )

    def join(self, room: str) -> None:
        """Join ``room`` over WebSocket (a member from then on), then go away."""
        with joined_sync(self.server, room, token=self.token):
            pass

    def say(self, room: str, text: str) -> dict[str, Any]:
        answer = self.http.post(f"/api/rooms/{room}/messages/", json={"message": text})
        assert answer.status_code == 201, (answer.status_code, answer.text)
        return answer.json()

    def read(self, room: str, seq: int) -> None:
        answer = self.http.post(f"/api/rooms/{room}/read", json={"seq": seq})
        assert answer.status_code == 204, (answer.status_code, answer.text)

    def dm(self, other: str) -> str:
        answer = self.http.post("/api/dms/", json={"username": other})
        assert answer.status_code in (200, 201), (answer.status_code, answer.text)
        return answer.json()["slug"]

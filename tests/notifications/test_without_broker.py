"""Without a broker (``make run``): the email is sent by ``kaiwa serve`` itself, and
``kaiwa worker`` explains that it has nothing to do."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.kaiwa_process import KAIWA, KaiwaServer
from tests.notifications.helpers import SmtpSink, User, body_text, wait_for

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def test_kaiwa_serve_sends_the_email_when_no_broker_is_set(sqlite_env, tmp_path, sink):
    env = dict(sqlite_env, EMAIL_URL=sink.url, KAIWA_EMAIL_BATCH_SECONDS="1")
    server = KaiwaServer(env, tmp_path / "serve.log").start()
    try:
        alice, bob = User(server, "alice"), User(server, "bob")
        bob.join("eager")
        alice.join("eager")
        started = time.monotonic()
        alice.say("eager", "@bob no broker needed")
        (email,) = wait_for(lambda: sink.to("bob@example.com"), 15, "bob's email")
        assert time.monotonic() - started >= 1
        assert "no broker needed" in body_text(email)
    finally:
        server.stop()


def test_kaiwa_worker_refuses_to_start_without_a_broker(sqlite_env):
    done = subprocess.run(
        [KAIWA, "worker"], env=sqlite_env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "no broker configured" in done.stderr

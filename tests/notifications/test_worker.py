"""Missed-message emails end to end: ``kaiwa serve`` and ``kaiwa worker`` processes on
PostgreSQL and the Redis broker, delivering to a real SMTP server (aiosmtpd) in
this process. The batching window is 2 s and the worker's sweep runs every 1 s.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import fresh_postgres_database
from tests.kaiwa_process import KaiwaServer, base_env, create_users
from tests.notifications.helpers import (
    KaiwaWorker,
    SmtpSink,
    User,
    body_html,
    body_text,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

BATCH_SECONDS = 2
BASE_URL = "http://chat.example.test"
USERS = ("alice", "bob", "carol", "dave", "erin")


@dataclass
class Stack:
    env: dict[str, str]
    tmp: Path
    database: str
    sink: SmtpSink
    server: KaiwaServer
    worker: KaiwaWorker

    def user(self, name: str) -> User:
        return User(self.server, name)

    def rows(self, username: str) -> list[tuple[str, str]]:
        """(state, skip_reason) of the user's missed-message rows, oldest first."""
        with psycopg.connect(self.database, autocommit=True) as db:
            return db.execute(
                "SELECT m.state, m.skip_reason FROM notifications_missedmessage m"
                " JOIN auth_user u ON u.id = m.user_id WHERE u.username = %s ORDER BY m.id",
                [username],
            ).fetchall()

    def emails_recorded(self, username: str) -> int:
        with psycopg.connect(self.database, autocommit=True) as db:
            row = db.execute(
                "SELECT count(*) FROM notifications_missedmessageemail e"
                " JOIN auth_user u ON u.id = e.user_id WHERE u.username = %s",
                [username],
            ).fetchone()
            assert row is not None
            return row[0]


@pytest.fixture(scope="module")
def stack(postgres_url, redis_url, tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("notifications")
    prefix = f"kaiwa-test-{uuid.uuid4().hex[:10]}"
    # A database of its own: other modules' pending missed-message rows for
    # the same usernames would join these batches (and be due already).
    database = contextlib.ExitStack()
    postgres_url = database.enter_context(fresh_postgres_database("kaiwa_notify"))
    sink = SmtpSink().start()
    env = base_env(
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        # A prefix of our own: Celery's queues and the channels of this test only.
        KAIWA_REDIS_PREFIX=prefix,
        KAIWA_DATA_DIR=str(tmp / "data"),
        EMAIL_URL=sink.url,
        DEFAULT_FROM_EMAIL="Kaiwa <kaiwa@chat.example.test>",
        KAIWA_EMAIL_BATCH_SECONDS=str(BATCH_SECONDS),
        KAIWA_EMAIL_SWEEP_SECONDS="1",
        KAIWA_BASE_URL=BASE_URL,
    )
    stack = Stack(
        env,
        tmp,
        postgres_url,
        sink,
        KaiwaServer(env, tmp / "serve.log"),
        KaiwaWorker(env, tmp / "worker.log"),
    )
    try:
        create_users(env, *USERS)
        stack.server.start()
        stack.worker.start()
        yield stack
    finally:
        stack.worker.stop()
        stack.server.stop()
        sink.stop()
        # The killed worker's unacknowledged task messages stay in Redis: clear them.
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
        database.close()


def room_name() -> str:
    return f"n-{uuid.uuid4().hex[:10]}"


def test_a_mentioned_user_who_is_away_gets_one_email_when_the_window_closes(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    room = room_name()
    bob.join(room)  # bob is a member, then goes away
    alice.join(room)
    started = time.monotonic()
    alice.say(room, "@bob can you review the release notes?")
    alice.say(room, "no mention here")
    alice.say(room, "and the changelog, @bob.")

    (email,) = wait_for(lambda: stack.sink.to("bob@example.com"), 20, "bob's email")
    assert time.monotonic() - started >= BATCH_SECONDS  # not before the window closed
    assert email["Subject"] == "Kaiwa: 2 unread messages from alice"
    assert email["From"] == "Kaiwa <kaiwa@chat.example.test>"
    assert email["Message-ID"].startswith("<kaiwa.missed.")
    text, html = body_text(email), body_html(email)
    for body in (text, html):
        assert "can you review the release notes?" in body
        assert "and the changelog," in body
        assert "@bob" in body
        assert "no mention here" not in body
        assert f"{BASE_URL}/chat/{room}/" in body
    assert '<span class="mention" data-username="bob">@bob</span>.' in html  # formatted

    time.sleep(BATCH_SECONDS + 1.5)  # wake-up, sweeps and retries have all had their turn
    assert len(stack.sink.to("bob@example.com")) == 1
    assert stack.rows("bob") == [("sent", ""), ("sent", "")]
    assert stack.emails_recorded("bob") == 1


def test_a_message_read_before_the_window_closes_gives_no_email(stack):
    alice, carol = stack.user("alice"), stack.user("carol")
    room = room_name()
    carol.join(room)
    alice.join(room)
    message = alice.say(room, "@carol lunch?")
    carol.read(room, message["seq"])

    # The worker looked at the row and dropped it: no email is not just "not yet".
    wait_for(lambda: stack.rows("carol") != [("pending", "")], 20, "the re-check")
    assert stack.rows("carol") == [("skipped", "read")]
    time.sleep(1)
    assert stack.sink.to("carol@example.com") == []


def test_a_direct_message_emails_the_other_user(stack):
    alice = stack.user("alice")
    slug = alice.dm("erin")
    alice.say(slug, "psst, are you free tomorrow?")

    (email,) = wait_for(lambda: stack.sink.to("erin@example.com"), 20, "erin's email")
    text = body_text(email)
    assert "Direct message from alice" in text
    assert "psst, are you free tomorrow?" in text
    assert f"{BASE_URL}/chat/{slug}/" in text


def test_a_worker_killed_mid_send_and_restarted_sends_exactly_one_email(stack):
    alice, dave = stack.user("alice"), stack.user("dave")
    room = room_name()
    dave.join(room)
    alice.join(room)
    stack.sink.hold("dave@example.com")  # the SMTP conversation stops at RCPT
    alice.say(room, "@dave the build is red")

    assert stack.sink.held.wait(20), "the worker never started sending dave's email"
    stack.worker.kill()  # SIGKILL mid-send, its transaction open and its rows locked
    stack.sink.release()
    # PostgreSQL rolled the dead worker's transaction back: the row is pending again.
    wait_for(lambda: stack.rows("dave") == [("pending", "")], 10, "the rollback")
    assert stack.sink.to("dave@example.com") == []

    # The task message stays with the dead worker until Redis' visibility timeout;
    # the new worker's sweep finds the due row.
    stack.worker = KaiwaWorker(stack.env, stack.tmp / "worker.log").start()
    (email,) = wait_for(lambda: stack.sink.to("dave@example.com"), 20, "dave's email")
    assert "the build is red" in body_text(email)
    time.sleep(2.5)
    assert len(stack.sink.to("dave@example.com")) == 1
    assert stack.rows("dave") == [("sent", "")]
    assert stack.emails_recorded("dave") == 1

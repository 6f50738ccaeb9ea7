"""The Celery tasks and the wake-ups: thin, retried, idempotent."""

import time
from datetime import timedelta
from unittest import mock

from django.core import mail
from django.utils import timezone

from kaiwa.chat import services as chat
from kaiwa.notifications import tasks
from kaiwa.notifications.models import MissedMessage
from tests.notifications.backends import FlakyBackend


def test_the_send_task_retries_an_smtp_failure_and_sends_once(room, alice, bob, settings):
    chat.message_create(room=room, user=alice, username="alice", text="@bob")
    MissedMessage.objects.update(due_at=timezone.now())
    settings.EMAIL_BACKEND = "tests.notifications.backends.FlakyBackend"
    FlakyBackend.failures, FlakyBackend.outbox = 1, []
    result = tasks.missed_message_email_send.apply(args=[bob.pk], throw=False)  # eager: no delay
    assert result.successful(), result.traceback
    assert result.result is not None  # the second try sent it
    assert FlakyBackend.failures == 0
    assert len(FlakyBackend.outbox) == 1
    assert tasks.missed_message_email_send.apply(args=[bob.pk]).result is None
    assert len(FlakyBackend.outbox) == 1


def test_the_send_task_is_acked_late():
    assert tasks.missed_message_email_send.acks_late
    assert tasks.missed_message_emails_sweep.acks_late


def test_the_sweep_queues_a_send_per_due_user(room, alice, bob, carol):
    chat.message_create(room=room, user=alice, username="alice", text="@bob @carol")
    MissedMessage.objects.filter(user=bob).update(due_at=timezone.now() - timedelta(seconds=1))
    with mock.patch.object(tasks.missed_message_email_send, "delay") as delay:
        assert tasks.missed_message_emails_sweep.apply().result == 1
    delay.assert_called_once_with(bob.pk)


def test_without_a_broker_the_wake_up_arms_the_alarm(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    armed = []
    monkeypatch.setattr(tasks.alarm, "arm", armed.append)
    at = timezone.now()
    with mock.patch.object(tasks.missed_message_email_send, "apply_async") as apply_async:
        tasks.missed_message_wake_up(user_id=1, at=at)
    assert armed == [at]
    apply_async.assert_not_called()


def test_the_alarm_sends_what_is_due_then_sleeps_until_the_next(
    transactional_db, room, alice, bob, carol
):
    chat.message_create(room=room, user=alice, username="alice", text="@bob due now")
    MissedMessage.objects.update(due_at=timezone.now())
    chat.message_create(room=room, user=alice, username="alice", text="@carol later")
    later = MissedMessage.objects.get(user=carol).due_at

    alarm = tasks.Alarm()
    alarm.arm(timezone.now() + timedelta(seconds=0.1))
    alarm.arm(later)  # a later wake-up does not postpone an earlier one
    deadline = time.monotonic() + 10
    while not mail.outbox and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert [m.to for m in mail.outbox] == [["bob@example.com"]]
        deadline = time.monotonic() + 5
        while alarm._at != later and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alarm._at == later  # re-armed for carol's batch
    finally:
        if alarm._timer is not None:
            alarm._timer.cancel()

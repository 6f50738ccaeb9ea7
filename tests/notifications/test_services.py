"""Queueing missed messages and sending their emails: batching, re-checks, failures."""

import smtplib
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from kaiwa.chat import services as chat
from kaiwa.chat.models import Membership
from kaiwa.notifications import services, tasks
from kaiwa.notifications.models import MissedMessage, MissedMessageEmail


def say(room, user, text):
    message, created = chat.message_create(room=room, user=user, username=user.username, text=text)
    assert created
    return message


def rows(user):
    return list(MissedMessage.objects.filter(user=user).values_list("state", "skip_reason"))


# --- queueing (the hook in chat.services.message_create) -------------------------------


def test_message_create_writes_a_row_per_mentioned_member(room, alice, bob, carol, settings):
    before = timezone.now()
    message = say(room, alice, "@bob @carol @dave standup?")
    queued = MissedMessage.objects.order_by("user_id")
    assert [(r.user, r.message, r.reason, r.state) for r in queued] == [
        (bob, message, "mention", "pending"),
        (carol, message, "mention", "pending"),
    ]
    window = timedelta(seconds=settings.KAIWA_EMAIL_BATCH_SECONDS)
    assert all(before + window <= r.due_at <= timezone.now() + window for r in queued)


def test_a_guests_mention_queues_nothing(room, bob, settings):
    settings.KAIWA_ALLOW_GUESTS = True
    # A guest (KAIWA_ALLOW_GUESTS) posts with no user and a guest-<hex> name.
    message, _ = chat.message_create(room=room, user=None, username="guest-1a2b3c4d", text="@bob")
    assert message.author_id is None
    assert MissedMessage.objects.count() == 0


def test_a_retried_client_id_queues_nothing_twice(room, alice, bob):
    chat.message_create(room=room, user=alice, username="alice", text="@bob", client_id="c1")
    chat.message_create(room=room, user=alice, username="alice", text="@bob", client_id="c1")
    assert MissedMessage.objects.count() == 1


def test_a_dm_writes_a_row_for_the_other_user(alice, bob):
    dm, _ = chat.dm_open(user=alice, other_username="bob")
    say(dm, alice, "psst")
    assert list(MissedMessage.objects.values_list("user", "reason")) == [(bob.pk, "dm")]


def test_the_wake_up_is_scheduled_on_commit_at_the_due_time(
    room, alice, bob, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with mock.patch.object(tasks.missed_message_email_send, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            say(room, alice, "@bob")
        apply_async.assert_not_called()  # not before commit
        for callback in callbacks:
            callback()
    row = MissedMessage.objects.get()
    apply_async.assert_called_once_with(args=[bob.pk], eta=row.due_at, retry=False)


def test_a_broker_failure_does_not_cost_the_broadcast(
    room, alice, bob, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with (
        mock.patch.object(
            tasks.missed_message_email_send, "apply_async", side_effect=ConnectionError
        ),
        mock.patch("kaiwa.chat.realtime.publish.publish_message") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        say(room, alice, "@bob")
    publish.assert_called_once()
    assert rows(bob) == [("pending", "")]


# --- sending -------------------------------------------------------------------------


def test_nothing_is_sent_before_the_window_closes(room, alice, bob, mailoutbox):
    say(room, alice, "@bob")
    assert services.missed_message_email_send(user_id=bob.pk) is None
    assert mailoutbox == []
    assert rows(bob) == [("pending", "")]


def test_one_email_lists_every_message_of_the_batch(room, alice, bob, carol, mailoutbox, later):
    say(room, alice, "@bob first")
    say(room, carol, "unrelated")
    say(room, carol, "@bob second")
    dm, _ = chat.dm_open(user=alice, other_username="bob")
    say(dm, alice, "third, in private")

    email = services.missed_message_email_send(user_id=bob.pk, now=later)

    assert email is not None
    (sent,) = mailoutbox
    assert sent.to == ["bob@example.com"]
    assert sent.subject == "Kaiwa: 3 unread messages from alice, carol"
    for text in ("@bob first", "@bob second", "third, in private"):
        assert text in sent.body
        assert text.removeprefix("@bob ") in sent.alternatives[0][0]  # @bob is marked up there
    assert "unrelated" not in sent.body
    assert "http://127.0.0.1:8000/chat/general/" in sent.body
    assert f"http://127.0.0.1:8000/chat/{dm.slug}/" in sent.body
    assert sent.extra_headers["Message-ID"] == email.message_id
    assert rows(bob) == [("sent", "")] * 3
    assert set(MissedMessage.objects.values_list("email", flat=True)) == {email.pk}


def test_a_second_run_sends_nothing(room, alice, bob, mailoutbox, later):
    say(room, alice, "@bob")
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is not None
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert len(mailoutbox) == 1
    assert MissedMessageEmail.objects.count() == 1


def test_the_next_email_lists_only_what_came_since(room, alice, bob, mailoutbox, later):
    say(room, alice, "@bob one")
    services.missed_message_email_send(user_id=bob.pk, now=later)
    say(room, alice, "@bob two")
    assert services.missed_message_email_send(user_id=bob.pk) is None  # a new window
    services.missed_message_email_send(user_id=bob.pk, now=later + timedelta(seconds=200))
    assert len(mailoutbox) == 2
    assert "one" not in mailoutbox[1].body
    assert "@bob two" in mailoutbox[1].body


def test_a_batch_is_due_with_its_oldest_row(room, alice, bob, mailoutbox, settings):
    first = say(room, alice, "@bob early")
    MissedMessage.objects.filter(message=first).update(due_at=timezone.now())
    say(room, alice, "@bob just now")
    services.missed_message_email_send(user_id=bob.pk)
    (sent,) = mailoutbox
    assert "early" in sent.body
    assert "just now" in sent.body


# --- re-checks just before sending ---------------------------------------------------------


def test_a_message_read_before_the_window_closes_sends_nothing(room, alice, bob, mailoutbox, later):
    message = say(room, alice, "@bob")
    chat.membership_read(room=room, user=bob, seq=message.seq)
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert mailoutbox == []
    assert rows(bob) == [("skipped", "read")]


def test_reading_past_one_message_keeps_the_later_one(room, alice, bob, mailoutbox, later):
    first = say(room, alice, "@bob read this one")
    say(room, alice, "@bob but not this one")
    chat.membership_read(room=room, user=bob, seq=first.seq)
    services.missed_message_email_send(user_id=bob.pk, now=later)
    (sent,) = mailoutbox
    assert "not this one" in sent.body
    assert "read this one" not in sent.body
    assert sorted(rows(bob)) == [("sent", ""), ("skipped", "read")]


def test_a_deleted_message_is_not_sent(room, alice, bob, mailoutbox, later):
    say(room, alice, "@bob oops").delete()
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert mailoutbox == []
    assert rows(bob) == [("skipped", "deleted")]


def test_a_message_deleted_through_the_service_is_not_sent(room, alice, bob, mailoutbox, later):
    message = say(room, alice, "@bob sorry, wrong room")
    chat.message_delete(room=room, user=alice, message_id=message.pk)
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert mailoutbox == []
    assert rows(bob) == [("skipped", "deleted")]


def test_the_email_shows_the_formatted_text_safely(room, alice, bob, mailoutbox, later):
    say(room, alice, "@bob *look* <script>x()</script>")
    services.missed_message_email_send(user_id=bob.pk, now=later)
    (sent,) = mailoutbox
    html = sent.alternatives[0][0]
    assert "<em>look</em>" in html
    assert "<script>" not in html
    assert '<span class="mention" data-username="bob">@bob</span>' in html
    assert "*look*" in sent.body  # the text part keeps the raw text


def test_a_user_who_left_the_room_is_not_told(room, alice, bob, mailoutbox, later):
    say(room, alice, "@bob")
    Membership.objects.filter(room=room, user=bob).delete()
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert rows(bob) == [("skipped", "not_member")]


@pytest.mark.parametrize(
    ("change", "reason"), [({"is_active": False}, "inactive"), ({"email": ""}, "no_address")]
)
def test_a_user_who_cannot_be_mailed_is_skipped(
    room, alice, bob, mailoutbox, later, change, reason
):
    say(room, alice, "@bob")
    for name, value in change.items():
        setattr(bob, name, value)
    bob.save()
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert mailoutbox == []
    assert rows(bob) == [("skipped", reason)]


# --- failures ------------------------------------------------------------------------------


def test_an_smtp_failure_leaves_everything_pending_for_the_retry(
    room, alice, bob, mailoutbox, later, settings
):
    say(room, alice, "@bob")
    settings.EMAIL_BACKEND = "tests.notifications.backends.DisconnectingBackend"
    with pytest.raises(smtplib.SMTPServerDisconnected):
        services.missed_message_email_send(user_id=bob.pk, now=later)
    assert rows(bob) == [("pending", "")]
    assert MissedMessageEmail.objects.count() == 0

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is not None
    assert len(mailoutbox) == 1
    assert rows(bob) == [("sent", "")]


def test_a_refused_address_is_not_retried(room, alice, bob, later, settings):
    say(room, alice, "@bob")
    settings.EMAIL_BACKEND = "tests.notifications.backends.RefusingBackend"
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert rows(bob) == [("skipped", "refused")]
    assert MissedMessageEmail.objects.count() == 0


def test_the_message_id_is_the_same_for_a_resent_batch(room, alice, bob, later):
    say(room, alice, "@bob")
    row = MissedMessage.objects.select_related("message__room").get()
    first = services.missed_message_email_build(user=bob, rows=[row])
    again = services.missed_message_email_build(user=bob, rows=[row])
    assert first.extra_headers["Message-ID"] == again.extra_headers["Message-ID"]
    assert first.extra_headers["Message-ID"] == f"<kaiwa.missed.{bob.pk}.{row.pk}@127.0.0.1>"


def test_the_sweep_sends_every_due_batch(room, alice, bob, carol, mailoutbox, later):
    say(room, alice, "@bob @carol")
    say(room, bob, "@alice")
    assert services.missed_message_emails_send_due(now=later) == 3
    assert sorted(m.to[0] for m in mailoutbox) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    assert services.missed_message_emails_send_due(now=later) == 0


def test_the_subject_names_three_authors_at_most(room, bob, mailoutbox, later):
    from tests.factories import MembershipFactory, UserFactory

    for n in range(5):
        author = UserFactory(username=f"author{n}-" + "x" * 100)
        MembershipFactory(room=room, user=author)
        say(room, author, "@bob hello")
    email = services.missed_message_email_send(user_id=bob.pk, now=later)
    assert email is not None
    (sent,) = mailoutbox
    assert sent.subject.startswith("Kaiwa: 5 unread messages from author0-")
    assert sent.subject.endswith(" and others")
    assert "author3" not in sent.subject
    assert email.subject == sent.subject[:255]


def test_an_email_refused_for_good_is_given_up_and_blocks_nothing(
    room, alice, bob, mailoutbox, later, settings
):
    say(room, alice, "@bob first")
    settings.EMAIL_BACKEND = "tests.notifications.backends.TooLargeBackend"
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is None
    assert rows(bob) == [("skipped", "refused")]
    assert MissedMessageEmail.objects.count() == 0

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    say(room, alice, "@bob second")
    later_still = later + timedelta(seconds=settings.KAIWA_EMAIL_BATCH_SECONDS + 1)
    assert services.missed_message_email_send(user_id=bob.pk, now=later_still) is not None
    (email,) = mailoutbox
    assert "second" in email.body
    assert "first" not in email.body


def test_a_temporary_refusal_stays_pending_for_the_retry(room, alice, bob, later, settings):
    say(room, alice, "@bob")
    settings.EMAIL_BACKEND = "tests.notifications.backends.FullMailboxBackend"
    with pytest.raises(smtplib.SMTPDataError):
        services.missed_message_email_send(user_id=bob.pk, now=later)
    assert rows(bob) == [("pending", "")]


def test_an_email_lists_at_most_the_cap_and_counts_the_rest(
    room, alice, bob, mailoutbox, later, settings
):
    settings.KAIWA_EMAIL_MAX_MESSAGES = 3
    for n in range(8):
        say(room, alice, f"@bob number {n}")
    assert services.missed_message_email_send(user_id=bob.pk, now=later) is not None
    (email,) = mailoutbox
    listed = [n for n in range(8) if f"number {n}" in email.body]
    assert listed == [0, 1, 2]
    assert "8 messages" in email.body
    assert "...and 5 more messages, in #general" in email.body
    assert "5 more messages" in email.alternatives[0][0]
    assert set(rows(bob)) == {("sent", "")}  # all of them are accounted for

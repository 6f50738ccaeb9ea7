"""Retention (kaiwa.chat.retention): old room events deleted in batches, seq
gapless above the purge point, a resume from below it answered with reset,
feeds that forget what was deleted, and the missed-message rows cleaned up."""

import io
import subprocess
import sys
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from kaiwa.chat import retention, selectors, services, tasks
from kaiwa.chat.models import Message, MessageVersion, Reaction, Room, RoomEvent
from kaiwa.chat.realtime.feed import RoomFeed
from kaiwa.notifications import services as notification_services
from kaiwa.notifications.models import MissedMessage, MissedMessageEmail
from tests.communicator import join
from tests.factories import RoomFactory, UserFactory

NOW = timezone.now()


def say(room, user, text, days_ago=0):
    """Store ``text`` as if posted ``days_ago`` days before NOW."""
    message = services.message_create(room=room, user=user, username=user.username, text=text)[0]
    Message.objects.filter(pk=message.pk).update(created_at=NOW - timedelta(days=days_ago))
    return message


def aged_events(room, days_ago):
    RoomEvent.objects.filter(room=room).update(created_at=NOW - timedelta(days=days_ago))


def seqs_above(room):
    """The seqs a resume from the room's purge point replays."""
    room.refresh_from_db()
    backlog = selectors.message_backlog(room=room, after=room.purged_seq)
    assert backlog.reset_seq is None
    return [int(frame.split('"seq":')[1].split(",")[0]) for frame in backlog.frames]


@pytest.fixture
def lobby():
    return RoomFactory(slug="lobby")


@pytest.mark.django_db
def test_it_deletes_what_is_older_than_the_retention_and_keeps_seq_gapless(settings, lobby, alice):
    settings.KAIWA_RETENTION_DAYS = 30
    old = [say(lobby, alice, f"old {n}", days_ago=40) for n in range(5)]
    services.message_edit(room=lobby, user=alice, message_id=old[1].pk, text="old, edited")
    aged_events(lobby, 39)  # the edit is old too: seq 6
    fresh = [say(lobby, alice, f"new {n}", days_ago=1) for n in range(3)]  # seqs 7-9

    (done,) = retention.retention_apply(now=NOW)

    assert (done.purged_seq, done.messages, done.events) == (6, 5, 1)
    assert list(Message.objects.filter(room=lobby).values_list("seq", flat=True)) == [7, 8, 9]
    assert not RoomEvent.objects.filter(room=lobby).exists()
    assert not MessageVersion.objects.filter(message_id=old[1].pk).exists()
    assert seqs_above(lobby) == [m.seq for m in fresh]
    # A resume from below the purge point cannot be answered: reset to the latest.
    backlog = selectors.message_backlog(room=lobby, after=3)
    assert (backlog.frames, backlog.reset_seq) == ([], 9)
    assert selectors.message_backlog(room=lobby, after=0).reset_seq == 9
    # A join without after gets the kept messages only.
    joined = selectors.message_backlog(room=lobby, after=None)
    assert ["old" in frame for frame in joined.frames] == [False] * 3


@pytest.mark.django_db
def test_pending_missed_message_rows_of_deleted_messages_are_let_go(settings, lobby, alice, bob):
    settings.KAIWA_RETENTION_DAYS = 30
    old = say(lobby, alice, "old", days_ago=40)
    services.message_edit(room=lobby, user=alice, message_id=old.pk, text="old, edited")
    services.reaction_set(room=lobby, user=bob, message_id=old.pk, emoji="+1", on=True)
    aged_events(lobby, 40)
    row = MissedMessage.objects.create(
        user=bob, room=lobby, message=old, reason="mention", due_at=NOW
    )

    (done,) = retention.retention_apply(now=NOW)

    assert (done.messages, done.events) == (1, 2)
    row.refresh_from_db()
    assert (row.message_id, row.state) == (None, "pending")  # the email re-check skips it
    assert not Reaction.objects.exists()
    assert not MessageVersion.objects.exists()


@pytest.mark.django_db
def test_a_message_with_a_newer_reaction_stays_until_it_ages_out(settings, lobby, alice, bob):
    settings.KAIWA_RETENTION_DAYS = 30
    first = say(lobby, alice, "first", days_ago=40)
    say(lobby, alice, "second", days_ago=40)
    services.reaction_set(room=lobby, user=bob, message_id=first.pk, emoji="+1", on=True)  # seq 3
    say(lobby, bob, "third", days_ago=1)  # seq 4

    retention.retention_apply(now=NOW)

    lobby.refresh_from_db()
    assert lobby.purged_seq == 2
    # Deleting "first" would delete its reaction (seq 3) and leave a hole.
    assert list(Message.objects.filter(room=lobby).values_list("text", flat=True)) == [
        "first",
        "third",
    ]
    assert seqs_above(lobby) == [3, 4]
    assert Reaction.objects.filter(message=first).count() == 1

    aged_events(lobby, 35)  # a month later the reaction is old as well
    retention.retention_apply(now=NOW)

    lobby.refresh_from_db()
    assert lobby.purged_seq == 3
    assert list(Message.objects.filter(room=lobby).values_list("text", flat=True)) == ["third"]
    assert seqs_above(lobby) == [4]


@pytest.mark.django_db
def test_it_deletes_in_batches_of_the_batch_size(settings, lobby, alice):
    settings.KAIWA_RETENTION_DAYS = 1
    for n in range(7):
        say(lobby, alice, f"old {n}", days_ago=2)
    say(lobby, alice, "new")

    done = retention.room_retention_apply(room=lobby, now=NOW, batch_size=3)

    assert (done.purged_seq, done.messages) == (7, 7)
    assert seqs_above(lobby) == [8]


@pytest.mark.django_db
def test_a_rooms_own_retention_wins_over_the_global_one(settings, alice):
    forever, short, default = (RoomFactory(slug=s) for s in ("forever", "short", "default"))
    Room.objects.filter(slug="forever").update(retention_days=0)
    Room.objects.filter(slug="short").update(retention_days=3)
    for room in (forever, short, default):
        say(room, alice, "ten days old", days_ago=10)

    settings.KAIWA_RETENTION_DAYS = 0  # global: forever; "short" still applies its own
    assert [p.room for p in retention.retention_apply(now=NOW)] == ["short"]

    settings.KAIWA_RETENTION_DAYS = 7
    assert [p.room for p in retention.retention_apply(now=NOW)] == ["default"]
    assert Message.objects.filter(room__slug="forever").count() == 1
    assert retention.retention_apply(now=NOW) == []  # idempotent


@pytest.mark.django_db
def test_the_command_and_the_task_apply_it(settings, lobby, alice):
    settings.KAIWA_RETENTION_DAYS = 30
    say(lobby, alice, "old", days_ago=31)
    out = io.StringIO()
    call_command("retention_apply", "--room", "lobby", stdout=out)
    assert (
        out.getvalue().strip()
        == "lobby: purged to seq 1, 1 messages and 0 other room events deleted"
    )
    out = io.StringIO()
    call_command("retention_apply", stdout=out)
    assert out.getvalue().strip() == "Nothing to delete."
    out = io.StringIO()
    call_command("retention_apply", "--room", "lobby", stdout=out)
    assert out.getvalue().strip() == "Nothing to delete."  # no line for an unchanged room
    say(lobby, alice, "old too", days_ago=31)
    assert tasks.retention_sweep() == 1


def test_a_feed_forgets_what_was_purged():
    feed = RoomFeed(slug="r")
    feed.recent_max = 10
    frame = lambda seq: f'{{"type":"message","room":"r","seq":{seq},"id":{seq},"message":"m"}}'  # noqa: E731
    feed.start(5, [(seq, frame(seq)) for seq in range(1, 6)])
    assert feed.backlog(0, 50, 1000) is not None  # memory answers a resume from 0

    feed.purge(3)

    assert feed.backlog(0, 50, 1000) is None  # the database answers: reset
    frames, reset, latest = feed.backlog(3, 50, 1000)
    assert (len(frames), reset, latest) == (2, None, 5)
    # A feed opened on a purged room answers nothing below the purge point.
    opened = RoomFeed(slug="r")
    opened.recent_max = 10
    opened.start(5, [(seq, frame(seq)) for seq in range(4, 6)], 3)
    assert opened.backlog(1, 50, 1000) is None


@pytest.mark.django_db(transaction=True)
async def test_a_socket_resuming_below_the_purge_point_gets_reset(settings):
    settings.KAIWA_RETENTION_DAYS = 30
    alice = await database_sync_to_async(UserFactory)(username="alice")
    room = await database_sync_to_async(RoomFactory)(slug="lobby")
    for n in range(3):
        await database_sync_to_async(say)(room, alice, f"old secret {n}", days_ago=40)
    watcher = await join(user=alice)  # the feed now remembers the old messages
    assert len(watcher.backlog) == 3

    await database_sync_to_async(retention.retention_apply)(now=NOW)
    await database_sync_to_async(say)(room, alice, "new")
    assert (await watcher.recv())["message"] == "new"

    resumed = await join("/ws/chat/lobby/?after=0", user=alice)
    assert resumed.backlog == [{"type": "reset", "seq": 4}]
    exact = await join("/ws/chat/lobby/?after=3", user=alice)
    assert [f["message"] for f in exact.backlog] == ["new"]
    fresh = await join(user=alice)
    assert [f["message"] for f in fresh.backlog] == ["new"]
    for socket in (watcher, resumed, exact, fresh):
        await socket.disconnect()


@pytest.mark.django_db
def test_missed_message_history_is_cleaned_up_and_pending_rows_stay(settings, lobby, alice, bob):
    message = say(lobby, alice, "hi")
    old = NOW - timedelta(days=40)
    email = MissedMessageEmail.objects.create(
        user=bob, message_id="<x@kaiwa>", to="bob@example.com", subject="s"
    )
    MissedMessageEmail.objects.filter(pk=email.pk).update(sent_at=old)
    sent = MissedMessage.objects.create(
        user=bob,
        room=lobby,
        message=message,
        reason="mention",
        state="sent",
        due_at=old,
        email=email,
    )
    pending = MissedMessage.objects.create(
        user=alice, room=lobby, message=message, reason="mention", due_at=old
    )
    MissedMessage.objects.filter(pk__in=[sent.pk, pending.pk]).update(created_at=old)

    assert notification_services.missed_messages_cleanup(now=NOW, keep_days=30) == (1, 1)
    assert list(MissedMessage.objects.values_list("pk", flat=True)) == [pending.pk]
    assert notification_services.missed_messages_cleanup(now=NOW, keep_days=0) == (0, 0)


@pytest.mark.parametrize("env", [{"KAIWA_RETENTION_DAYS": "-1"}, {"KAIWA_RETENTION_BATCH": "0"}])
def test_bad_retention_settings_fail_closed(env):
    done = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={"DJANGO_DEBUG": "1", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "KAIWA_RETENTION" in done.stderr

import orjson
import pytest
from django.test import override_settings

from kaiwa.chat import selectors
from kaiwa.chat.errors import RoomNotFound
from kaiwa.chat.models import Room
from tests.factories import MembershipFactory, MessageFactory, RoomFactory

pytestmark = pytest.mark.django_db


def test_room_list_visible_hides_foreign_private_rooms(alice, bob):
    RoomFactory(slug="public")
    secret = RoomFactory(slug="secret", private=True)
    MembershipFactory(room=secret, user=bob)
    assert [r.slug for r in selectors.room_list_visible(user=alice)] == ["public"]
    assert [r.slug for r in selectors.room_list_visible(user=bob)] == ["public", "secret"]


def test_room_get_visible_answers_not_found_for_foreign_private_room(alice):
    RoomFactory(slug="secret", private=True)
    with pytest.raises(RoomNotFound):
        selectors.room_get_visible(user=alice, slug="secret")
    with pytest.raises(RoomNotFound):
        selectors.room_get_visible(user=alice, slug="missing")


def _room_with(n):
    room = RoomFactory()
    for _ in range(n):
        MessageFactory(room=room)
    room.refresh_from_db()
    return room


def seqs(frames):
    return [orjson.loads(f)["seq"] for f in frames]


def test_message_list_pages(alice):
    room = _room_with(10)
    assert [m.seq for m in selectors.message_list(room=room, limit=3)] == [8, 9, 10]
    assert [m.seq for m in selectors.message_list(room=room, after=2, limit=3)] == [3, 4, 5]
    assert [m.seq for m in selectors.message_list(room=room, before=5, limit=3)] == [2, 3, 4]
    assert [m.seq for m in selectors.message_list(room=room, after=2, before=5)] == [3, 4]


@override_settings(KAIWA_BACKLOG_MESSAGES=4, KAIWA_RESUME_LIMIT=5)
def test_message_backlog_without_after_is_the_last_messages(alice):
    room = _room_with(10)
    backlog = selectors.message_backlog(room=room, after=None)
    assert seqs(backlog.frames) == [7, 8, 9, 10]
    assert backlog.reset_seq is None
    assert backlog.latest_seq == 10


@override_settings(KAIWA_RESUME_LIMIT=5)
def test_message_backlog_resumes_after_seq(alice):
    room = _room_with(10)
    backlog = selectors.message_backlog(room=room, after=6)
    assert seqs(backlog.frames) == [7, 8, 9, 10]
    assert selectors.message_backlog(room=room, after=10).frames == []


@override_settings(KAIWA_RESUME_LIMIT=5)
def test_message_backlog_resets_when_too_much_is_missing_or_after_is_ahead(alice):
    room = _room_with(10)
    assert selectors.message_backlog(room=room, after=4).reset_seq == 10
    assert selectors.message_backlog(room=room, after=5).reset_seq is None
    assert selectors.message_backlog(room=room, after=11).reset_seq == 10


def test_room_event_range_reads_the_gap(alice):
    room = _room_with(6)
    rows = selectors.room_event_range(room_slug=room.slug, after=2, before=5)
    assert [seq for seq, _ in rows] == [3, 4]
    assert seqs([frame for _, frame in rows]) == [3, 4]


def test_message_backlog_stops_at_the_seq_it_reports(alice):
    # A message committed between reading last_seq and reading the page must
    # not be in the backlog: the live stream delivers it after `ready`.
    room = _room_with(5)
    Room.objects.filter(pk=room.pk).update(last_seq=4)  # read before seq 5 committed
    backlog = selectors.message_backlog(room=room, after=None)
    assert seqs(backlog.frames) == [1, 2, 3, 4]
    assert backlog.latest_seq == 4


def test_room_snapshots_read_many_rooms_at_once_each_with_its_own_answer(alice):
    """selectors.room_snapshots: one answer per request, in order, for rooms
    with events, an empty room, a room whose oldest events retention purged,
    and an unknown room; a room asked for twice answers twice."""
    busy = _room_with(5)
    empty = RoomFactory(slug="empty")
    purged = _room_with(4)
    Room.objects.filter(pk=purged.pk).update(purged_seq=3)
    requests = [(busy.slug, 3), ("empty", 10), (purged.slug, 10), ("nowhere", 5), (busy.slug, 0)]
    answers = selectors.room_snapshots(requests=requests)
    latest, recent, purged_seq = answers[0]
    assert (latest, [seq for seq, _ in recent], purged_seq) == (5, [3, 4, 5], 0)
    assert seqs([frame for _, frame in recent]) == [3, 4, 5]
    assert answers[1] == (0, [], 0)
    assert empty.last_seq == 0
    latest, recent, purged_seq = answers[2]
    assert (latest, [seq for seq, _ in recent], purged_seq) == (4, [4], 3)
    assert isinstance(answers[3], RoomNotFound)
    assert answers[4] == (5, [], 0)  # no memory asked for

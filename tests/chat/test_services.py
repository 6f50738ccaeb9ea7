import pytest

from kaiwa.chat import services
from kaiwa.chat.errors import MessageInvalid, RoomForbidden, RoomNotFound
from kaiwa.chat.models import Membership, Message, Room
from tests.factories import MembershipFactory, RoomFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_room_join_creates_a_public_room_and_membership(alice):
    room = services.room_join(user=alice, slug="lobby")
    assert room.slug == "lobby"
    assert not room.private
    assert room.last_seq == 0
    assert Membership.objects.filter(room=room, user=alice).exists()


def test_room_join_is_idempotent(alice):
    first = services.room_join(user=alice, slug="lobby")
    second = services.room_join(user=alice, slug="lobby")
    assert first.pk == second.pk
    assert Membership.objects.filter(room=first, user=alice).count() == 1


@pytest.mark.parametrize("slug", ["", "a b", "x" * 65, "ü", "a/b", "a.b"])
def test_room_join_rejects_bad_names(alice, slug):
    with pytest.raises(RoomNotFound):
        services.room_join(user=alice, slug=slug)
    assert not Room.objects.exists()


def test_room_join_rejects_foreign_private_room(alice, bob):
    room = RoomFactory(slug="secret", private=True)
    MembershipFactory(room=room, user=bob)
    with pytest.raises(RoomForbidden):
        services.room_join(user=alice, slug="secret")
    with pytest.raises(RoomForbidden):
        services.room_join(user=None, slug="secret")
    assert services.room_join(user=bob, slug="secret") == room


def test_message_create_assigns_gapless_seq(alice, django_capture_on_commit_callbacks):
    room = services.room_join(user=alice, slug="lobby")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        seqs = [
            services.message_create(room=room, user=alice, username="alice", text=f"m{i}")[0].seq
            for i in range(5)
        ]
    assert seqs == [1, 2, 3, 4, 5]
    assert len(callbacks) == 5  # one broadcast per stored message, on commit
    room.refresh_from_db()
    assert room.last_seq == 5


def test_message_create_with_same_client_id_returns_the_original(alice):
    room = services.room_join(user=alice, slug="lobby")
    first, created = services.message_create(
        room=room, user=alice, username="alice", text="hi", client_id="c-1"
    )
    again, created_again = services.message_create(
        room=room, user=alice, username="alice", text="hi (retry)", client_id="c-1"
    )
    assert created
    assert not created_again
    assert (again.pk, again.seq, again.text) == (first.pk, first.seq, "hi")
    room.refresh_from_db()
    assert room.last_seq == 1
    assert Message.objects.count() == 1


def test_client_id_is_scoped_to_the_author(alice, bob):
    room = services.room_join(user=alice, slug="lobby")
    a, _ = services.message_create(room=room, user=alice, username="alice", text="a", client_id="c")
    b, created = services.message_create(
        room=room, user=bob, username="bob", text="b", client_id="c"
    )
    assert created
    assert b.seq == a.seq + 1


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "bad_frame"),
        ("", "bad_frame"),
        (42, "bad_frame"),
        (["x"], "bad_frame"),
        ("x" * 4001, "too_long"),
        ("a NUL \x00 inside", "bad_frame"),
        ("a lone surrogate \ud800", "bad_frame"),
    ],
)
def test_message_create_rejects_bad_text(alice, text, code):
    room = services.room_join(user=alice, slug="lobby")
    with pytest.raises(MessageInvalid) as info:
        services.message_create(room=room, user=alice, username="alice", text=text)
    assert info.value.code == code
    room.refresh_from_db()
    assert room.last_seq == 0
    assert not Message.objects.exists()


@pytest.mark.parametrize("client_id", ["", "x" * 65, 7, {"a": 1}])
def test_message_create_rejects_bad_client_id(alice, client_id):
    room = services.room_join(user=alice, slug="lobby")
    with pytest.raises(MessageInvalid):
        services.message_create(
            room=room, user=alice, username="alice", text="hi", client_id=client_id
        )
    assert not Message.objects.exists()


def test_message_create_accepts_the_longest_message(alice):
    room = services.room_join(user=alice, slug="lobby")
    message, _ = services.message_create(room=room, user=alice, username="alice", text="あ" * 4000)
    assert len(message.text) == 4000


def test_failed_insert_leaves_no_gap(alice, monkeypatch):
    room = services.room_join(user=alice, slug="lobby")

    def broken_create(*args, **kwargs):
        raise RuntimeError("insert failed")

    monkeypatch.setattr(Message.objects, "bulk_create", broken_create)
    with pytest.raises(RuntimeError):
        services.message_create(room=room, user=alice, username="alice", text="lost")
    monkeypatch.undo()
    room.refresh_from_db()
    assert room.last_seq == 0
    message, _ = services.message_create(room=room, user=alice, username="alice", text="kept")
    assert message.seq == 1


def test_membership_read_only_moves_forward(alice, django_capture_on_commit_callbacks):
    room = services.room_join(user=alice, slug="lobby")
    for i in range(5):
        services.message_create(room=room, user=alice, username="alice", text=str(i))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.membership_read(room=room, user=alice, seq=3) == 3
        assert services.membership_read(room=room, user=alice, seq=1) == 3
        assert services.membership_read(room=room, user=alice, seq=99) == 5  # capped at last_seq
    assert len(callbacks) == 2  # 3, then 5; moving back tells no one


@pytest.mark.parametrize("seq", [-1, "3", None, 1.5, True])
def test_membership_read_rejects_bad_seq(alice, seq):
    room = services.room_join(user=alice, slug="lobby")
    with pytest.raises(MessageInvalid):
        services.membership_read(room=room, user=alice, seq=seq)


def test_membership_read_needs_membership(alice, bob):
    room = services.room_join(user=alice, slug="lobby")
    with pytest.raises(RoomForbidden):
        services.membership_read(room=room, user=bob, seq=0)


def test_dm_open_is_the_same_private_room_both_ways(alice, bob):
    room, created = services.dm_open(user=alice, other_username="bob")
    again, created_again = services.dm_open(user=bob, other_username="alice")
    assert created
    assert not created_again
    assert room.pk == again.pk
    assert room.private
    assert room.slug == f"dm-{min(alice.pk, bob.pk)}-{max(alice.pk, bob.pk)}"
    assert set(room.members.values_list("username", flat=True)) == {"alice", "bob"}


def test_dm_open_rejects_unknown_user(alice):
    with pytest.raises(RoomNotFound):
        services.dm_open(user=alice, other_username="nobody")
    with pytest.raises(MessageInvalid):
        services.dm_open(user=alice, other_username=None)


def test_inactive_users_cannot_be_dmed(alice):
    UserFactory(username="gone", is_active=False)
    with pytest.raises(RoomNotFound):
        services.dm_open(user=alice, other_username="gone")


def test_message_create_accepts_a_single_space(alice):
    room = services.room_join(user=alice, slug="lobby")
    assert services.message_create(room=room, user=alice, username="alice", text=" ")[0].seq == 1


def test_message_create_batch_keeps_post_order_per_room(
    alice, bob, django_capture_on_commit_callbacks
):
    lobby = services.room_join(user=alice, slug="lobby")
    other = services.room_join(user=alice, slug="other")
    posts = [
        services.Post(room=lobby, user=alice, username="alice", text="l1"),
        services.Post(room=other, user=bob, username="bob", text="o1"),
        services.Post(room=lobby, user=bob, username="bob", text="l2"),
        services.Post(room=lobby, user=alice, username="alice", text="l3"),
    ]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        results = services.message_create_batch(posts=posts)
    assert [(m.room.slug, m.seq, m.text, created) for m, created in results] == [
        ("lobby", 1, "l1", True),
        ("other", 1, "o1", True),
        ("lobby", 2, "l2", True),
        ("lobby", 3, "l3", True),
    ]
    assert len(callbacks) == 4
    assert all(m.pk for m, _ in results)


def test_message_create_batch_dedupes_client_ids_within_and_across_batches(alice):
    lobby = services.room_join(user=alice, slug="lobby")
    ((first, _),) = services.message_create_batch(
        posts=[services.Post(room=lobby, user=alice, username="alice", text="a", client_id="c1")]
    )
    results = services.message_create_batch(
        posts=[
            services.Post(room=lobby, user=alice, username="alice", text="a", client_id="c1"),
            services.Post(room=lobby, user=alice, username="alice", text="b", client_id="c2"),
            services.Post(room=lobby, user=alice, username="alice", text="b", client_id="c2"),
        ]
    )
    assert [(m.seq, created) for m, created in results] == [(1, False), (2, True), (2, False)]
    assert results[0][0].pk == first.pk
    assert Message.objects.count() == 2


@pytest.mark.parametrize("client_id", ["c-\x00", "\udfff"])
def test_client_id_with_unstorable_characters_is_refused(alice, client_id):
    room = services.room_join(user=alice, slug="lobby")
    with pytest.raises(MessageInvalid) as info:
        services.message_create(
            room=room, user=alice, username="alice", text="hi", client_id=client_id
        )
    assert info.value.code == "bad_frame"
    assert not Message.objects.exists()

"""Who a message notifies: @mentions of room members, and direct messages."""

import pytest

from kaiwa.chat import services as chat
from kaiwa.notifications.selectors import mention_names, missed_message_recipients
from tests.factories import MessageFactory, UserFactory


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("hi @bob", ["bob"]),
        ("@bob: look", ["bob"]),
        ("thanks @Bob.", ["bob."]),
        ("(@bob) and @carol, @bob again", ["bob", "carol"]),
        ("@first.last+x-y", ["first.last+x-y"]),
        ("mail alice@example.com or bob @ home", []),
        ("no mention", []),
        ("@", []),
    ],
)
def test_mention_names(text, names):
    assert mention_names(text=text) == names


def test_mention_names_are_bounded():
    text = " ".join(f"@user{i}" for i in range(500))
    assert len(mention_names(text=text)) == 50


def test_it_notifies_mentioned_members(room, alice, bob, carol):
    message = MessageFactory(room=room, author=alice, text="@bob and @CAROL, have a look")
    assert missed_message_recipients(message=message) == {bob.pk: "mention", carol.pk: "mention"}


def test_trailing_punctuation_is_not_part_of_the_name(room, alice, bob):
    message = MessageFactory(room=room, author=alice, text="thanks @bob.")
    assert missed_message_recipients(message=message) == {bob.pk: "mention"}


def test_a_username_with_the_punctuation_wins(room, alice, bob):
    from tests.factories import MembershipFactory

    dotted = UserFactory(username="bob.")
    MembershipFactory(room=room, user=dotted)
    message = MessageFactory(room=room, author=alice, text="thanks @bob.")
    assert missed_message_recipients(message=message) == {dotted.pk: "mention"}


def test_it_ignores_users_outside_the_room(room, alice):
    UserFactory(username="dave")
    message = MessageFactory(room=room, author=alice, text="@dave are you there?")
    assert missed_message_recipients(message=message) == {}


def test_it_ignores_inactive_members_and_the_author(room, alice, bob):
    bob.is_active = False
    bob.save()
    message = MessageFactory(room=room, author=alice, text="@alice @bob")
    assert missed_message_recipients(message=message) == {}


def test_a_direct_message_notifies_the_other_user(alice, bob):
    dm, _ = chat.dm_open(user=alice, other_username="bob")
    message = MessageFactory(room=dm, author=alice, text="no mention, still for bob @alice")
    assert missed_message_recipients(message=message) == {bob.pk: "dm"}


def test_a_public_room_named_like_a_dm_is_not_one(alice, bob):
    from tests.factories import MembershipFactory, RoomFactory

    room = RoomFactory(slug="dm-1-2", private=False)
    MembershipFactory(room=room, user=bob)
    message = MessageFactory(room=room, author=alice, text="hello")
    assert missed_message_recipients(message=message) == {}


def test_a_message_without_mentions_costs_no_query(room, alice, django_assert_num_queries):
    message = MessageFactory(room=room, author=alice, text="just chatting, mail me at a@b.c")
    with django_assert_num_queries(0):
        assert missed_message_recipients(message=message) == {}

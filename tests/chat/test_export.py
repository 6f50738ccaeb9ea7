"""`kaiwa manage export_room` and `export_user`: JSON Lines for audits and
data-subject requests, never a deleted message's text nor a token."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from kaiwa.chat import services
from kaiwa.chat.models import Membership
from tests.factories import RoomFactory, token_for

pytestmark = pytest.mark.django_db


def lines(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
def history(alice, bob):
    lobby = RoomFactory(slug="lobby")
    Membership.objects.create(room=lobby, user=bob)
    say = lambda user, text: services.message_create(  # noqa: E731
        room=lobby, user=user, username=user.username, text=text
    )[0]
    first, secret = say(alice, "hello"), say(alice, "my secret")
    say(bob, "hi alice")
    services.message_edit(room=lobby, user=alice, message_id=secret.pk, text="my big secret")
    services.reaction_set(room=lobby, user=bob, message_id=first.pk, emoji="+1", on=True)
    services.message_delete(room=lobby, user=alice, message_id=secret.pk)


@pytest.mark.usefixtures("history")
def test_a_room_exports_as_a_resume_from_zero_would_replay_it():
    got = lines("export_room", "lobby")
    assert [(f["type"], f["seq"]) for f in got] == [
        ("message", 1), ("message", 2), ("message", 3), ("edit", 4), ("reaction", 5), ("delete", 6),
    ]  # fmt: skip
    assert got[0]["reactions"] == [{"emoji": "+1", "count": 1, "usernames": ["bob"]}]
    assert got[1]["deleted"] is True
    assert "secret" not in json.dumps(got)  # neither the text nor its edit


@pytest.mark.usefixtures("history")
def test_a_user_exports_his_profile_rooms_messages_reactions_and_tokens(alice):
    token_for(alice)
    got = lines("export_user", "alice")
    kinds = [line["type"] for line in got]
    assert kinds[0] == "profile"
    assert got[0]["username"] == "alice"
    assert kinds.count("message") == 2  # "hello" and the tombstone; bob's is not his
    messages = [line for line in got if line["type"] == "message"]
    assert [m["message"] for m in messages] == ["hello", ""]
    assert "secret" not in json.dumps(got)
    (token,) = [line for line in got if line["type"] == "token"]
    assert set(token) == {"type", "name", "created", "expiry"}  # never the token itself
    theirs = lines("export_user", "bob")
    assert [r["emoji"] for r in theirs if r["type"] == "reaction"] == ["+1"]
    assert [m["room"] for m in theirs if m["type"] == "membership"] == ["lobby"]


def test_unknown_names_are_errors(db):
    with pytest.raises(CommandError):
        call_command("export_room", "nope", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("export_user", "nobody", stdout=io.StringIO())

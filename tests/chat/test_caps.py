"""Caps on what one message may accumulate (issue 22 #1, #9): distinct
reactions (KAIWA_MAX_REACTIONS_PER_MESSAGE) and edits
(KAIWA_MAX_EDITS_PER_MESSAGE), refused with ``forbidden`` over WebSocket and
REST alike, and a history answer of bounded size."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from kaiwa.chat.models import Message, MessageVersion, Reaction, Room
from tests.communicator import join
from tests.factories import RoomFactory, UserFactory


def rest(user):
    client = Client()
    client.force_login(user)
    return client


def message_of(user, text="hi"):
    room = RoomFactory(slug="lobby")
    message = Message.objects.create(
        room=room, seq=1, author=user, username=user.username, text=text
    )
    Room.objects.filter(pk=room.pk).update(last_seq=1)
    return message


async def next_of(socket, kind):
    while (got := await socket.recv())["type"] != kind:
        pass
    return got


@pytest.mark.django_db
def test_a_message_holds_at_most_the_cap_of_distinct_reactions(alice, bob, settings):
    settings.KAIWA_MAX_REACTIONS_PER_MESSAGE = 3
    url = f"/api/messages/{message_of(alice).pk}/reactions"
    a, b = rest(alice), rest(bob)
    for emoji in ("a", "b", "c"):
        assert a.put(f"{url}/{emoji}").status_code == 204
    for user in UserFactory.create_batch(3):  # many rows of one emoji count once
        assert rest(user).put(f"{url}/a").status_code == 204
    refused = b.put(f"{url}/d")
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "3 different reactions" in refused.json()["detail"]
    assert b.put(f"{url}/a").status_code == 204  # an emoji it holds: anyone may add it
    assert a.delete(f"{url}/c").status_code == 204
    assert b.put(f"{url}/d").status_code == 204  # a place freed
    assert sorted(set(Reaction.objects.values_list("emoji", flat=True))) == ["a", "b", "d"]


@pytest.mark.django_db(transaction=True)
async def test_the_reaction_cap_holds_over_websocket(settings):
    settings.KAIWA_MAX_REACTIONS_PER_MESSAGE = 2
    alice = await database_sync_to_async(UserFactory)(username="alice")
    message = await database_sync_to_async(message_of)(alice)
    socket = await join(user=alice)
    for emoji in ("a", "b"):
        await socket.send_json_to(
            {"type": "react", "id": str(message.pk), "emoji": emoji, "on": True}
        )
        await next_of(socket, "reaction")
    await socket.send_json_to({"type": "react", "id": str(message.pk), "emoji": "c", "on": True})
    assert (await next_of(socket, "error"))["code"] == "forbidden"
    assert await database_sync_to_async(Reaction.objects.count)() == 2


@pytest.mark.django_db
def test_a_message_takes_at_most_the_cap_of_edits_over_rest(alice, settings):
    settings.KAIWA_MAX_EDITS_PER_MESSAGE = 2
    message = message_of(alice)
    a, url = rest(alice), f"/api/messages/{message.pk}"
    for text in ("one", "two"):
        assert a.patch(url, {"message": text}, content_type="application/json").status_code == 200
    refused = a.patch(url, {"message": "three"}, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "edited 2 times" in refused.json()["detail"]
    message.refresh_from_db()
    assert message.text == "two"
    assert MessageVersion.objects.count() == 2
    assert a.delete(url).status_code == 204  # its author may still delete it


@pytest.mark.django_db(transaction=True)
async def test_the_edit_cap_holds_over_websocket(settings):
    settings.KAIWA_MAX_EDITS_PER_MESSAGE = 1
    alice = await database_sync_to_async(UserFactory)(username="alice")
    message = await database_sync_to_async(message_of)(alice)
    socket = await join(user=alice)
    await socket.send_json_to({"type": "edit", "id": str(message.pk), "message": "one"})
    await next_of(socket, "edit")
    await socket.send_json_to({"type": "edit", "id": str(message.pk), "message": "two"})
    assert (await next_of(socket, "error"))["code"] == "forbidden"
    await message.arefresh_from_db()
    assert message.text == "one"


@pytest.mark.django_db
def test_the_history_renders_no_version(alice, settings, monkeypatch):
    from kaiwa.chat import selectors

    message = message_of(alice, text="*v0*")
    Message.objects.filter(pk=message.pk).update(html="<p><em>v0</em></p>\n")  # as posted
    a, url = rest(alice), f"/api/messages/{message.pk}"
    for n in range(1, 4):
        a.patch(url, {"message": f"*v{n}*"}, content_type="application/json")

    def render(**kwargs):
        raise AssertionError("a version was rendered on a history request")

    monkeypatch.setattr(selectors, "message_html", render)
    versions = a.get(f"{url}/history").json()["versions"]
    assert [v["html"] for v in versions] == [f"<p><em>v{n}</em></p>\n" for n in range(4)]
    assert versions[0]["edited_at"] is None


@pytest.mark.django_db
def test_the_history_answer_is_bounded_whatever_is_stored(alice, settings):
    settings.KAIWA_MAX_EDITS_PER_MESSAGE = 3
    message = message_of(alice, text="now")
    start = message.created_at
    # 300 versions stored before any cap (or under a higher one).
    MessageVersion.objects.bulk_create(
        MessageVersion(message=message, text=f"v{n}", since=start + timedelta(seconds=n))
        for n in range(301)
    )
    Message.objects.filter(pk=message.pk).update(edited_at=start + timedelta(seconds=301))
    versions = rest(alice).get(f"/api/messages/{message.pk}/history").json()["versions"]
    assert len(versions) == 4  # KAIWA_MAX_EDITS_PER_MESSAGE + 1
    assert [v["message"] for v in versions] == ["v0", "v299", "v300", "now"]
    assert versions[0]["edited_at"] is None
    assert versions[0]["html"] == "<p>v0</p>\n"  # a version stored without html: its page only

"""The chat pages (kaiwa.chat.views): the room index and a room.

A private room you are not in is served as a free name is:
tests/chat/test_existence.py.
"""

import pytest
from django.test import Client

from kaiwa.chat.models import Membership, Room
from tests.factories import MembershipFactory, RoomFactory

pytestmark = pytest.mark.django_db


def page_for(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/chat/", "/chat/lobby/"])
def test_it_sends_visitors_to_the_login_page(path):
    answer = Client().get(path)
    assert answer.status_code == 302
    assert answer["Location"].startswith("/accounts/login/")


def test_index_has_the_tutorial_ids(alice):
    html = page_for(alice).get("/chat/").content.decode()
    assert 'id="room-name-input"' in html
    assert 'id="room-name-submit"' in html
    # ...and a label for each input.
    assert '<label for="room-name-input">' in html
    assert '<label for="dm-username-input">' in html


def test_a_direct_message_is_titled_with_the_other_persons_name(alice, bob):
    from kaiwa.chat import services

    room, _ = services.dm_open(user=alice, other_username="bob")
    for viewer, other in ((alice, "bob"), (bob, "alice")):
        client = page_for(viewer)
        page = client.get(f"/chat/{room.slug}/").content.decode()
        assert f'<h1 id="room-title">{other}</h1>' in page
    # Listed to its opener at once (to bob once something is said).
    assert ">bob</a> <small>(private)</small>" in page_for(alice).get("/chat/").content.decode()


def test_favicon_ico_is_the_svg_icon():
    answer = Client().get("/favicon.ico")
    assert answer.status_code == 302
    icon = Client().get(answer["Location"])
    assert icon.status_code == 200
    body = b"".join(icon.streaming_content) if icon.streaming else icon.content
    assert b"<svg" in body


def test_room_page_has_the_tutorial_ids(alice):
    html = page_for(alice).get("/chat/lobby/").content.decode()
    for element in ("chat-log", "chat-message-input", "chat-message-submit", "connection-state"):
        assert f'id="{element}"' in html


def test_index_page_lists_your_rooms_first_and_pages_the_rest(alice):
    Room.objects.bulk_create([Room(slug=f"p{i:02d}") for i in range(60)])
    mine = RoomFactory(slug="zz-mine")
    MembershipFactory(room=mine, user=alice)
    client = page_for(alice)
    first = client.get("/chat/").content.decode()
    assert first.count('<li><a href="/chat/') == 50
    assert first.index("/chat/zz-mine/") < first.index("/chat/p00/")
    assert "/chat/p48/" in first
    assert "/chat/p49/" not in first
    assert "?page=2" in first
    second = client.get("/chat/?page=2").content.decode()
    assert second.count('<li><a href="/chat/') == 11
    assert "/chat/p49/" in second
    assert "/chat/p59/" in second
    assert "zz-mine" not in second
    assert Membership.objects.count() == 1


def test_the_pages_scripts_are_served_without_collectstatic():
    # whitenoise serves the apps' static folders directly (WHITENOISE_USE_FINDERS).
    for script in ("app.js", "client.js", "index.js"):
        assert Client().get(f"/static/chat/{script}").status_code == 200

import pytest
from django.test import Client

from tests.factories import MembershipFactory, RoomFactory

pytestmark = pytest.mark.django_db


def test_chat_pages_need_login():
    answer = Client().get("/chat/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


def test_signup_logs_the_new_user_in():
    client = Client()
    answer = client.post(
        "/accounts/signup/",
        {
            "username": "dora",
            "password1": "a-long-passphrase-9",
            "password2": "a-long-passphrase-9",
        },
    )
    assert answer.status_code == 302 and answer["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_index_has_the_tutorial_ids(alice):
    client = Client()
    client.force_login(alice)
    html = client.get("/chat/").content.decode()
    assert 'id="room-name-input"' in html and 'id="room-name-submit"' in html


def test_room_page_has_the_tutorial_ids(alice):
    client = Client()
    client.force_login(alice)
    html = client.get("/chat/lobby/").content.decode()
    for element in ("chat-log", "chat-message-input", "chat-message-submit", "connection-state"):
        assert f'id="{element}"' in html


def test_foreign_private_room_page_tells_nothing(alice, bob):
    """Served as for a free name (its socket is refused with 4403): see
    tests/chat/test_existence.py."""
    secret = RoomFactory(slug="secret", private=True, title="Secret plans")
    MembershipFactory(room=secret, user=bob)
    client = Client()
    client.force_login(alice)
    answer = client.get("/chat/secret/")
    assert answer.status_code == 200 and b"Secret plans" not in answer.content


def test_static_files_are_served(alice):
    client = Client()
    assert client.get("/static/chat/room.js").status_code == 200


def test_password_reset_links_come_from_the_base_url_not_the_host_header(db, settings, mailoutbox):
    from tests.factories import UserFactory

    settings.KAIWA_BASE_URL = "https://chat.example.com"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "attacker.example"]
    UserFactory(username="alice", email="alice@example.com")
    answer = Client(HTTP_HOST="attacker.example").post(
        "/accounts/password_reset/", {"email": "alice@example.com"}
    )
    assert answer.status_code == 302
    (email,) = mailoutbox
    assert "https://chat.example.com/accounts/reset/" in email.body
    assert "attacker.example" not in email.body + email.subject

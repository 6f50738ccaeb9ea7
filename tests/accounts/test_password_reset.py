"""The password reset page (kaiwa.accounts.views.PasswordResetView).

How many reset emails an address gets: tests/accounts/test_brute_force.py.
"""

from django.test import Client

from tests.factories import UserFactory


def test_its_links_come_from_the_base_url_not_the_host_header(db, settings, mailoutbox):
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

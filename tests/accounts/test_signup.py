"""The sign-up page (kaiwa.accounts.views.signup): a new user signs himself in
and gives, optionally, the address missed-message emails go to.

The username rules it enforces (lookalikes, case variants, reserved names):
tests/accounts/test_usernames.py.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-passphrase-9"


def signup_post(client, **fields):
    return client.post(
        "/accounts/signup/",
        {"username": "dora", "password1": PASSWORD, "password2": PASSWORD, **fields},
    )


def test_it_logs_the_new_user_in():
    client = Client()
    answer = signup_post(client)
    assert answer.status_code == 302
    assert answer["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_it_stores_the_email_address():
    answer = signup_post(Client(), email="dora@example.com")
    assert answer.status_code == 302
    assert get_user_model().objects.get(username="dora").email == "dora@example.com"


def test_it_asks_for_an_optional_address():
    page = Client().get("/accounts/signup/").content.decode()
    assert 'name="email"' in page
    assert "@mentions and direct messages" in page


def test_it_rejects_a_malformed_address():
    answer = signup_post(Client(), email="not-an-address")
    assert answer.status_code == 200
    assert not get_user_model().objects.filter(username="dora").exists()

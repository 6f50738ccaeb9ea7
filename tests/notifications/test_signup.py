"""A new user gives, at sign-up, the address missed-message emails go to."""

from django.contrib.auth import get_user_model
from django.test import Client


def test_signup_stores_the_email_address(db):
    answer = Client().post(
        "/accounts/signup/",
        {
            "username": "dora",
            "email": "dora@example.com",
            "password1": "a-long-passphrase-9",
            "password2": "a-long-passphrase-9",
        },
    )
    assert answer.status_code == 302
    assert get_user_model().objects.get(username="dora").email == "dora@example.com"


def test_signup_page_asks_for_an_optional_address(db):
    page = Client().get("/accounts/signup/").content.decode()
    assert 'name="email"' in page
    assert "@mentions and direct messages" in page


def test_signup_rejects_a_malformed_address(db):
    answer = Client().post(
        "/accounts/signup/",
        {
            "username": "dora",
            "email": "not-an-address",
            "password1": "a-long-passphrase-9",
            "password2": "a-long-passphrase-9",
        },
    )
    assert answer.status_code == 200
    assert not get_user_model().objects.filter(username="dora").exists()

"""Brute force: wrong passwords per username (django-axes) and sign-in
attempts per IP (django-ratelimit) on every sign-in path; reset emails per address."""

import pytest
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "pw-secret-123"  # tests.factories.UserFactory's


def token_post(client, username, password):
    return client.post(
        "/api/auth/token",
        {"username": username, "password": password},
        content_type="application/json",
    )


def test_it_locks_a_username_at_the_fifth_wrong_password(alice):
    client = Client()
    for _ in range(4):
        assert token_post(client, "alice", "wrong").status_code == 401
    assert token_post(client, "alice", "wrong").status_code == 429
    locked = token_post(client, "alice", PASSWORD)  # even the right password now
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"


def test_the_lockout_is_per_username(alice, bob):
    client = Client()
    for _ in range(5):
        token_post(client, "alice", "wrong")
    assert token_post(client, "bob", PASSWORD).status_code == 200


def test_failures_count_across_the_login_page_and_the_admin(alice):
    client = Client()
    for _ in range(3):
        token_post(client, "alice", "wrong")
    page = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert page.status_code == 200  # the form again, with its error
    locked = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert locked.status_code == 429  # the fifth failure
    assert (
        client.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code
        == 429
    )
    admin = client.post("/admin/login/", {"username": "alice", "password": PASSWORD})
    assert admin.status_code == 429


def test_a_success_resets_the_count(alice):
    client = Client()
    for _ in range(4):
        token_post(client, "alice", "wrong")
    assert token_post(client, "alice", PASSWORD).status_code == 200
    for _ in range(4):
        token_post(client, "alice", "wrong")
    assert token_post(client, "alice", PASSWORD).status_code == 200


def test_one_ip_cannot_spray_many_usernames(settings, alice):
    settings.KAIWA_SIGNIN_RATE_PER_IP = "3/m"
    client = Client()
    for name in ("u1", "u2", "u3"):
        assert token_post(client, name, "x").status_code == 401
    assert token_post(client, "alice", PASSWORD).status_code == 429
    assert client.post("/accounts/login/", {"username": "u4", "password": "x"}).status_code == 429
    other_ip = Client(REMOTE_ADDR="10.0.0.9")
    assert token_post(other_ip, "alice", PASSWORD).status_code == 200


def test_password_reset_emails_are_limited_per_address(alice):
    client = Client()
    for _ in range(5):
        answer = client.post("/accounts/password_reset/", {"email": alice.email.upper()})
        assert answer.status_code == 302  # the same answer whether sent or not
    assert len(mail.outbox) == 3


def test_sign_ups_count_against_the_ip_budget(settings, db):
    settings.KAIWA_SIGNIN_RATE_PER_IP = "2/m"
    client = Client()
    for name in ("newbie1", "newbie2"):
        form = {"username": name, "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"}
        assert Client().post("/accounts/signup/", form).status_code == 302
    form = {"username": "newbie3", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"}
    assert client.post("/accounts/signup/", form).status_code == 429

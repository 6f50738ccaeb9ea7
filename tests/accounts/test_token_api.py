"""POST /api/auth/token (kaiwa.accounts.views.TokenAPI), PROTOCOL.md section 5: a
sign-in with a username and password answers a new API token."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_issues_a_token(alice):
    answer = Client().post(
        "/api/auth/token",
        {"username": "alice", "password": "pw-secret-123"},
        content_type="application/json",
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["username"] == "alice"
    assert len(body["token"]) >= 20
    again = Client().post(
        "/api/auth/token",
        {"username": "alice", "password": "pw-secret-123"},
        content_type="application/json",
    )
    # Each sign-in is a token of its own (django-rest-knox), revocable alone.
    assert again.json()["token"] != body["token"]
    assert set(body) == {"token", "username"}  # PROTOCOL.md section 5, exactly


def test_it_rejects_bad_credentials(alice):
    answer = Client().post(
        "/api/auth/token",
        {"username": "alice", "password": "wrong"},
        content_type="application/json",
    )
    assert answer.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        "{bad json",
        "[]",
        '{"username": "alice"}',
        '{"username": 1, "password": 2}',
        '{"username": "\\ud800", "password": "x"}',
        "[" * 5000 + "]" * 5000,
        '{"username": ',
    ],
)
def test_it_rejects_malformed_bodies_with_400_not_500(alice, body):
    answer = Client().post("/api/auth/token", body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_request"

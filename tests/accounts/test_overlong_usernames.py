"""A username longer than any user's (150 characters) on every sign-in path:
a clear 400 or form error, never a 500. django-axes records a failed sign-in
in a 255-character column, which PostgreSQL refuses to overflow (SQLite
stores anything), so the probe runs against a real process on PostgreSQL."""

import re

import httpx
import pytest
from django.test import Client

from tests.kaiwa_process import KaiwaServer, base_env, create_users, manage

OVERLONG = "a" * 300
TOO_LONG_ERROR = "Ensure this value has at most 150 characters (it has 300)."
AUTHENTICATE_OVERLONG = (
    "from django.contrib.auth import authenticate\n"
    "from django.test import RequestFactory\n"
    f"print(authenticate(RequestFactory().post('/x'), username='{OVERLONG}', password='x'))\n"
)
CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]*)"')


def form_post(http: httpx.Client, path: str, username: str) -> httpx.Response:
    page = http.get(path)
    token = CSRF_TOKEN.search(page.text)
    assert token, page.text
    data = {"username": username, "password": "x", "csrfmiddlewaretoken": token.group(1)}
    return http.post(path, data=data)


@pytest.mark.e2e
@pytest.mark.postgres_redis
def test_it_refuses_an_overlong_username_on_postgresql_without_a_500(postgres_url, tmp_path):
    env = base_env(DATABASE_URL=postgres_url, KAIWA_DATA_DIR=str(tmp_path / "data"))
    create_users(env, "alice")
    server = KaiwaServer(env, tmp_path / "serve.log").start()
    try:
        with httpx.Client(base_url=server.http, trust_env=False, timeout=10) as http:
            token = http.post("/api/auth/token", json={"username": OVERLONG, "password": "x"})
            login = form_post(http, "/accounts/login/", OVERLONG)
            admin = form_post(http, "/admin/login/", OVERLONG)
            # A wrong password for a real name is still recorded (and answered 401).
            wrong = http.post("/api/auth/token", json={"username": "alice", "password": "x"})
    finally:
        server.stop()
    # Any other caller of authenticate (a future sign-in path): axes' record still fits.
    direct = manage(env, "shell", "-c", AUTHENTICATE_OVERLONG).strip().splitlines()[-1]
    assert direct == "None"
    log = (tmp_path / "serve.log").read_text()
    assert token.status_code == 400, token.text
    assert token.json() == {
        "code": "bad_request",
        "detail": "A username has at most 150 characters.",
    }
    assert login.status_code == 200
    assert TOO_LONG_ERROR in login.text
    assert admin.status_code == 200
    assert TOO_LONG_ERROR in admin.text
    assert wrong.status_code == 401
    assert "Traceback" not in log
    assert "DataError" not in log


@pytest.mark.django_db
def test_the_login_forms_name_the_limit(alice):
    client = Client()
    for path in ("/accounts/login/", "/admin/login/"):
        answer = client.post(path, {"username": OVERLONG, "password": "x"})
        assert answer.status_code == 200
        assert TOO_LONG_ERROR in answer.content.decode()

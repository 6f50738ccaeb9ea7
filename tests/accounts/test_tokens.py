"""API tokens: hashed at rest, expiring, listed and revoked by their owner,
ended by a password change, a deactivation and (sign-in tokens) a logout."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from knox.crypto import hash_token

from kaiwa.accounts.models import SIGNIN_TOKEN_NAME, ApiToken
from kaiwa.accounts.selectors import token_users_get
from kaiwa.accounts.services import token_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def api(token):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def sign_in(username="alice", password="pw-secret-123"):
    answer = Client().post(
        "/api/auth/token",
        {"username": username, "password": password},
        content_type="application/json",
    )
    assert answer.status_code == 200
    return answer.json()["token"]


def test_no_token_is_stored_in_plain_text(alice):
    token = sign_in()
    row = ApiToken.objects.get(user=alice)
    assert row.digest == hash_token(token)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        stored = " ".join(str(v) for row in cursor.fetchall() for v in row)
    assert token not in stored


def test_a_token_works_until_it_expires(alice):
    token = sign_in()
    assert api(token).get("/api/rooms/").status_code == 200
    assert token_users_get(keys=[token]) == {token: alice}
    ApiToken.objects.filter(user=alice).update(expiry=timezone.now() - timedelta(seconds=1))
    assert api(token).get("/api/rooms/").status_code == 401
    assert token_users_get(keys=[token]) == {}  # the WebSocket handshake's lookup


def test_a_wrong_token_with_a_right_prefix_is_refused(alice):
    token = sign_in()
    forged = token[:15] + "0" * (len(token) - 15)
    assert api(forged).get("/api/rooms/").status_code == 401
    assert token_users_get(keys=[forged]) == {}


def test_tokens_expire_after_the_ttl_setting(settings, alice):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(days=2)}
    token_create(user=alice, name="bot")
    expiry = ApiToken.objects.get(user=alice).expiry
    assert timedelta(days=2) - timedelta(minutes=1) < expiry - timezone.now() <= timedelta(days=2)


def test_owner_creates_lists_and_revokes_tokens(alice):
    token = sign_in()
    made = api(token).post("/api/tokens/", {"name": "deploy bot"}, content_type="application/json")
    assert made.status_code == 201
    bot = made.json()
    assert bot["name"] == "deploy bot"
    assert bot["token"]
    listed = api(token).get("/api/tokens/").json()["tokens"]
    assert [t["name"] for t in listed] == ["deploy bot", SIGNIN_TOKEN_NAME]
    assert all("token" not in t for t in listed)  # the secret is shown once only
    assert api(token).delete(f"/api/tokens/{bot['id']}").status_code == 204
    assert api(bot["token"]).get("/api/rooms/").status_code == 401
    assert [t["name"] for t in api(token).get("/api/tokens/").json()["tokens"]] == [
        SIGNIN_TOKEN_NAME
    ]


def test_nobody_revokes_someone_elses_token(alice, bob):
    alice_token = sign_in()
    bob_token = sign_in("bob")
    bob_id = api(bob_token).get("/api/tokens/").json()["tokens"][0]["id"]
    answer = api(alice_token).delete(f"/api/tokens/{bob_id}")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"
    assert api(bob_token).get("/api/rooms/").status_code == 200


@pytest.mark.parametrize(
    "body", ['{"name": ""}', '{"name": 5}', "{}", '{"name": "' + "x" * 101 + '"}']
)
def test_a_token_needs_a_name(alice, body):
    answer = api(sign_in()).post("/api/tokens/", body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_request"


def test_the_tokens_page_shows_a_new_token_once_and_revokes(alice):
    client = Client()
    client.force_login(alice)
    page = client.post("/accounts/tokens/", {"name": "ci bot"})
    assert page.status_code == 200
    secret = page.context["created"]
    assert secret in page.content.decode()
    assert api(secret).get("/api/rooms/").status_code == 200
    again = client.get("/accounts/tokens/")
    assert secret not in again.content.decode()
    assert "ci bot" in again.content.decode()
    row = ApiToken.objects.get(user=alice, name="ci bot")
    client.post("/accounts/tokens/", {"revoke": row.public_id})
    assert not ApiToken.objects.filter(user=alice, name="ci bot").exists()


def test_a_password_change_revokes_every_token(alice):
    signin, bot = sign_in(), token_create(user=alice, name="bot")[1]
    alice.set_password("a-new-password-456")
    alice.save()
    assert api(signin).get("/api/rooms/").status_code == 401
    assert api(bot).get("/api/rooms/").status_code == 401


def test_a_deactivation_revokes_every_token(alice):
    bot = token_create(user=alice, name="bot")[1]
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert not ApiToken.objects.filter(user=alice).exists()
    assert api(bot).get("/api/rooms/").status_code == 401


def test_other_saves_keep_the_tokens(alice):
    bot = token_create(user=alice, name="bot")[1]
    alice.email = "new@example.com"
    alice.save()
    assert api(bot).get("/api/rooms/").status_code == 200


def test_a_logout_ends_sign_in_tokens_but_not_named_ones(alice):
    signin, bot = sign_in(), token_create(user=alice, name="bot")[1]
    browser = Client()
    browser.force_login(alice)
    browser.post("/accounts/logout/")
    assert api(signin).get("/api/rooms/").status_code == 401
    assert api(bot).get("/api/rooms/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_plaintext_tokens_of_older_versions_are_hashed_and_dropped(alice):
    from django.apps import apps

    from kaiwa.accounts.migrations import __name__ as package

    migration = __import__(f"{package}.0004_apitoken_from_plaintext", fromlist=["tokens_hash"])
    old = "b" * 40
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40), user_id bigint)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s)", [old, alice.pk])
    with connection.schema_editor() as editor:
        migration.tokens_hash(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert api(old).get("/api/rooms/").status_code == 200  # still works, now hashed
    assert ApiToken.objects.get(user=alice).digest == hash_token(old)


def test_users_without_tokens_see_none(db):
    carol = UserFactory(username="carol")
    client = Client()
    client.force_login(carol)
    assert client.get("/api/tokens/").json() == {"tokens": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        # The token endpoint answers any body it cannot use with bad_request.
        ("post", "/api/auth/token", '{"username": "al\\u0000ice", "password": "x"}', "bad_request"),
        ("post", "/api/tokens/", '{"name": "bot\\u0000"}', "bad_frame"),
        ("post", "/api/dms/", '{"username": "bo\\u0000b"}', "bad_frame"),
        (
            "post",
            "/api/rooms/lobby/messages/",
            '{"message": "a", "client_id": "c\\u0000"}',
            "bad_frame",
        ),
    ],
)
def test_a_nul_character_anywhere_in_a_rest_body_is_refused(alice, method, path, body, code):
    # PostgreSQL stores no NUL: these answered 500 (or a misleading 503) there.
    client = Client()
    client.force_login(alice)
    answer = getattr(client, method)(path, body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["code"] == code


def test_odd_token_ids_are_simply_not_found(alice):
    client = Client()
    client.force_login(alice)
    assert (
        client.delete("/api/tokens/%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00").status_code
        == 404
    )
    page = client.post("/accounts/tokens/", {"revoke": "\x00" * 16, "name": ""})
    assert page.status_code == 302
    named = client.post("/accounts/tokens/", {"name": "b\x00ot"})
    assert named.status_code == 200
    assert ApiToken.objects.get(user=alice).name == "bot"

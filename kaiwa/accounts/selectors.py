"""Reads of the accounts app: who a WebSocket handshake belongs to."""

from collections.abc import Sequence
from types import SimpleNamespace

from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS

from .models import ApiToken


def token_users_get(*, keys: Sequence[str]) -> dict[str, User]:
    """``{token: user}`` for the API tokens in ``keys`` that exist, have not
    expired, and whose users are active (the others left out). One query.

    Tokens are django-rest-knox's: rows are found by the token's first
    ``CONSTANTS.TOKEN_KEY_LENGTH`` characters and matched by comparing the
    SHA-512 digest in constant time, as ``knox.auth.TokenAuthentication``
    does for one token. Written in SQL (a join of the token and user tables)
    rather than with the ORM: a connect storm runs it for every bot, and
    compiling the ORM query costs about a millisecond of Python. Each user
    is built as ``User.objects.only("id", "username", "is_active")`` would
    build it (``Model.from_db``): any other field loads on first access.
    """
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    user_model = get_user_model()
    q = connection.ops.quote_name
    pk = user_model._meta.pk
    assert pk is not None
    assert pk.column is not None  # a concrete model's primary key has a column
    name = user_model.USERNAME_FIELD
    prefixes = list({key[: CONSTANTS.TOKEN_KEY_LENGTH] for key in keys})
    marks = ", ".join(["%s"] * len(prefixes))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.digest, u.{q(pk.column)}, u.{q(name)} "
            f"FROM {q(user_model._meta.db_table)} u "
            f"JOIN {q(ApiToken._meta.db_table)} t ON t.user_id = u.{q(pk.column)} "
            f"WHERE t.token_key IN ({marks}) AND u.is_active "
            "AND (t.expiry IS NULL OR t.expiry > %s)",
            [*prefixes, timezone.now()],
        )
        rows = cursor.fetchall()
    fields = [pk.attname, name, "is_active"]
    by_digest = {
        digest: user_model.from_db(connection.alias, fields, [user_id, username, True])
        for digest, user_id, username in rows
    }
    found = {}
    for key in keys:
        user = by_digest.get(hash_token(key))
        if user is not None:
            found[key] = user
    return found


def session_user_get(*, session: SessionBase | None) -> User | None:
    """The user signed in with the Django ``session`` of a WebSocket handshake
    (Channels' or Kaiwa's ``scope["session"]``), or None.

    Checked as Django checks it for a request (``django.contrib.auth.get_user``:
    the user exists, is allowed by his backend, and his password hash still
    matches the session's). Two queries (session, user); none for a session
    without a key.
    """
    if session is None or not session.session_key:
        return None
    # get_user reads nothing of the request but its session.
    user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return user if user.is_authenticated else None

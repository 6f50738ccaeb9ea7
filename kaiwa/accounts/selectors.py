"""Reads of the accounts app: who a WebSocket handshake belongs to."""

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from django.contrib import auth
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.authtoken.models import Token


def token_users_get(*, keys: Sequence[str]) -> dict[str, Any]:
    """``{key: user}`` for the API tokens in ``keys`` whose users are active
    (unknown tokens and inactive users left out). One query.

    Written in SQL (a join of the token and user tables) rather than built
    with the ORM: a connect storm runs it for every bot, and compiling the
    ORM query costs about a millisecond of Python. Each user is built as
    ``User.objects.only("id", "username", "is_active")`` would build it
    (``Model.from_db``): any other field loads on first access.
    """
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    user_model = get_user_model()
    q = connection.ops.quote_name
    pk = user_model._meta.pk
    assert pk is not None
    name = user_model.USERNAME_FIELD
    marks = ", ".join(["%s"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.key, u.{q(pk.column)}, u.{q(name)} "
            f"FROM {q(user_model._meta.db_table)} u "
            f"JOIN {q(Token._meta.db_table)} t ON t.user_id = u.{q(pk.column)} "
            f"WHERE t.key IN ({marks}) AND u.is_active",
            keys,
        )
        rows = cursor.fetchall()
    fields = [pk.attname, name, "is_active"]
    return {
        key: user_model.from_db(connection.alias, fields, [user_id, username, True])
        for key, user_id, username in rows
    }


def session_user_get(*, session: Any) -> Any:
    """The user signed in with the Django ``session`` of a WebSocket handshake
    (Channels' or Kaiwa's ``scope["session"]``), or None.

    Checked as Django checks it for a request (``django.contrib.auth.get_user``:
    the user exists, is allowed by his backend, and his password hash still
    matches the session's). Two queries (session, user); none for a session
    without a key.
    """
    if session is None or not session.session_key:
        return None
    user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return user if user.is_authenticated else None

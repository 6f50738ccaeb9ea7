"""Reads of the accounts app: who a WebSocket handshake belongs to."""

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Protocol

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone
from django.utils.crypto import constant_time_compare
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
    build it (``Model.from_db``): any other field loads on first access, and
    carries ``token_expiry``: the token's expiry (an aware datetime), or None
    for a token that never expires (``token_expiry_of``).
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
            f"SELECT t.digest, u.{q(pk.column)}, u.{q(name)}, t.expiry "
            f"FROM {q(user_model._meta.db_table)} u "
            f"JOIN {q(ApiToken._meta.db_table)} t ON t.user_id = u.{q(pk.column)} "
            f"WHERE t.token_key IN ({marks}) AND u.is_active "
            "AND (t.expiry IS NULL OR t.expiry > %s)",
            [*prefixes, timezone.now()],
        )
        rows = cursor.fetchall()
    fields = [pk.attname, name, "is_active"]
    by_digest: dict[str, User] = {}
    for digest, user_id, username, expiry in rows:
        holder = user_model.from_db(connection.alias, fields, [user_id, username, True])
        holder.token_expiry = _aware(expiry)  # type: ignore[attr-defined]
        by_digest[digest] = holder
    found = {}
    for key in keys:
        user = by_digest.get(hash_token(key))
        if user is not None:
            found[key] = user
    return found


def _aware(value: datetime | str | None) -> datetime | None:
    """A datetime read by raw SQL as Django's ORM would return it (SQLite
    gives text; the ORM makes it aware in UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def token_expiry_of(user: User | None) -> datetime | None:
    """When the API token that ``user`` was found by (``token_users_get``)
    expires; None for a token that never expires, or a user found otherwise
    (a session)."""
    expiry: datetime | None = getattr(user, "token_expiry", None)
    return expiry


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


class Credentialed(Protocol):
    """A write to re-check (a chat post, a room event): its author and the
    credentials it came with (a session key, a Bearer token; None for REST's
    per-request authentication)."""

    @property
    def user(self) -> User | None: ...

    @property
    def session_key(self) -> str | None: ...

    @property
    def token(self) -> str | None: ...


def credentials_revoked(posts: Sequence["Credentialed"]) -> set[int]:
    """``id(post)`` of the posts none of whose credentials admits its user any
    more: the session is gone (logout) or belongs to a former password (the
    session hash, as ``django.contrib.auth.get_user`` checks it), and the
    token is gone (revoked, or every token of a password change) or expired.
    Posts without credentials (REST) pass. At most three queries, each only
    when some post carries that kind of credential."""
    checked = [p for p in posts if p.session_key or p.token]
    if not checked:
        return set()
    valid: set[int] = set()
    keys = {p.session_key for p in checked if p.session_key}
    if keys and settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        live = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
        sessions = {s.session_key: s.get_decoded() for s in live}
        users = get_user_model().objects.in_bulk({p.user.pk for p in checked if p.user})
        for post in checked:
            data = sessions.get(post.session_key or "")
            user = users.get(post.user.pk) if post.user is not None else None
            if session_admits(data, user):
                valid.add(id(post))
    elif keys:
        valid |= {id(p) for p in checked if p.session_key}  # another engine: not checked here
    tokens = {p.token for p in checked if p.token and id(p) not in valid}
    if tokens:
        holders = token_users_get(keys=list(tokens))
        for post in checked:
            holder = holders.get(post.token or "")
            if holder is not None and post.user is not None and holder.pk == post.user.pk:
                valid.add(id(post))
    return {id(p) for p in checked} - valid


def session_admits(data: dict[str, object] | None, user: User | None) -> bool:
    """Whether the decoded session ``data`` still signs ``user`` in (his id,
    and the hash of his current password, as ``django.contrib.auth.get_user``)."""
    if not data or user is None or str(data.get(auth.SESSION_KEY)) != str(user.pk):
        return False
    stored = data.get(auth.HASH_SESSION_KEY)
    return isinstance(stored, str) and constant_time_compare(stored, user.get_session_auth_hash())

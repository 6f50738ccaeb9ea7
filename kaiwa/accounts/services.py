"""Accounts services: API tokens and username claims."""

from collections.abc import Sequence
from datetime import timedelta

from axes.utils import reset as axes_reset
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils import timezone
from knox.crypto import create_token_string, hash_token
from knox.settings import CONSTANTS, knox_settings

from .models import SIGNIN_TOKEN_NAME, ApiToken, UsernameClaim
from .validators import username_key, username_skeleton


def token_issue(
    *, request: HttpRequest, username: str, password: str
) -> tuple[ApiToken, str] | None:
    """A new sign-in API token for the user with these credentials: ``(row,
    token)``, the token string shown once and never stored (only its digest
    is). None when the credentials are wrong or django-axes refuses the
    username (then ``request.axes_locked_out`` is set)."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        return None
    axes_reset(username=username)  # as a login does (AXES_RESET_ON_SUCCESS)
    return token_create(user=user, name=SIGNIN_TOKEN_NAME)


def token_create(
    *, user: User, name: str = "", ttl: timedelta | None = None
) -> tuple[ApiToken, str]:
    """A new API token of ``user`` named ``name`` (at most 100 characters):
    ``(row, token)``. It expires after ``ttl`` (a ``timedelta``), by default
    after KAIWA_TOKEN_TTL_DAYS (``REST_KNOX["TOKEN_TTL"]``, None: never).
    Raises ``ValueError`` for a name over 100 characters."""
    if len(name) > 100:
        raise ValueError("A token name has at most 100 characters.")
    expiry = knox_settings.TOKEN_TTL if ttl is None else ttl
    return ApiToken.objects.create(user=user, expiry=expiry, name=name)


def token_create_batch(*, users: Sequence[User], name: str = "") -> dict[int, str]:
    """New API tokens for many ``users`` in one INSERT (load generators,
    tests): ``{user id: token}``; expiry as ``token_create``'s default."""
    expiry = knox_settings.TOKEN_TTL
    expires = timezone.now() + expiry if expiry is not None else None
    keys = {user.pk: create_token_string() for user in users}
    ApiToken.objects.bulk_create(
        ApiToken(
            digest=hash_token(key),
            token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
            user_id=user_id,
            expiry=expires,
            name=name,
        )
        for user_id, key in keys.items()
    )
    return keys


def token_revoke(*, user: User, public_id: str) -> bool:
    """Delete ``user``'s token whose ``ApiToken.public_id`` is ``public_id``;
    False when he has none such. Sockets signed in with it close (4401)."""
    if len(public_id) != 16 or any(c not in "0123456789abcdef" for c in public_id):
        return False
    deleted, _ = ApiToken.objects.filter(user=user, digest__startswith=public_id).delete()
    return deleted > 0


def tokens_revoke(*, user_id: int, name: str | None = None) -> int:
    """Delete the user's tokens (only those named ``name`` when given); the
    count deleted. Sockets signed in with them close (4401)."""
    tokens = ApiToken.objects.filter(user_id=user_id)
    if name is not None:
        tokens = tokens.filter(name=name)
    return tokens.delete()[0]


def username_claim_set(*, user: User, created: bool = False) -> None:
    """Make ``user``'s ``UsernameClaim`` hold the key and the skeleton of his
    current name (created for a new user, or one ``bulk_create`` made). Call
    it inside the transaction that saved the user. Raises ``IntegrityError``
    when another user holds that key or skeleton; a legacy ``<key>#<id>`` or
    ``<skeleton>#<id>`` is left as it is."""
    key, skeleton = username_key(user.username), username_skeleton(user.username)
    claim = None if created else UsernameClaim.objects.filter(user=user).first()
    if claim is None:
        UsernameClaim.objects.create(user=user, key=key, skeleton=skeleton)
        return
    legacy = f"#{user.pk}"
    if claim.key not in (key, key + legacy) or claim.skeleton not in (skeleton, skeleton + legacy):
        claim.key = claim.key if claim.key == key + legacy else key
        claim.skeleton = claim.skeleton if claim.skeleton == skeleton + legacy else skeleton
        claim.save(update_fields=["key", "skeleton"])

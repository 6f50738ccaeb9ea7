"""Accounts models: the claim each user holds on his name's canonical key and
skeleton, API tokens."""

from django.conf import settings
from django.db import models
from knox.models import AbstractAuthToken


class UsernameClaim(models.Model):
    """The canonical key (``validators.username_key``) of one user's name,
    unique in the database: no two users may hold names that differ only in
    case or look alike, on SQLite too (whose ``LOWER`` and ``LIKE`` fold only
    ASCII, so Django's ``username__iexact`` check lets ``Ünal`` beside
    ``ünal``), and of two racing sign-ups only one can win.

    ``skeleton`` (``validators.username_skeleton``), unique too, is the
    lookalike form taken before case folding as well: ``aIice`` (capital I)
    beside ``alice`` shares it, not the key.

    Kept by a ``post_save`` receiver on the user model (``signals``), whichever
    code path saved him; ``bulk_create`` skips it, and the user's next full
    save adds it. A user who shared his key with an older one before this
    table existed holds ``<key>#<user id>`` (see migration 0002), and one who
    shared his skeleton before it was kept ``<skeleton>#<user id>`` (0006).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="username_claim"
    )
    key = models.TextField(unique=True)
    # NULL only in a claim made before migration 0006, which fills them.
    skeleton = models.TextField(unique=True, null=True)

    def __str__(self) -> str:
        return self.key


class ApiToken(AbstractAuthToken):
    """An API token (django-rest-knox): only its SHA-512 ``digest`` is stored,
    with the first 15 characters (``token_key``) to find it; ``expiry`` is
    None for a token that never expires. ``name`` tells the owner's tokens
    apart in his list; tokens from ``POST /api/auth/token`` are named
    ``SIGNIN_TOKEN_NAME`` and end with a logout of the owner's sessions."""

    name = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.name or self.token_key}"

    @property
    def public_id(self) -> str:
        """The token's id in the API and the page: a prefix of its digest
        (which says nothing of the token itself)."""
        return self.digest[:16]


SIGNIN_TOKEN_NAME = "sign-in"

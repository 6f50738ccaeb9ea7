"""Accounts models: the claim each user holds on his name's canonical key."""

from django.conf import settings
from django.db import models


class UsernameClaim(models.Model):
    """The canonical key (``validators.username_key``) of one user's name,
    unique in the database: no two users may hold names that differ only in
    case or look alike, on SQLite too (whose ``LOWER`` and ``LIKE`` fold only
    ASCII, so Django's ``username__iexact`` check lets ``Ünal`` beside
    ``ünal``), and of two racing sign-ups only one can win.

    Kept by a ``post_save`` receiver on the user model (``signals``), whichever
    code path saved him; ``bulk_create`` skips it, and the user's next full
    save adds it. A user who shared his key with an older one before this
    table existed holds ``<key>#<user id>`` (see migration 0002).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="username_claim"
    )
    key = models.TextField(unique=True)

    def __str__(self) -> str:
        return self.key

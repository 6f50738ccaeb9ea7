"""Limits on signing in: per client IP over every sign-in path.

Wrong passwords per username are django-axes' job (settings: AXES_*); this
middleware adds the per-IP budget, so that one address cannot spray many
usernames. Counters live in Django's cache (django-ratelimit), shared by all
processes when Redis is configured.
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_ratelimit.core import is_ratelimited

# URL names whose POST is a sign-in attempt or sends a password-reset email.
# Sign-ups count too: each new account would bring its own budgets.
SIGNIN_VIEWS = frozenset({"login", "admin:login", "api-token", "password_reset", "signup"})


def too_many(request: HttpRequest, detail: str) -> HttpResponse:
    """A 429 answer: ``{"code": "rate_limited", "detail"}`` for the API, text for pages."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "rate_limited", "detail": detail}, status=429)
    return HttpResponse(detail, status=429, content_type="text/plain; charset=utf-8")


class SignInRateLimit:
    """Django middleware: at most KAIWA_SIGNIN_RATE_PER_IP sign-in POSTs
    (django-ratelimit's ``"<n>/<s|m|h|d>"``, default ``30/m``) per client IP
    across the login page, the admin login, ``POST /api/auth/token``, the
    password-reset form and the sign-up form; above it, 429 without checking
    any password or making any account."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, *args: object) -> HttpResponse | None:
        """None to go on, or the 429 response for an IP over its budget."""
        match = request.resolver_match
        if request.method != "POST" or match is None or match.view_name not in SIGNIN_VIEWS:
            return None
        limited = is_ratelimited(
            request,
            group="kaiwa.signin",
            key="ip",
            rate=settings.KAIWA_SIGNIN_RATE_PER_IP,
            method="POST",
            increment=True,
        )
        if limited:
            return too_many(request, "Too many sign-in attempts from your address; wait a minute.")
        return None


# django-axes' AccessAttempt.username column (characters): PostgreSQL refuses
# a longer value, and the failed sign-in would answer 500.
AXES_USERNAME_MAX_LENGTH = 255


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The username django-axes counts a sign-in against (AXES_USERNAME_CALLABLE):
    its own choice (the credentials' ``username``, else the POSTed one),
    cut to AXES_USERNAME_MAX_LENGTH characters so that its record fits.

    The sign-in paths refuse a name over 150 characters before it gets here
    (``forms.SignInLengthMixin``, ``views.TokenAPI``); this keeps any other
    caller of ``authenticate`` from a 500. No user's name is cut, since none
    is longer than 150."""
    source = credentials if credentials else getattr(request, "data", request.POST)
    username = source.get("username")
    return username[:AXES_USERNAME_MAX_LENGTH] if isinstance(username, str) else username


def password_reset_limited(request: HttpRequest, email: str) -> bool:
    """Count one password-reset email to ``email`` (case-insensitive); True
    when the address is over KAIWA_PASSWORD_RESET_RATE (default ``3/h``)."""
    return is_ratelimited(
        request,
        group="kaiwa.password_reset",
        key=lambda group, req: email.strip().lower(),
        rate=settings.KAIWA_PASSWORD_RESET_RATE,
        method="POST",
        increment=True,
    )

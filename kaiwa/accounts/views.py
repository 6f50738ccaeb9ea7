"""Sign-up page and the API token endpoint."""

import logging
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.views import APIView

from kaiwa.openapi import (
    NewTokenSerializer,
    SignedInSerializer,
    SignInSerializer,
    TokenListSerializer,
    TokenNameSerializer,
    errors,
    no_content,
)
from kaiwa.request_types import AuthenticatedHttpRequest, AuthenticatedRequest
from kaiwa.rest import StrictJSONParser

from .forms import USERNAME_MAX_LENGTH, SignupForm
from .limits import password_reset_limited
from .models import ApiToken
from .services import token_create, token_issue, token_revoke

logger = logging.getLogger(__name__)


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save_unless_taken()
        if user is not None:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat:index")
    return render(request, "registration/signup.html", {"form": form})


class TokenAPI(APIView):
    """``POST /api/auth/token`` with ``{"username", "password"}``: 200
    ``{"token", "username"}``, 400 on a malformed body or a username over
    USERNAME_MAX_LENGTH (150) characters, 401 on bad credentials."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [StrictJSONParser]

    @extend_schema(
        operation_id="auth_token",
        summary="Sign in: a new API token for a username and password",
        request=SignInSerializer,
        responses={
            200: OpenApiResponse(SignedInSerializer, "A new token: one per sign-in."),
            **errors(
                400,
                401,
                429,
                meanings={
                    400: '`bad_request`: not `{"username", "password"}` as JSON strings, '
                    "or a username over 150 characters.",
                    401: "`bad_credentials`: wrong username or password.",
                    429: "`rate_limited`: too many sign-ins from this address, or wrong "
                    "passwords for this username (KAIWA_SIGNIN_RATE_PER_IP, KAIWA_LOGIN_*).",
                },
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        try:
            data = request.data
        except (APIException, SuspiciousOperation):  # unparsable (ParseError ...), too big
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) and data.get(k) for k in ("username", "password")
        ):
            return JsonResponse(
                {"code": "bad_request", "detail": 'Send {"username", "password"} as JSON.'},
                status=400,
            )
        if len(data["username"]) > USERNAME_MAX_LENGTH:  # no user's is; checked before axes
            return JsonResponse(
                {
                    "code": "bad_request",
                    "detail": f"A username has at most {USERNAME_MAX_LENGTH} characters.",
                },
                status=400,
            )
        token = token_issue(request=request, username=data["username"], password=data["password"])
        if getattr(request, "axes_locked_out", False):  # set by django-axes' backend
            return JsonResponse(
                {"code": "rate_limited", "detail": "Too many wrong passwords; try again later."},
                status=429,
            )
        if token is None:
            return JsonResponse(
                {"code": "bad_credentials", "detail": "Wrong username or password."}, status=401
            )
        row, key = token
        # Exactly PROTOCOL.md's shape; the token's id and expiry are in GET /api/tokens/.
        return JsonResponse({"token": key, "username": row.user.username})


def token_json(token: ApiToken) -> dict[str, Any]:
    """A token as the API lists it: ``{"id", "name", "created", "expiry"}``
    (ISO 8601 times, ``expiry`` null for a token that never expires)."""
    return {
        "id": token.public_id,
        "name": token.name,
        "created": token.created.isoformat(),
        "expiry": token.expiry.isoformat() if token.expiry else None,
    }


class TokenListAPI(APIView):
    """``GET /api/tokens/``: 200 ``{"tokens": [token objects]}``, newest first;
    ``POST /api/tokens/`` with ``{"name"}`` (1 to 100 characters): 201 the
    token object with ``"token"``, the secret, shown this once."""

    parser_classes = [StrictJSONParser]

    @extend_schema(
        operation_id="tokens_list",
        summary="Your API tokens, newest first",
        responses={200: OpenApiResponse(TokenListSerializer, "Newest first."), **errors(401)},
    )
    def get(self, request: AuthenticatedRequest) -> HttpResponse:
        tokens = ApiToken.objects.filter(user=request.user)
        return JsonResponse({"tokens": [token_json(t) for t in tokens]})

    @extend_schema(
        operation_id="tokens_create",
        summary="Make a named API token (for a bot)",
        request=TokenNameSerializer,
        responses={
            201: OpenApiResponse(NewTokenSerializer, "Made; its secret is shown this once."),
            **errors(400, 401, 403),
        },
    )
    def post(self, request: AuthenticatedRequest) -> HttpResponse:
        name = request.data.get("name") if isinstance(request.data, dict) else None
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            return JsonResponse(
                {"code": "bad_request", "detail": 'Send {"name"}: 1 to 100 characters.'},
                status=400,
            )
        row, key = token_create(user=request.user, name=name.strip())
        return JsonResponse({"token": key, **token_json(row)}, status=201)


class TokenDetailAPI(APIView):
    """``DELETE /api/tokens/<id>``: 204, the token revoked (its sockets close
    with 4401); 404 ``not_found`` when it is not one of yours."""

    @extend_schema(
        operation_id="tokens_revoke",
        summary="Revoke one of your API tokens",
        parameters=[
            OpenApiParameter(
                "token_id", str, OpenApiParameter.PATH, description="The token's `id`."
            )
        ],
        request=None,
        responses={
            **no_content("Revoked; its sockets close with 4401."),
            **errors(401, 403, 404, meanings={404: "`not_found`: not one of your tokens."}),
        },
    )
    def delete(self, request: AuthenticatedRequest, token_id: str) -> HttpResponse:
        if not token_revoke(user=request.user, public_id=token_id):
            return JsonResponse({"code": "not_found", "detail": "No such token."}, status=404)
        return HttpResponse(status=204)


@login_required
def tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The page of one's API tokens: list, create with a name (the secret is
    shown once), revoke."""
    created = None
    if request.method == "POST":
        if "revoke" in request.POST:
            token_revoke(user=request.user, public_id=request.POST["revoke"])
            return redirect("tokens")
        # A NUL cannot be stored (PostgreSQL): dropped, as Django's forms refuse it.
        name = request.POST.get("name", "").replace("\x00", "").strip()[:100]
        if name:
            created = token_create(user=request.user, name=name)[1]
    listed = ApiToken.objects.filter(user=request.user)
    return render(request, "registration/tokens.html", {"tokens": listed, "created": created})


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset, with the link in the email built from
    KAIWA_BASE_URL, never from the request's ``Host`` header (which a client
    chooses: a reset link pointing at an attacker's host would hand him the
    token)."""

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        """Send the email as Django does, with ``domain_override`` and
        ``use_https`` from KAIWA_BASE_URL; redirect to the done page."""
        if password_reset_limited(self.request, form.cleaned_data["email"]):
            # Same page as a sent email: the answer tells nothing about the address.
            logger.warning("password reset: email rate exceeded, not sent")
            return HttpResponseRedirect(self.get_success_url())
        base = urlsplit(settings.KAIWA_BASE_URL)
        form.save(
            domain_override=base.netloc,
            use_https=base.scheme == "https",
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            html_email_template_name=self.html_email_template_name,
            # django-stubs types the view's context a Mapping, the form's a dict:
            # Django hands the one to the other as it is.
            extra_email_context=self.extra_email_context,  # type: ignore[arg-type]
        )
        return HttpResponseRedirect(self.get_success_url())

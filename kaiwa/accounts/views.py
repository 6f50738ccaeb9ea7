"""Sign-up page and the API token endpoint."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from rest_framework.request import Request
from rest_framework.views import APIView

from kaiwa.rest import StrictJSONParser

from .forms import SignupForm
from .services import token_issue


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
    ``{"token", "username"}``, 400 on a malformed body, 401 on bad credentials."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [StrictJSONParser]

    def post(self, request: Request) -> HttpResponse:
        try:
            data = request.data
        except Exception:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) and data.get(k) for k in ("username", "password")
        ):
            return JsonResponse(
                {"code": "bad_request", "detail": 'Send {"username", "password"} as JSON.'},
                status=400,
            )
        token = token_issue(username=data["username"], password=data["password"])
        if token is None:
            return JsonResponse(
                {"code": "bad_credentials", "detail": "Wrong username or password."}, status=401
            )
        return JsonResponse({"token": token.key, "username": token.user.username})


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset, with the link in the email built from
    KAIWA_BASE_URL, never from the request's ``Host`` header (which a client
    chooses: a reset link pointing at an attacker's host would hand him the
    token)."""

    def form_valid(self, form: Any) -> HttpResponse:
        """Send the email as Django does, with ``domain_override`` and
        ``use_https`` from KAIWA_BASE_URL; redirect to the done page."""
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
            extra_email_context=self.extra_email_context,
        )
        return HttpResponseRedirect(self.get_success_url())

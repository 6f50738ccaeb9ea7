"""Sign-up page and the API token endpoint."""

from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.views import APIView

from .forms import SignupForm
from .services import token_issue


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:index")
    return render(request, "registration/signup.html", {"form": form})


class TokenAPI(APIView):
    """``POST /api/auth/token`` with ``{"username", "password"}``: 200
    ``{"token", "username"}``, 400 on a malformed body, 401 on bad credentials."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [JSONParser]

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

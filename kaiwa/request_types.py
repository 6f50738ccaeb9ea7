"""The request types of views only signed-in users reach.

A ``login_required`` view, or a DRF view behind ``IsAuthenticated`` (Kaiwa's
default permission), never sees ``AnonymousUser``; annotating its request with
these types says so to mypy, as django-stubs advises ("How can I create a
HttpRequest that's guaranteed to have an authenticated user?").
"""

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework.request import Request


class AuthenticatedHttpRequest(HttpRequest):
    """An ``HttpRequest`` of a ``login_required`` view or an admin action."""

    user: User


class AuthenticatedRequest(Request):
    """A DRF ``Request`` of a view behind ``IsAuthenticated``."""

    user: User

"""The OpenAPI 3 description of the REST API (PROTOCOL.md section 5), for drf-spectacular.

The views answer plain JSON (``orjson``, ``JsonResponse``) and use no DRF
serializer: the serializers here describe their bodies and answers only;
nothing validates or renders with them. Views name them in ``@extend_schema``
(kaiwa.chat.api, kaiwa.accounts.views); ``/api/schema`` serves the result and
``/api/docs`` shows it in Swagger UI (config.urls). tests/test_openapi.py
checks every real answer of every operation against the schema, so a field
added to a view and not here fails there.
"""

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from django.template import engines
from django.template.backends.django import DjangoTemplates
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

# PROTOCOL.md section 3's codes, plus those only HTTP has (kaiwa.rest.PROTOCOL_CODES,
# TokenAPI's bad_credentials).
ERROR_CODES = [
    ("bad_json", "The body is not JSON, or JSON that is not Unicode text."),
    ("bad_frame", "A field has the wrong type or value (a NUL character, an empty message)."),
    ("bad_request", "A malformed body or query parameter, or a method the path does not have."),
    ("too_long", "The message is longer than KAIWA_MAX_MESSAGE_CHARS."),
    ("unauthenticated", "No valid session or token."),
    ("bad_credentials", "Wrong username or password."),
    ("forbidden", "Not allowed: someone else's message, or a session write without CSRF."),
    ("not_found", "No such room, message, user or token, or one you cannot see."),
    ("rate_limited", "Over a rate limit; nothing was stored."),
    ("unavailable", "The database or Redis does not answer; try again."),
]


def swagger_ui_policy() -> dict[str, list[str]]:
    """What ``/api/docs`` adds to CONTENT_SECURITY_POLICY (django-csp's
    ``csp_update``): ``{directive: [sources]}``. drf-spectacular's Swagger UI
    page holds one inline ``<style>`` (three layout rules, no user data),
    allowed by its sha256 hash as CSP Level 2 defines it (read from the
    template, so it follows upgrades); swagger-ui.css draws its icons as
    ``data:`` SVG images. Its script is a file (the split view, config.urls)."""
    backend = engines["django"]
    assert isinstance(backend, DjangoTemplates)
    source = backend.engine.get_template("drf_spectacular/swagger_ui.html").source
    styles = re.findall(r"<style>(.*?)</style>", source, flags=re.DOTALL)
    hashes = [base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in styles]
    return {"style-src": [f"'sha256-{h}'" for h in hashes], "img-src": ["data:"]}


class ErrorSerializer(serializers.Serializer):
    """Every error answer over REST: ``{"code", "detail"}`` (PROTOCOL.md section 5)."""

    code = serializers.ChoiceField(choices=ERROR_CODES, help_text="Machine-readable reason.")
    detail = serializers.CharField(help_text="Human-readable text.")


# What each status means for any operation that declares it.
ERROR_MEANINGS = {
    400: "`bad_request`, `bad_json`, `bad_frame` or `too_long`: a malformed body or parameter.",
    401: "`unauthenticated`: no valid session cookie or Bearer token.",
    403: "`forbidden`: a session-authenticated write without its CSRF token.",
    404: "`not_found`: no such object, or one in a private room you are not in.",
    429: "`rate_limited`: over the sender's message budget (KAIWA_RATE_*); nothing stored.",
    503: "`unavailable`: the database does not answer; try again.",
}


def errors(*statuses: int, meanings: Mapping[int, str] | None = None) -> dict[int, OpenApiResponse]:
    """``{status: OpenApiResponse(Error)}`` for ``statuses`` (e.g. 400, 401),
    each described by ``meanings[status]`` when given, else by ERROR_MEANINGS."""
    meanings = meanings or {}
    return {
        status: OpenApiResponse(
            ErrorSerializer, description=meanings.get(status, ERROR_MEANINGS[status])
        )
        for status in statuses
    }


def no_content(description: str) -> dict[int, OpenApiResponse]:
    """``{204: OpenApiResponse}``: an empty answer meaning ``description``."""
    return {204: OpenApiResponse(description=description)}


# --- the message object (PROTOCOL.md section 3, ``frames.message_payload``) ------------


class ReactionSummarySerializer(serializers.Serializer):
    """One emoji's reactions to a message: ``{"emoji", "count", "usernames"}``."""

    emoji = serializers.CharField()
    count = serializers.IntegerField(min_value=1)
    usernames = serializers.ListField(child=serializers.CharField())


class MessageSerializer(serializers.Serializer):
    """A message in its current state, as the ``message`` frame (PROTOCOL.md section 3)."""

    type = serializers.ChoiceField(choices=["message"])
    room = serializers.CharField(help_text="The room's slug.")
    seq = serializers.IntegerField(min_value=1, help_text="The room event that created it.")
    id = serializers.CharField(help_text="The message's id (digits).")
    message = serializers.CharField(allow_blank=True, help_text="Raw text; empty once deleted.")
    username = serializers.CharField()
    created_at = serializers.DateTimeField(help_text="ISO 8601, UTC.")
    client_id = serializers.CharField(
        required=False, help_text="The author's idempotency key, when he gave one."
    )
    html = serializers.CharField(allow_blank=True, help_text="Rendered Markdown subset.")
    edited_at = serializers.DateTimeField(allow_null=True, help_text="Null until edited.")
    reactions = ReactionSummarySerializer(many=True)
    deleted = serializers.BooleanField(required=False, help_text="True on a deleted message.")


class MessageListSerializer(serializers.Serializer):
    """``{"messages": [message objects]}``."""

    messages = MessageSerializer(many=True)


# --- rooms, reads, DMs, presence, history -----------------------------------------------


class RoomSerializer(serializers.Serializer):
    """A room as ``GET /api/rooms/`` lists it."""

    slug = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    private = serializers.BooleanField()
    last_seq = serializers.IntegerField(min_value=0, help_text="The room's latest `seq`.")
    unread = serializers.IntegerField(
        min_value=0, help_text="Messages after your read position, neither yours nor deleted."
    )
    mentions = serializers.IntegerField(min_value=0, help_text="Those of them mentioning you.")


class RoomPageSerializer(serializers.Serializer):
    """``{"rooms": [...], "next"}``: ``next`` is the ``cursor`` of the next page."""

    rooms = RoomSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Null on the last page.")


class DirectRoomSerializer(serializers.Serializer):
    """The private room of two users."""

    slug = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    private = serializers.BooleanField()
    last_seq = serializers.IntegerField(min_value=0)


class VersionSerializer(serializers.Serializer):
    """One version of a message's text; ``edited_at`` null on the original."""

    message = serializers.CharField(allow_blank=True)
    html = serializers.CharField(allow_blank=True)
    edited_at = serializers.DateTimeField(allow_null=True)


class HistorySerializer(serializers.Serializer):
    """``{"versions": [...]}``, oldest first, the current text last."""

    versions = VersionSerializer(many=True)


class MemberPresenceSerializer(serializers.Serializer):
    """A member's status: ``away`` while all his sockets are idle or hidden."""

    username = serializers.CharField()
    status = serializers.ChoiceField(choices=["online", "away"])


class PresenceSerializer(serializers.Serializer):
    """``{"users": [...]}``: the room's members who are not offline, by username."""

    users = MemberPresenceSerializer(many=True)


# --- request bodies --------------------------------------------------------------------


class MessagePostSerializer(serializers.Serializer):
    """``POST /api/rooms/<room>/messages/``'s body."""

    message = serializers.CharField(help_text="1 to KAIWA_MAX_MESSAGE_CHARS (4000) characters.")
    client_id = serializers.CharField(
        required=False,
        min_length=1,
        max_length=64,
        help_text="Idempotency key: a retry gets the original message back, with 200.",
    )


class MessageEditSerializer(serializers.Serializer):
    """``PATCH /api/messages/<id>``'s body: the new text."""

    message = serializers.CharField(help_text="1 to KAIWA_MAX_MESSAGE_CHARS (4000) characters.")


class ReadSerializer(serializers.Serializer):
    """``POST /api/rooms/<room>/read``'s body: read up to ``seq`` (never moves back)."""

    seq = serializers.IntegerField(min_value=0)


class DirectMessageRequestSerializer(serializers.Serializer):
    """``POST /api/dms/``'s body: the other user."""

    username = serializers.CharField()


# --- tokens (kaiwa.accounts.views) -----------------------------------------------------


class SignInSerializer(serializers.Serializer):
    """``POST /api/auth/token``'s body."""

    username = serializers.CharField()
    password = serializers.CharField()


class SignedInSerializer(serializers.Serializer):
    """``POST /api/auth/token``'s answer, exactly PROTOCOL.md's ``{"token", "username"}``."""

    token = serializers.CharField(help_text="Send it as `Authorization: Bearer <token>`.")
    username = serializers.CharField()


class TokenSerializer(serializers.Serializer):
    """An API token as listed: never its secret."""

    id = serializers.CharField()
    name = serializers.CharField()
    created = serializers.DateTimeField()
    expiry = serializers.DateTimeField(allow_null=True, help_text="Null: never expires.")


class TokenListSerializer(serializers.Serializer):
    """``{"tokens": [...]}``, newest first."""

    tokens = TokenSerializer(many=True)


class TokenNameSerializer(serializers.Serializer):
    """``POST /api/tokens/``'s body."""

    name = serializers.CharField(min_length=1, max_length=100)


class NewTokenSerializer(TokenSerializer):
    """A token just made, with ``token``, its secret, shown this once."""

    token = serializers.CharField()


# --- parameters ------------------------------------------------------------------------


def query_integer(name: str, description: str) -> OpenApiParameter:
    """An optional non-negative integer query parameter (``api.query_int``)."""
    return OpenApiParameter(
        name, {"type": "integer", "minimum": 0}, OpenApiParameter.QUERY, description=description
    )


ROOM = OpenApiParameter(
    "room",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    OpenApiParameter.PATH,
    description="The room's slug: 1 to 64 characters of `[A-Za-z0-9_-]`.",
)
MESSAGE_ID = OpenApiParameter(
    "message_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The message's `id`."
)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <token>`` (kaiwa.accounts.authentication)."""

    target_class = "kaiwa.accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        """The OpenAPI security scheme: HTTP bearer."""
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `POST /api/auth/token` or `POST /api/tokens/`.",
        }

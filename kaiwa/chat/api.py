"""REST API of PROTOCOL.md section 5: rooms, messages, read positions, DMs,
search, presence."""

from typing import Any, overload

import orjson
from django.conf import settings
from django.db import Error as DatabaseError
from django.http import HttpResponse
from django_ratelimit.core import get_usage
from drf_spectacular.utils import OpenApiParameter as Parameter
from drf_spectacular.utils import OpenApiResponse as Answer
from drf_spectacular.utils import extend_schema
from redis.exceptions import RedisError
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kaiwa.chat import frames, selectors, services
from kaiwa.chat.errors import ChatError, MessageRateLimited, SearchRateLimited, Unavailable
from kaiwa.chat.models import room_slug_validator
from kaiwa.chat.realtime import limits, presence
from kaiwa.chat.selectors import MESSAGE_PAGE_MAX, ROOM_PAGE_DEFAULT, ROOM_PAGE_MAX
from kaiwa.openapi import (
    MESSAGE_ID,
    ROOM,
    DirectMessageRequestSerializer,
    DirectRoomSerializer,
    HistorySerializer,
    MessageEditSerializer,
    MessageListSerializer,
    MessagePostSerializer,
    MessageSerializer,
    PresenceSerializer,
    ReadSerializer,
    RoomPageSerializer,
    errors,
    no_content,
    query_integer,
)
from kaiwa.request_types import AuthenticatedRequest


class ChatAPIError(APIException):
    """A ChatError as a DRF error response: ``{"code", "detail"}``."""

    def __init__(self, error: ChatError) -> None:
        self.status_code = error.http_status
        self.wait = error.retry_after  # DRF's exception handler sends it as Retry-After
        super().__init__(detail=error.detail, code=error.code)


@overload
def query_int(request: Request, name: str, default: int, maximum: int | None = None) -> int: ...
@overload
def query_int(
    request: Request, name: str, default: None, maximum: int | None = None
) -> int | None: ...
def query_int(
    request: Request, name: str, default: int | None, maximum: int | None = None
) -> int | None:
    """A non-negative integer query parameter; raises a 400 ChatAPIError on junk."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ChatAPIError(
            ChatError(f"'{name}' must be a non-negative integer.", code="bad_request")
        )
    value = int(raw)
    return min(value, maximum) if maximum is not None else value


def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; raises a 400 ChatAPIError when it is not an object."""
    data = request.data
    if not isinstance(data, dict):
        raise ChatAPIError(ChatError("The body must be a JSON object.", code="bad_request"))
    return data


def json_response(payload: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


class ChatAPIView(APIView):
    """Maps chat errors to their HTTP status, database errors to 503."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ChatError):
            exc = ChatAPIError(exc)
        elif isinstance(exc, DatabaseError):
            exc = ChatAPIError(Unavailable("The database is unavailable."))
        return super().handle_exception(exc)


def query_cursor(request: Request) -> str | None:
    """The ``cursor`` query parameter (a room slug, from a page's ``next``);
    raises a 400 ChatAPIError on anything else."""
    raw = request.query_params.get("cursor")
    if raw in (None, ""):
        return None
    try:
        room_slug_validator(raw)
    except Exception as exc:
        error = ChatError("'cursor' must be the 'next' of a previous page.", code="bad_request")
        raise ChatAPIError(error) from exc
    return str(raw)


class RoomListAPI(ChatAPIView):
    @extend_schema(
        operation_id="rooms_list",
        summary="The rooms you can see, with unread counts",
        parameters=[
            Parameter("cursor", str, description="The `next` of the previous page."),
            query_integer("limit", "Rooms per page: default 200, at most 500 used."),
        ],
        responses={
            200: Answer(RoomPageSerializer, "A page of rooms, in slug order."),
            **errors(400, 401, 503),
        },
    )
    def get(self, request: AuthenticatedRequest) -> HttpResponse:
        """The rooms listed to you, in slug order, ``limit`` (default 200, at
        most 500) per page; ``next`` is the ``cursor`` of the next page
        (null on the last)."""
        page, next_cursor = selectors.room_page(
            user=request.user,
            after=query_cursor(request),
            limit=max(1, query_int(request, "limit", ROOM_PAGE_DEFAULT, ROOM_PAGE_MAX)),
        )
        counts = selectors.room_unread_counts(user=request.user, room_ids=[r.pk for r in page])
        rooms = [
            {
                "slug": r.slug,
                "title": selectors.room_title_for(room=r, user=request.user),
                "private": r.private,
                "last_seq": r.last_seq,
                "unread": counts.get(r.pk, (0, 0))[0],
                "mentions": counts.get(r.pk, (0, 0))[1],
            }
            for r in page
        ]
        return json_response({"rooms": rooms, "next": next_cursor})


class MessageListAPI(ChatAPIView):
    @extend_schema(
        operation_id="messages_list",
        summary="A page of a room's messages, ascending seq",
        description="A room's messages in their current state; without `after` or `before`, "
        "the latest. 404 for a private room you are not in, alike for one that does not exist.",
        parameters=[
            ROOM,
            query_integer("after", "Only messages with a greater `seq`."),
            query_integer("before", "Only messages with a smaller `seq` (the latest before it)."),
            query_integer("limit", "Messages per page: default 50, at most 200 used."),
        ],
        responses={
            200: Answer(MessageListSerializer, "Ascending `seq`."),
            **errors(400, 401, 404, 503),
        },
    )
    def get(self, request: AuthenticatedRequest, room: str) -> HttpResponse:
        found = selectors.room_get_visible(user=request.user, slug=room)
        messages = selectors.message_list(
            room=found,
            after=query_int(request, "after", None),
            before=query_int(request, "before", None),
            limit=max(1, query_int(request, "limit", 50, MESSAGE_PAGE_MAX)),
        )
        payloads = selectors.message_payloads(messages=messages, room_slug=room)
        return json_response({"messages": payloads})

    @extend_schema(
        operation_id="messages_create",
        summary="Post a message to a room",
        parameters=[ROOM],
        request=MessagePostSerializer,
        responses={
            201: Answer(MessageSerializer, "Stored and broadcast to the room's sockets."),
            200: Answer(MessageSerializer, "A retry of a `client_id` seen before: the original."),
            **errors(400, 401, 403, 404, 429, 503),
        },
    )
    def post(self, request: AuthenticatedRequest, room: str) -> HttpResponse:
        """Store and broadcast a message: 201 (200 for a ``client_id`` seen
        before). 429 ``rate_limited`` over the sender's message budget, the
        same bucket his sockets use (``limits.message_post_allowed``)."""
        data = json_body(request)
        # A private room is visible to its members only: strangers get 404.
        found = selectors.room_get_visible(user=request.user, slug=room)
        message_budget_take(request)
        message, created = services.message_create(
            room=found,
            user=request.user,
            username=request.user.username,
            text=data.get("message"),
            client_id=data.get("client_id"),
        )
        return json_response(frames.message_payload(message, room), 201 if created else 200)


class ReadAPI(ChatAPIView):
    @extend_schema(
        operation_id="rooms_read",
        summary="Move your read position in a room",
        description="As the `read` frame: stored, told to your sockets; joins a public room.",
        parameters=[ROOM],
        request=ReadSerializer,
        responses={
            **no_content("Stored; the position never moves back."),
            **errors(400, 401, 403, 404, 503),
        },
    )
    def post(self, request: AuthenticatedRequest, room: str) -> HttpResponse:
        data = json_body(request)
        found = selectors.room_get_visible(user=request.user, slug=room)
        if not found.private:  # a REST-only client of a public room joins it here
            services.room_join(user=request.user, slug=room)
        services.membership_read(room=found, user=request.user, seq=data.get("seq"))
        return HttpResponse(status=204)


class DirectMessageAPI(ChatAPIView):
    @extend_schema(
        operation_id="dms_open",
        summary="Open the private room of you and another user",
        description="The same room every time, whoever of the two opens it.",
        request=DirectMessageRequestSerializer,
        responses={
            201: Answer(DirectRoomSerializer, "Made now."),
            200: Answer(DirectRoomSerializer, "It existed already."),
            **errors(
                400,
                401,
                403,
                404,
                429,
                503,
                meanings={
                    404: "`not_found`: no such user.",
                    429: "`rate_limited`: too many new conversations in a minute.",
                },
            ),
        },
    )
    def post(self, request: AuthenticatedRequest) -> HttpResponse:
        data = json_body(request)
        room, created = services.dm_open(user=request.user, other_username=data.get("username"))
        payload = {
            "slug": room.slug,
            "title": selectors.room_title_for(room=room, user=request.user),
            "private": True,
            "last_seq": room.last_seq,
        }
        return json_response(payload, 201 if created else 200)


class MessageAPI(ChatAPIView):
    """``PATCH /api/messages/<id>`` with ``{"message"}``: 200 the message
    object, as the ``edit`` frame; ``DELETE``: 204, as the ``delete`` frame.
    404 ``not_found`` for an unknown or deleted message or one of a room you
    cannot see, 403 ``forbidden`` for someone else's."""

    @extend_schema(
        operation_id="messages_edit",
        summary="Edit your message",
        parameters=[MESSAGE_ID],
        request=MessageEditSerializer,
        responses={
            200: Answer(MessageSerializer, "Edited and broadcast, as the `edit` frame."),
            **errors(
                400,
                401,
                403,
                404,
                429,
                503,
                meanings={
                    403: "`forbidden`: someone else's message, or one edited "
                    "KAIWA_MAX_EDITS_PER_MESSAGE times."
                },
            ),
        },
    )
    def patch(self, request: AuthenticatedRequest, message_id: str) -> HttpResponse:
        data = json_body(request)
        message = selectors.message_get_visible(user=request.user, message_id=message_id)
        message_budget_take(request)
        services.message_edit(
            room=message.room, user=request.user, message_id=message.pk, text=data.get("message")
        )
        message.refresh_from_db()
        payload = selectors.message_payloads(messages=[message], room_slug=message.room.slug)
        return json_response(payload[0])

    @extend_schema(
        operation_id="messages_delete",
        summary="Delete your message (staff: any)",
        parameters=[MESSAGE_ID],
        request=None,
        responses={
            **no_content("Deleted and broadcast, as the `delete` frame."),
            **errors(
                401, 403, 404, 429, 503, meanings={403: "`forbidden`: someone else's message."}
            ),
        },
    )
    def delete(self, request: AuthenticatedRequest, message_id: str) -> HttpResponse:
        message = selectors.message_get_visible(user=request.user, message_id=message_id)
        message_budget_take(request)
        services.message_delete(room=message.room, user=request.user, message_id=message.pk)
        return HttpResponse(status=204)


EMOJI = Parameter(
    "emoji",
    str,
    Parameter.PATH,
    description="1 to 32 characters without whitespace: an emoji or a name such as `+1`.",
)
REACTION_ERRORS = errors(
    400,
    401,
    403,
    404,
    429,
    503,
    meanings={403: "`forbidden`: a new emoji beyond KAIWA_MAX_REACTIONS_PER_MESSAGE."},
)


class ReactionAPI(ChatAPIView):
    """``PUT`` / ``DELETE /api/messages/<id>/reactions/<emoji>``: 204, your
    reaction added or removed as the ``react`` frame (a repeat is a no-op)."""

    @extend_schema(
        operation_id="reactions_add",
        summary="Add your reaction to a message",
        parameters=[MESSAGE_ID, EMOJI],
        request=None,
        responses={**no_content("Added (or already there)."), **REACTION_ERRORS},
    )
    def put(self, request: AuthenticatedRequest, message_id: str, emoji: str) -> HttpResponse:
        return self._set(request, message_id, emoji, on=True)

    @extend_schema(
        operation_id="reactions_remove",
        summary="Remove your reaction from a message",
        parameters=[MESSAGE_ID, EMOJI],
        request=None,
        responses={**no_content("Removed (or already absent)."), **REACTION_ERRORS},
    )
    def delete(self, request: AuthenticatedRequest, message_id: str, emoji: str) -> HttpResponse:
        return self._set(request, message_id, emoji, on=False)

    def _set(
        self, request: AuthenticatedRequest, message_id: str, emoji: str, *, on: bool
    ) -> HttpResponse:
        message = selectors.message_get_visible(user=request.user, message_id=message_id)
        message_budget_take(request)
        services.reaction_set(
            room=message.room, user=request.user, message_id=message.pk, emoji=emoji, on=on
        )
        return HttpResponse(status=204)


class MessageHistoryAPI(ChatAPIView):
    """``GET /api/messages/<id>/history``: 200 ``{"versions": [{"message",
    "html", "edited_at"}]}``, oldest first, the original included; at most
    KAIWA_MAX_EDITS_PER_MESSAGE + 1 versions (the original and the latest),
    none rendered on the request (``selectors.message_versions``)."""

    @extend_schema(
        operation_id="messages_history",
        summary="The versions of a message's text",
        parameters=[MESSAGE_ID],
        responses={
            200: Answer(
                HistorySerializer,
                "Oldest first, the original included; at most "
                "KAIWA_MAX_EDITS_PER_MESSAGE + 1 versions: the original and the latest.",
            ),
            **errors(401, 404, 503),
        },
    )
    def get(self, request: AuthenticatedRequest, message_id: str) -> HttpResponse:
        message = selectors.message_get_visible(user=request.user, message_id=message_id)
        return json_response({"versions": selectors.message_versions(message=message)})


class SearchAPI(ChatAPIView):
    """``GET /api/search/?q=<words>&room=<room>&limit=``: 200 ``{"messages":
    [message objects]}`` from the rooms you can see (or one room), best
    matches first, deleted messages never; ``limit`` default 20, at most
    100. 400 ``bad_request`` without ``q`` (1 to 200 characters); 404 for a
    room you cannot see; 429 ``rate_limited`` with ``Retry-After`` over
    KAIWA_SEARCH_RATE (``search_retry_after``)."""

    @extend_schema(
        operation_id="messages_search",
        summary="Search the messages of the rooms you can see",
        parameters=[
            Parameter("q", str, required=True, description="1 to 200 characters of words."),
            Parameter("room", str, description="Only this room (its slug)."),
            query_integer("limit", "Results: default 20, at most 100 used."),
        ],
        responses={
            200: Answer(MessageListSerializer, "Best matches first."),
            **errors(
                400,
                401,
                404,
                429,
                503,
                meanings={429: "`rate_limited`: over KAIWA_SEARCH_RATE; see `Retry-After`."},
            ),
        },
    )
    def get(self, request: AuthenticatedRequest) -> HttpResponse:
        wait = search_retry_after(request)
        if wait is not None:
            raise SearchRateLimited("Too many searches; wait a moment.", retry_after=wait)
        query = request.query_params.get("q", "").strip()
        if not 1 <= len(query) <= SEARCH_QUERY_MAX or "\x00" in query:
            error = ChatError("'q' must be 1 to 200 characters of text.", code="bad_request")
            raise ChatAPIError(error)
        slug = request.query_params.get("room")
        room = selectors.room_get_visible(user=request.user, slug=slug) if slug else None
        limit = max(1, query_int(request, "limit", 20, 100))
        found = selectors.message_search(user=request.user, query=query, room=room, limit=limit)
        reactions = selectors.reactions_of(message_ids=[m.pk for m in found])
        return json_response(
            {
                "messages": [
                    frames.message_payload(m, m.room.slug, reactions.get(m.pk)) for m in found
                ]
            }
        )


SEARCH_QUERY_MAX = 200  # characters of a search query


def search_retry_after(request: AuthenticatedRequest) -> int | None:
    """Count one search of ``request.user`` against KAIWA_SEARCH_RATE
    (django-ratelimit's ``"<n>/<s|m|h|d>"``, a fixed window in Django's cache,
    so across processes with Redis); returns the seconds until the window
    ends when he is over it, else None. ``"0"``: no limit. A query costs
    about a second of PostgreSQL time on 200,000 messages (issue 22 #2)."""
    rate = settings.KAIWA_SEARCH_RATE
    if rate in ("", "0"):
        return None
    usage = get_usage(
        request,
        group="kaiwa.search",
        key=lambda group, req: str(request.user.pk),
        rate=rate,
        increment=True,
    )
    if usage is None or not usage["should_limit"]:
        return None
    return max(1, int(usage["time_left"]))


class PresenceAPI(ChatAPIView):
    """``GET /api/rooms/<room>/presence``: 200 ``{"users": [{"username",
    "status"}]}``, the room's members who are not offline, by username; 404
    for a room you cannot see; 503 ``unavailable`` when Redis does not answer."""

    @extend_schema(
        operation_id="rooms_presence",
        summary="The members of a room who are not offline",
        parameters=[ROOM],
        responses={
            200: Answer(PresenceSerializer, "By username."),
            **errors(401, 404, 503, meanings={503: "`unavailable`: Redis or the database."}),
        },
    )
    def get(self, request: AuthenticatedRequest, room: str) -> HttpResponse:
        found = selectors.room_get_visible(user=request.user, slug=room)
        members = selectors.room_members(room=found)
        try:
            statuses = presence.room_presence([user for user, _ in members])
        except RedisError as exc:
            raise Unavailable("Presence is unavailable.") from exc
        users = [
            {"username": name, "status": statuses[user]}
            for user, name in members
            if user in statuses
        ]
        return json_response({"users": users})


def message_budget_take(request: AuthenticatedRequest) -> None:
    """Take one message from the sender's budget, the bucket his sockets share
    (``limits.message_post_allowed``); raises MessageRateLimited (429, with
    Retry-After in seconds) when it is empty."""
    if not limits.message_post_allowed(f"user:{request.user.pk}"):
        raise MessageRateLimited(
            limits.SenderLimit.detail(), retry_after=limits.SenderLimit.retry_after_seconds()
        )

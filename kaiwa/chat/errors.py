"""Errors of the chat services, each carrying the code a client sees.

``code`` is the PROTOCOL.md error code (error frames) and ``close_code`` the
WebSocket close code where the error ends a connection.
"""


class ChatError(Exception):
    """Base of chat errors: ``code`` (str) and human ``detail`` (str)."""

    code = "error"
    close_code = 1008
    http_status = 400
    retry_after: int | None = None  # seconds; REST sends it as Retry-After

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or self.code).strip()
        if code:
            self.code = code


class RoomNotFound(ChatError):
    """No such room, or a bad room name."""

    code = "not_found"
    close_code = 4404
    http_status = 404


class RoomForbidden(ChatError):
    """Not allowed in this room."""

    code = "forbidden"
    close_code = 4403
    http_status = 403


class MessageInvalid(ChatError):
    """The message is not a string of the allowed length."""

    code = "bad_frame"
    http_status = 400


class Unavailable(ChatError):
    """The database or channel layer is unreachable; try again."""

    code = "unavailable"
    close_code = 1013  # try again later (RFC 6455 section 7.4.1)
    http_status = 503


class NotAuthenticated(ChatError):
    """No valid session or token, and guests are off."""

    code = "unauthenticated"
    close_code = 4401
    http_status = 401


class RoomCapReached(ChatError):
    """You have created as many rooms as one user may; join an existing one."""

    code = "forbidden"
    close_code = 4403
    http_status = 403


class MessageNotFound(ChatError):
    """No such message in this room, or it was deleted."""

    code = "not_found"
    http_status = 404


class MessageForbidden(ChatError):
    """Someone else's message (only its author may edit it; its author or staff delete it)."""

    code = "forbidden"
    http_status = 403


class MessageCapReached(ChatError):
    """The message holds as much as one message may (edits, or distinct
    reactions: KAIWA_MAX_EDITS_PER_MESSAGE, KAIWA_MAX_REACTIONS_PER_MESSAGE)."""

    code = "forbidden"
    http_status = 403


class MessageRateLimited(ChatError):
    """Too many messages: over KAIWA_RATE_MESSAGES_PER_SECOND; this one was not stored.

    ``retry_after`` (seconds, over REST as Retry-After): when the sender's
    bucket holds a token again; None over WebSocket, whose error frame has none.
    """

    code = "rate_limited"
    close_code = 4429
    http_status = 429

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RoomCreateRateLimited(ChatError):
    """Too many new rooms in a short time; try again in a minute."""

    code = "rate_limited"
    close_code = 4429
    http_status = 429


class SearchRateLimited(ChatError):
    """Too many searches: over KAIWA_SEARCH_RATE; try again in ``retry_after`` seconds."""

    code = "rate_limited"
    close_code = 4429
    http_status = 429

    def __init__(self, detail: str = "", *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

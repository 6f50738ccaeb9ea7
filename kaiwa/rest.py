"""REST plumbing shared by the apps: strict JSON bodies and ``{"code", "detail"}`` errors.

PROTOCOL.md section 5: errors over REST are ``{"code", "detail"}`` with the
codes of the error frame. DRF answers its own errors (a malformed body, no
credentials, an unknown method) with ``{"detail"}`` only; ``exception_handler``
adds the code. ``StrictJSONParser`` refuses, with 400 and ``bad_json``, the
bodies that Python's ``json`` accepts but that would end in a 500 further on:
nesting deeper than the parser's recursion limit, and lone UTF-16 surrogates
(``"\\ud800"``), which are not Unicode text and which no database can store
(orjson refuses both on the WebSocket side alike).
"""

from collections.abc import Iterator, Mapping
from typing import IO, Any

from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

# DRF's error codes -> PROTOCOL.md's (section 3's list, plus `unauthenticated`
# and `bad_request` for what only HTTP has).
PROTOCOL_CODES = {
    "parse_error": "bad_json",
    "unsupported_media_type": "bad_json",
    "not_authenticated": "unauthenticated",
    "authentication_failed": "unauthenticated",
    "permission_denied": "forbidden",
    "not_found": "not_found",
    "method_not_allowed": "bad_request",
    "not_acceptable": "bad_request",
    "throttled": "rate_limited",
    "invalid": "bad_frame",
}


def strings_of(value: Any) -> Iterator[str]:
    """Every string in the JSON value ``value``, keys included. Iterative:
    ``value`` may be nested as deep as the parser allowed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` holds a lone surrogate (U+D800 to U+DFFF)."""
    return any(any("\ud800" <= ch <= "\udfff" for ch in s) for s in strings_of(value))


def has_nul(value: Any) -> bool:
    """Whether any string in ``value`` holds a NUL character (U+0000), which
    PostgreSQL cannot store in any text column."""
    return any("\x00" in s for s in strings_of(value))


class UnstorableText(APIException):
    """400 ``bad_frame``: a string of the body holds a NUL character."""

    status_code = 400
    default_detail = "The body holds a NUL character (U+0000), which cannot be stored."
    default_code = "invalid"


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, answering ParseError (400, ``bad_json``) instead of
    a 500 for bodies nested too deeply or holding lone surrogates, and
    UnstorableText (400, ``bad_frame``, as the WebSocket answers it) for a
    NUL character anywhere, before any view or database sees it."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:  # any JSON value: DRF's stubs say a dict, a body may be a list
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("The JSON body is nested too deeply.") from exc
        if has_lone_surrogate(data):
            raise ParseError("The JSON body holds a lone surrogate: it is not Unicode text.")
        if has_nul(data):
            raise UnstorableText()
        return data


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with a PROTOCOL.md ``code`` beside every ``detail``."""
    # Imported here: rest_framework.views reads the API settings, which name this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(response.data, dict):
        return response
    if "code" not in response.data and isinstance(exc, APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "bad_frame"
        response.data = {"code": PROTOCOL_CODES.get(code, code), **response.data}
    return response

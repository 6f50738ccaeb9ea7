"""Every REST answer of the test suite checked against Kaiwa's OpenAPI schema.

``validate_exchange`` checks one request and its answer, as Django's test
``Client`` (and DRF's ``APIClient``) made them, with openapi-core against the
schema drf-spectacular generates (``/api/schema``): the answer's status must
be declared for the operation and its body must match the declared schema;
a request the server accepted (2xx) must match its operation too (path and
query parameters, body, security). The test copy of the schema is closed
(``additionalProperties: false`` on every object), so that an answer field
the schema does not name fails.

``checking_client`` patches the test client so that every ``/api/`` answer is
checked as it comes (tests/conftest.py turns it on for every test); ``SEEN``
records the ``(path template, method, status)`` of each answer checked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from django.test.client import RequestFactory
from django.urls import Resolver404, resolve
from django.utils.encoding import force_bytes
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

# The paths under /api/ that are not operations of the schema: the schema itself.
NOT_OPERATIONS = frozenset({"/api/schema", "/api/docs"})
METHODS = ("get", "put", "post", "delete", "patch")

SEEN: set[tuple[str, str, int]] = set()  # (path template, method, status) checked


@functools.cache
def schema() -> dict[str, Any]:
    """The OpenAPI document as ``/api/schema`` serves it (a fresh JSON tree)."""
    from drf_spectacular.generators import SchemaGenerator

    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(json.dumps(generated, default=str))


def closed(node: Any) -> Any:
    """``node`` with ``additionalProperties: false`` on every object schema that
    lists its properties and says nothing of others."""
    if isinstance(node, dict):
        node = {k: closed(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [closed(v) for v in node]
    return node


@functools.cache
def openapi() -> OpenAPI:
    """openapi-core's validator over the closed copy of ``schema()``."""
    return OpenAPI.from_dict(closed(schema()))


def operations() -> set[tuple[str, str]]:
    """Every ``(path template, method)`` of the schema."""
    return {(path, m) for path, item in schema()["paths"].items() for m in item if m in METHODS}


def answers() -> set[tuple[str, str, int]]:
    """Every ``(path template, method, status)`` the schema declares."""
    return {
        (path, method, int(status))
        for path, item in schema()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        for status in operation["responses"]
    }


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    return [
        (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"), path)
        for path in schema()["paths"]
    ]


def template_of(path: str) -> str | None:
    """The schema's path template matching the concrete ``path``, or None."""
    return next((template for regex, template in _templates() if regex.match(path)), None)


def exchange(response: Any, body: bytes) -> tuple[MockRequest, MockResponse]:
    """The openapi-core request and response of a test client's ``response``
    (its ``wsgi_request`` gives the path, query, headers and cookies; ``body``
    is the request body the client sent)."""
    request = response.wsgi_request
    meta = request.META
    headers = {k[5:].replace("_", "-").title(): v for k, v in meta.items() if k.startswith("HTTP_")}
    mock_request = MockRequest(
        "http://testserver",
        request.method,
        request.path_info,
        args=parse_qsl(meta.get("QUERY_STRING", ""), keep_blank_values=True),
        headers=headers,
        cookies=dict(request.COOKIES),
        data=body,
        content_type=meta.get("CONTENT_TYPE", ""),
    )
    mock_response = MockResponse(
        response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=response.headers.get("Content-Type", ""),
    )
    return mock_request, mock_response


def validate_exchange(response: Any, body: bytes = b"") -> tuple[str, str, int] | None:
    """Check one ``/api/`` answer of the test client; returns its ``(path
    template, method, status)``, or None for what is no operation of the
    schema (the schema's own pages, a path Django does not route, a method
    the path does not have). Raises AssertionError for an answer or accepted
    request the schema does not describe, or an ``/api/`` route missing from it."""
    request = response.wsgi_request
    path, method = request.path_info, request.method.lower()
    if path in NOT_OPERATIONS:
        return None
    template = template_of(path)
    if template is None:
        with contextlib.suppress(Resolver404):
            resolve(path)
            raise AssertionError(f"{path} is routed but not in the OpenAPI schema")
        return None
    if method not in schema()["paths"][template]:
        assert response.status_code == 405, (method, path, response.status_code)
        return None
    mock_request, mock_response = exchange(response, body)
    try:
        if response.status_code < 300:  # the server took it: the schema must too
            openapi().validate_request(mock_request)
        openapi().validate_response(mock_request, mock_response)
    except Exception as exc:
        details = "; ".join(str(e) for e in getattr(exc, "schema_errors", ()))
        raise AssertionError(
            f"{method.upper()} {path} -> {response.status_code} {response.content[:300]!r}"
            f" does not match the OpenAPI schema: {exc!r} {details}"
        ) from exc
    seen = (template, method, response.status_code)
    SEEN.add(seen)
    return seen


@contextlib.contextmanager
def checking_client() -> Iterator[None]:
    """Within it, every answer of a test client to an ``/api/`` path goes
    through ``validate_exchange`` (RequestFactory.generic is where Django's
    Client and DRF's APIClient send every request, with the encoded body)."""
    original = RequestFactory.generic

    def generic(
        self: RequestFactory, method: str, path: str, data: Any = "", *args: Any, **kw: Any
    ):
        response = original(self, method, path, data, *args, **kw)
        wsgi_request = getattr(response, "wsgi_request", None)  # a Client's answer
        if wsgi_request is not None and wsgi_request.path_info.startswith("/api/"):
            validate_exchange(response, force_bytes(data))
        return response

    RequestFactory.generic = generic  # type: ignore[method-assign]
    try:
        yield
    finally:
        RequestFactory.generic = original  # type: ignore[method-assign]

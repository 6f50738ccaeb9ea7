"""The OpenAPI schema (/api/schema, kaiwa.openapi) against the real REST API.

Every answer the schema declares, ``(path, method, status)``, has a scenario
here that makes the real view give it; each answer is validated with
openapi-core against the generated schema (tests/openapi.py) and the scenario
checks that its answer is the one expected. Together: every operation's
success and error answers are described, and nothing the views answer is
left out of the schema.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import Client
from django.urls import get_resolver
from rest_framework.test import APIClient

from kaiwa.accounts.models import ApiToken
from kaiwa.chat import quotas
from kaiwa.chat.realtime import limits
from kaiwa.openapi import ERROR_CODES
from tests import openapi
from tests.factories import MembershipFactory, MessageFactory, RoomFactory, UserFactory, token_for

PASSWORD = "pw-secret-123"  # tests.factories.UserFactory's


@dataclass
class World:
    """alice and bob; ``lobby`` (public) with alice's message ``hello world``;
    ``secret``, bob's private room; ``settings`` to turn limits down."""

    settings: Any
    alice: Any = None
    bob: Any = None
    message_id: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, user: Any = None) -> APIClient:
        """A client with ``user``'s Bearer token, anonymous for None."""
        client = APIClient()
        if user is not None:
            if user.username not in self.tokens:
                self.tokens[user.username] = token_for(user)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.tokens[user.username]}")
        return client

    def session(self, user: Any) -> APIClient:
        """A browser's client: ``user``'s session cookie, CSRF checked."""
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(user)
        return client

    def limit_messages(self) -> None:
        """One message per user, then 429 (the budget refills in ~17 minutes)."""
        self.settings.KAIWA_RATE_MESSAGES_PER_SECOND = 0.001
        self.settings.KAIWA_RATE_BURST = 1
        limits.message_limits_reset()

    def spend_messages(self, user: Any) -> None:
        """Use up ``user``'s message budget, turned down first."""
        self.limit_messages()
        answer = self.api(user).post("/api/rooms/lobby/messages/", {"message": "x"}, format="json")
        assert answer.status_code == 201


@pytest.fixture
def world(db, settings) -> World:
    world = World(settings, UserFactory(username="alice"), UserFactory(username="bob"))
    lobby = RoomFactory(slug="lobby")
    MembershipFactory(room=lobby, user=world.alice)
    world.message_id = str(MessageFactory(room=lobby, author=world.alice, text="hello world").pk)
    secret = RoomFactory(slug="secret", private=True)
    MembershipFactory(room=secret, user=world.bob)
    return world


def send(client: Client, method: str, path: str, body: Any = None) -> Any:
    """``client``'s answer to ``method path``; ``body`` JSON-encoded unless a str."""
    if method == "get":
        return client.get(path)
    if isinstance(body, str):
        return getattr(client, method)(path, body, content_type="application/json")
    return getattr(client, method)(path, body, format="json")


# One call each operation answers with success, alice calling (``{message}``
# stands for lobby's message); the 401, 403 (no CSRF) and 503 answers are
# this call made anonymously, from a session without its CSRF token, and
# with the database down.
CALLS: dict[tuple[str, str], tuple[str, Any]] = {
    ("/api/auth/token", "post"): ("/api/auth/token", {"username": "alice", "password": PASSWORD}),
    ("/api/tokens/", "get"): ("/api/tokens/", None),
    ("/api/tokens/", "post"): ("/api/tokens/", {"name": "deploy bot"}),
    ("/api/tokens/{token_id}", "delete"): ("/api/tokens/{token}", None),
    ("/api/rooms/", "get"): ("/api/rooms/?limit=10", None),
    ("/api/rooms/{room}/messages/", "get"): ("/api/rooms/lobby/messages/?after=0&limit=5", None),
    ("/api/rooms/{room}/messages/", "post"): (
        "/api/rooms/lobby/messages/",
        {"message": "hi **there**", "client_id": "c-1"},
    ),
    ("/api/rooms/{room}/read", "post"): ("/api/rooms/lobby/read", {"seq": 1}),
    ("/api/rooms/{room}/presence", "get"): ("/api/rooms/lobby/presence", None),
    ("/api/dms/", "post"): ("/api/dms/", {"username": "bob"}),
    ("/api/messages/{message_id}", "patch"): ("/api/messages/{message}", {"message": "edited"}),
    ("/api/messages/{message_id}", "delete"): ("/api/messages/{message}", None),
    ("/api/messages/{message_id}/reactions/{emoji}", "put"): (
        "/api/messages/{message}/reactions/+1",
        None,
    ),
    ("/api/messages/{message_id}/reactions/{emoji}", "delete"): (
        "/api/messages/{message}/reactions/+1",
        None,
    ),
    ("/api/messages/{message_id}/history", "get"): ("/api/messages/{message}/history", None),
    ("/api/search/", "get"): ("/api/search/?q=hello&limit=5", None),
}
SUCCESS = {
    ("/api/auth/token", "post"): 200,
    ("/api/tokens/", "post"): 201,
    ("/api/rooms/{room}/messages/", "post"): 201,
    ("/api/dms/", "post"): 201,
    ("/api/tokens/{token_id}", "delete"): 204,
    ("/api/rooms/{room}/read", "post"): 204,
    ("/api/messages/{message_id}", "delete"): 204,
    ("/api/messages/{message_id}/reactions/{emoji}", "put"): 204,
    ("/api/messages/{message_id}/reactions/{emoji}", "delete"): 204,
}


def call(world: World, client: Client, operation: tuple[str, str]) -> Any:
    """Make ``operation``'s success call (CALLS) with ``client``."""
    path, body = CALLS[operation]
    if "{token}" in path:
        bot = world.api(world.alice).post("/api/tokens/", {"name": "bot"}, format="json")
        path = path.replace("{token}", bot.json()["id"])
    return send(client, operation[1], path.replace("{message}", world.message_id), body)


def database_down(execute, sql, params, many, context):
    raise OperationalError("the database is down (tests.test_openapi)")


def success(world: World, operation: tuple[str, str]) -> Any:
    return call(world, world.api(world.alice), operation)


def anonymous(world: World, operation: tuple[str, str]) -> Any:
    return call(world, world.api(), operation)


def without_csrf(world: World, operation: tuple[str, str]) -> Any:
    return call(world, world.session(world.alice), operation)


def with_the_database_down(world: World, operation: tuple[str, str]) -> Any:
    client = world.api(world.alice)
    with connection.execute_wrapper(database_down):
        return call(world, client, operation)


def a_retry(world: World, operation: tuple[str, str]) -> Any:
    success(world, operation)
    return success(world, operation)


def sign_in_flood(world: World, operation: tuple[str, str]) -> Any:
    world.settings.KAIWA_SIGNIN_RATE_PER_IP = "1/m"
    success(world, operation)
    return success(world, operation)


def over_the_message_budget(world: World, operation: tuple[str, str]) -> Any:
    world.spend_messages(world.alice)
    return success(world, operation)


def over_the_room_rate(world: World, operation: tuple[str, str]) -> Any:
    world.settings.KAIWA_ROOM_CREATE_RATE_PER_MINUTE = 1
    quotas.room_create_limits_reset()
    assert success(world, operation).status_code == 201
    return send(world.api(world.alice), "post", "/api/dms/", {"username": "carol"})


def over_the_search_rate(world: World, operation: tuple[str, str]) -> Any:
    world.settings.KAIWA_SEARCH_RATE = "1/m"
    assert success(world, operation).status_code == 200
    answer = success(world, operation)
    assert answer["Retry-After"]
    return answer


def edited_then_history(world: World, operation: tuple[str, str]) -> Any:
    world.api(world.alice).patch(
        f"/api/messages/{world.message_id}", {"message": "*edited*"}, format="json"
    )
    return success(world, operation)


def reacted_then_listed(world: World, operation: tuple[str, str]) -> Any:
    # The listing carries a reaction, a client_id, an edit and a deletion.
    client = world.api(world.bob)
    client.put(f"/api/messages/{world.message_id}/reactions/+1")
    posted = client.post(
        "/api/rooms/lobby/messages/", {"message": "bye", "client_id": "c-9"}, format="json"
    ).json()
    client.patch(f"/api/messages/{posted['id']}", {"message": "bye!"}, format="json")
    gone = client.post("/api/rooms/lobby/messages/", {"message": "oops"}, format="json").json()
    client.delete(f"/api/messages/{gone['id']}")
    answer = success(world, operation)
    assert [m.get("deleted", False) for m in answer.json()["messages"]] == [False, False, True]
    return answer


def someone_online(world: World, operation: tuple[str, str]) -> Any:
    # The presence store stands in for a serving process with alice's socket
    # open (tests/chat/test_presence.py drives the real one): the view is real.
    from kaiwa.chat.realtime import presence

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(presence, "room_presence", lambda ids: {world.alice.pk: "away"})
        answer = success(world, operation)
    assert answer.json() == {"users": [{"username": "alice", "status": "away"}]}
    return answer


def by(user: str, method: str, path: str, body: Any = None) -> Scenario:
    """A scenario: ``user`` (alice or bob) calls ``method path`` with ``body``."""

    def run(world: World, operation: tuple[str, str]) -> Any:
        return send(
            world.api(getattr(world, user)),
            method,
            path.replace("{message}", world.message_id),
            body,
        )

    return run


Scenario = Callable[[World, tuple[str, str]], Any]
M, R = "/api/messages/{message_id}", "/api/messages/{message_id}/reactions/{emoji}"

# The answers that are not the generic ones (success, 401, 403 without CSRF, 503).
SCENARIOS: dict[tuple[str, str, int], Scenario] = {
    ("/api/auth/token", "post", 400): by("alice", "post", "/api/auth/token", "[]"),
    ("/api/auth/token", "post", 401): by(
        "alice", "post", "/api/auth/token", {"username": "alice", "password": "wrong"}
    ),
    ("/api/auth/token", "post", 429): sign_in_flood,
    ("/api/tokens/", "post", 400): by("alice", "post", "/api/tokens/", {"name": " "}),
    ("/api/tokens/{token_id}", "delete", 404): by("alice", "delete", "/api/tokens/nope"),
    ("/api/rooms/", "get", 400): by("alice", "get", "/api/rooms/?cursor=a%20b"),
    ("/api/rooms/{room}/messages/", "get", 200): reacted_then_listed,
    ("/api/rooms/{room}/messages/", "get", 400): by(
        "alice", "get", "/api/rooms/lobby/messages/?after=x"
    ),
    ("/api/rooms/{room}/messages/", "get", 404): by("alice", "get", "/api/rooms/secret/messages/"),
    ("/api/rooms/{room}/messages/", "post", 200): a_retry,
    ("/api/rooms/{room}/messages/", "post", 400): by(
        "alice", "post", "/api/rooms/lobby/messages/", {"message": "x" * 4001}
    ),
    ("/api/rooms/{room}/messages/", "post", 404): by(
        "alice", "post", "/api/rooms/secret/messages/", {"message": "hi"}
    ),
    ("/api/rooms/{room}/messages/", "post", 429): over_the_message_budget,
    ("/api/rooms/{room}/read", "post", 400): by(
        "alice", "post", "/api/rooms/lobby/read", {"seq": "1"}
    ),
    ("/api/rooms/{room}/read", "post", 404): by(
        "alice", "post", "/api/rooms/secret/read", {"seq": 1}
    ),
    ("/api/rooms/{room}/presence", "get", 200): someone_online,
    ("/api/rooms/{room}/presence", "get", 404): by("alice", "get", "/api/rooms/secret/presence"),
    ("/api/dms/", "post", 200): a_retry,
    ("/api/dms/", "post", 400): by("alice", "post", "/api/dms/", {"username": 3}),
    ("/api/dms/", "post", 404): by("alice", "post", "/api/dms/", {"username": "nobody"}),
    ("/api/dms/", "post", 429): over_the_room_rate,
    (M, "patch", 400): by("alice", "patch", "/api/messages/{message}", {"message": ""}),
    (M, "patch", 403): by("bob", "patch", "/api/messages/{message}", {"message": "mine"}),
    (M, "patch", 404): by("alice", "patch", "/api/messages/123456789", {"message": "x"}),
    (M, "patch", 429): over_the_message_budget,
    (M, "delete", 403): by("bob", "delete", "/api/messages/{message}"),
    (M, "delete", 404): by("alice", "delete", "/api/messages/123456789"),
    (M, "delete", 429): over_the_message_budget,
    (R, "put", 400): by("alice", "put", "/api/messages/{message}/reactions/a%20b"),
    (R, "put", 404): by("alice", "put", "/api/messages/123456789/reactions/+1"),
    (R, "put", 429): over_the_message_budget,
    (R, "delete", 400): by("alice", "delete", "/api/messages/{message}/reactions/a%20b"),
    (R, "delete", 404): by("alice", "delete", "/api/messages/123456789/reactions/+1"),
    (R, "delete", 429): over_the_message_budget,
    ("/api/messages/{message_id}/history", "get", 200): edited_then_history,
    ("/api/messages/{message_id}/history", "get", 404): by(
        "alice", "get", "/api/messages/123456789/history"
    ),
    ("/api/search/", "get", 400): by("alice", "get", "/api/search/?q="),
    ("/api/search/", "get", 404): by("alice", "get", "/api/search/?q=hello&room=secret"),
    ("/api/search/", "get", 429): over_the_search_rate,
}


def scenario_of(answer: tuple[str, str, int]) -> Scenario:
    """The scenario that makes the real view give ``answer``."""
    path, method, status = answer
    if answer in SCENARIOS:
        return SCENARIOS[answer]
    if SUCCESS.get((path, method), 200) == status:
        return success
    return {401: anonymous, 403: without_csrf, 503: with_the_database_down}[status]


def test_the_schema_validates_without_warnings(tmp_path):
    # `kaiwa manage spectacular --validate --fail-on-warn`: raises on any warning.
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    document = yaml.safe_load(target.read_text())
    assert document["info"]["title"] == "Kaiwa"
    assert {(p, m) for p, item in document["paths"].items() for m in item} == set(CALLS)


def routes(patterns: list[Any], prefix: str = "") -> set[str]:
    """Every route of Django's URL ``patterns``, ``<str:room>`` written ``{room}``."""
    found: set[str] = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if hasattr(pattern, "url_patterns"):
            found |= routes(pattern.url_patterns, route)
        else:
            found.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return found


def test_every_rest_route_is_in_the_schema():
    api = {r for r in routes(get_resolver().url_patterns) if r.startswith("/api/")}
    assert api - openapi.NOT_OPERATIONS == {path for path, _ in CALLS}
    assert openapi.operations() == set(CALLS)


def test_every_declared_answer_has_a_scenario():
    for answer in openapi.answers():
        assert scenario_of(answer), answer
    assert set(SCENARIOS) <= openapi.answers()  # no scenario for an answer not declared
    assert all((p, m) in CALLS for p, m, _ in openapi.answers())


@pytest.mark.parametrize("answer", sorted(openapi.answers()), ids=lambda a: f"{a[1]} {a[0]} {a[2]}")
def test_the_real_answer_validates(world, answer):
    openapi.SEEN.clear()
    response = scenario_of(answer)(world, answer[:2])
    assert response.status_code == answer[2], response.content
    if answer[2] >= 400:
        assert response.json()["code"] in {code for code, _ in ERROR_CODES}
    assert answer in openapi.SEEN  # validated by the client hook of tests/conftest.py


def test_an_undeclared_field_fails_the_check(world):
    answer = world.api(world.alice).get("/api/tokens/")
    answer.content = b'{"tokens": [], "extra": 1}'
    with pytest.raises(AssertionError, match="does not match"):
        openapi.validate_exchange(answer)


def test_an_undeclared_status_fails_the_check(world):
    answer = world.api(world.alice).get("/api/tokens/")
    answer.status_code = 418
    with pytest.raises(AssertionError, match="does not match"):
        openapi.validate_exchange(answer)


def test_the_schema_and_the_docs_are_served_to_anyone(db):
    schema = Client().get("/api/schema")
    assert schema.status_code == 200
    assert yaml.safe_load(io.BytesIO(schema.content))["openapi"].startswith("3.")
    assert Client().get("/api/schema?format=json").json()["info"]["title"] == "Kaiwa"
    docs = Client().get("/api/docs")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower()  # the sidecar's files, served by Kaiwa: works offline
    assets = re.findall(r'(?:src|href)="(/static/drf_spectacular_sidecar/[^"]+)"', page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert [Client().get(a).status_code for a in assets] == [200] * len(assets)


def test_revoked_token_is_gone(world):
    # The success call of DELETE /api/tokens/<id> really revokes it.
    assert success(world, ("/api/tokens/{token_id}", "delete")).status_code == 204
    assert not ApiToken.objects.filter(name="bot").exists()

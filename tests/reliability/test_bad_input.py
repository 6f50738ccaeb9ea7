"""Bad input against a real ``kaiwa serve`` (shared by the module): a corpus and
hypothesis-generated frames and handshakes. The server never crashes, never
stores junk, answers each with PROTOCOL.md's error or close code, and keeps
the connection usable where the protocol says so (an error frame: the socket
stays open, which a ``ping`` round trip after every frame checks).

The expected answer of every frame comes from ``expected_answer``, written
from PROTOCOL.md sections 2, 3 and 6 and docs/clients.md's "where the protocol is
silent" list, not from the server's code.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.kaiwa_process import KaiwaServer, base_env, create_users, manage
from tests.wsclient import bearer, until_ready_sync

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

MAX_FRAME_BYTES = 16 * 1024
MAX_MESSAGE_CHARS = 4000
SLUG = re.compile(r"[A-Za-z0-9_-]{1,64}")
SEQ = re.compile(r"[0-9]{1,18}")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure is reproducible
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[KaiwaServer]:
    tmp = tmp_path_factory.mktemp("badinput")
    env = base_env(
        KAIWA_DATA_DIR=str(tmp / "data"),
        KAIWA_RATE_MESSAGES_PER_SECOND="0",
        KAIWA_CONNECT_RATE_PER_IP="0",
        KAIWA_MAX_CONNECTIONS_PER_USER="0",
    )
    create_users(env, "alice", "gone")
    server = KaiwaServer(env, tmp / "serve.log").start()
    server.gone_token = server.token("gone")  # type: ignore[attr-defined]
    # An expired credential: the user is deactivated after his token was issued.
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='gone').update(is_active=False)",
    )
    yield server
    assert server.proc is not None
    assert server.proc.poll() is None, "the server died"
    server.stop()


@pytest.fixture(scope="module")
def token(server) -> str:
    return server.token("alice")


@pytest.fixture(autouse=True)
def _server_still_serves(server, token) -> Iterator[None]:
    """After each test, whatever it sent: the server runs and admits a join."""
    yield
    assert server.proc is not None
    assert server.proc.poll() is None, "the server died"
    answer = handshake(server, "/ws/chat/fuzz-health/", additional_headers=bearer(token))
    assert answer[0] == "ready", answer


def open_socket(server: KaiwaServer, path: str, **kwargs: Any) -> ClientConnection:
    return connect(
        server.ws + path,
        proxy=None,
        open_timeout=10,
        close_timeout=2,
        max_size=None,
        legacy=True,
        **kwargs,
    )


def recv(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(ws.recv(timeout=10))
    assert isinstance(frame, dict), frame
    assert isinstance(frame.get("type"), str), frame
    return frame


def close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            ws.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def expected_answer(frame: Any, cids: dict[str, str]) -> tuple[Any, ...]:
    """What PROTOCOL.md says the server answers to the JSON value ``frame`` from
    a signed-in member: ("error", code), ("message", text, client_id),
    ("pong",) or ("none",). ``cids``: client_id -> text already stored."""
    if not isinstance(frame, dict):
        return ("error", "bad_frame")
    kind = frame.get("type", "message")
    if kind == "message":
        text, cid = frame.get("message"), frame.get("client_id")
        if not isinstance(text, str) or not text:
            return ("error", "bad_frame")
        if len(text) > MAX_MESSAGE_CHARS:
            return ("error", "too_long")
        if cid is not None and (not isinstance(cid, str) or not 1 <= len(cid) <= 64):
            return ("error", "bad_frame")
        if "\x00" in text or (cid is not None and "\x00" in cid):  # README: not storable
            return ("error", "bad_frame")
        return ("message", cids.get(cid, text) if cid is not None else text, cid)
    if kind == "ping":
        return ("pong",)
    if kind == "read":
        seq = frame.get("seq")
        ok = isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0
        return ("none",) if ok else ("error", "bad_frame")
    if kind in ("edit", "delete", "react"):
        return room_event_answer(kind, frame)
    if kind == "typing":  # relayed to others, never answered; a bad state is bad_frame
        return (
            ("none",)
            if frame.get("state", "start") in ("start", "stop")
            else ("error", "bad_frame")
        )
    if kind == "presence":  # noted, never answered (frames go to others); else bad_frame
        return ("none",) if frame.get("status") in ("online", "away") else ("error", "bad_frame")
    return ("error", "bad_frame")  # unknown types


def room_event_answer(kind: str, frame: dict[str, Any]) -> tuple[Any, ...]:
    """The answer to an ``edit``, ``delete`` or ``react`` frame whose ``id``
    names no message (the fuzz never names one): its first error, in the
    order the server checks (text or emoji and ``on``, then the id)."""
    if kind == "edit":
        text = frame.get("message")
        if not isinstance(text, str) or not text:
            return ("error", "bad_frame")
        if len(text) > MAX_MESSAGE_CHARS:
            return ("error", "too_long")
        if "\x00" in text:
            return ("error", "bad_frame")
    if kind == "react":
        emoji = frame.get("emoji")
        if (
            not isinstance(emoji, str)
            or not 1 <= len(emoji) <= 32
            or any(c.isspace() for c in emoji)
            or "\x00" in emoji
        ):
            return ("error", "bad_frame")
        if not isinstance(frame.get("on"), bool):
            return ("error", "bad_frame")
    message_id = frame.get("id")
    if isinstance(message_id, bool) or not isinstance(message_id, int | str):
        return ("error", "bad_frame")
    return ("error", "not_found")


def is_ping(data: str | bytes, text: bool | None) -> bool:
    """Whether the server will read ``data`` as a ping frame (and answer a pong)."""
    if isinstance(data, bytes) and not text:
        return False
    try:
        value = strict_json(data.decode() if isinstance(data, bytes) else data)
    except (ValueError, RecursionError):  # not JSON the server reads: no pong
        return False
    return isinstance(value, dict) and value.get("type") == "ping"


class Session:
    """One member socket in the fuzz room, reopened when a frame closes it; it
    keeps what was stored (``stored``: texts, in order) to check the database."""

    def __init__(self, server: KaiwaServer, token: str, room: str) -> None:
        self.server, self.token, self.room = server, token, room
        self.ws: ClientConnection | None = None
        self.cids: dict[str, str] = {}
        self.stored: list[str] = []
        self.answers: dict[str, int] = {}

    def socket(self) -> ClientConnection:
        if self.ws is None:
            path = f"/ws/chat/{self.room}/?after={len(self.stored)}"
            self.ws = open_socket(
                self.server, path, additional_headers={"Authorization": f"Bearer {self.token}"}
            )
            assert until_ready_sync(self.ws)[0] == []
        return self.ws

    def count(self, answer: str) -> None:
        self.answers[answer] = self.answers.get(answer, 0) + 1

    def answers_to(self, data: str | bytes, text: bool | None = None) -> list[dict[str, Any]]:
        """Send one frame, then a ping; the frames before that ping's pong (a
        frame that is itself a ping has its own pong among them)."""
        ws = self.socket()
        ws.send(data, text=text)
        ws.send('{"type": "ping"}')
        pongs = 2 if is_ping(data, text) else 1
        got = []
        while True:
            frame = recv(ws)
            if frame["type"] == "pong":
                pongs -= 1
                if pongs == 0:
                    return got
            got.append(frame)

    def closed_by(self, data: str | bytes, text: bool | None = None) -> int | None:
        """Send one frame that must close the socket; its close code."""
        ws = self.socket()
        self.ws = None
        ws.send(data, text=text)
        return close_code(ws)

    def check_json(self, value: Any) -> None:
        expected = expected_answer(value, self.cids)
        got = self.answers_to(json.dumps(value))
        self.count(expected[0] if expected[0] != "error" else f"error {expected[1]}")
        if expected[0] == "error":
            assert [(f["type"], f.get("code")) for f in got] == [expected], (value, got)
            assert isinstance(got[0]["detail"], str)
            assert got[0]["detail"]
        elif expected[0] == "message":
            if not got:  # the broadcast that acknowledges it may come after the pong
                got = [recv(self.socket())]
            (frame,) = got
            assert frame["type"] == "message", (value, got)
            assert (frame["message"], frame.get("client_id")) == expected[1:], (value, got)
            if frame["seq"] == len(self.stored) + 1:  # new, not a retried client_id
                self.stored.append(frame["message"])
            assert frame["seq"] <= len(self.stored)
            if expected[2] is not None:
                self.cids[expected[2]] = frame["message"]
        elif expected[0] == "pong":
            assert got == [{"type": "pong"}], (value, got)
        else:
            assert got == [], (value, got)

    def check_database(self, server: KaiwaServer) -> None:
        """The room holds exactly the valid messages, once each: no junk."""
        stored: list[dict[str, Any]] = []
        with httpx.Client(base_url=server.http, trust_env=False, timeout=10) as http:
            while True:
                answer = http.get(
                    f"/api/rooms/{self.room}/messages/",
                    params={"after": len(stored), "limit": 200},
                    headers={"Authorization": f"Bearer {self.token}"},
                )
                assert answer.status_code == 200, answer.text
                if not (page := answer.json()["messages"]):
                    break
                stored.extend(page)
        assert [m["message"] for m in stored] == self.stored
        assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))


@pytest.fixture(scope="module")
def session(server, token) -> Iterator[Session]:
    session = Session(server, token, "fuzz-frames")
    yield session
    session.check_database(server)
    print(f"\nFIGURES bad-input/frames: answers {dict(sorted(session.answers.items()))}")


# --- the corpus -------------------------------------------------------------------------

CORPUS_ERRORS = [
    ("not json", "bad_json"),
    ("{", "bad_json"),
    ('{"message": "hi"', "bad_json"),
    ("", "bad_json"),
    ("[" * 5000 + "]" * 5000, "bad_json"),  # nested deeper than any parser allows
    ('{"a":' * 2000 + "1" + "}" * 2000, "bad_json"),
    ("[" * 100 + "]" * 100, "bad_frame"),  # JSON, but not an object
    ("null", "bad_frame"),
    ('"a string"', "bad_frame"),
    ("42", "bad_frame"),
    ("[]", "bad_frame"),
    ('{"message": 42}', "bad_frame"),
    ('{"message": null}', "bad_frame"),
    ('{"message": ""}', "bad_frame"),
    ('{"message": ["hi"]}', "bad_frame"),
    ('{"message": {"text": "hi"}}', "bad_frame"),
    ('{"message": "hi", "client_id": 7}', "bad_frame"),
    ('{"message": "hi", "client_id": ""}', "bad_frame"),
    ('{"message": "hi", "client_id": "' + "c" * 65 + '"}', "bad_frame"),
    ('{"message": "' + "x" * 4001 + '"}', "too_long"),
    ('{"type": "message"}', "bad_frame"),
    ('{"type": "read"}', "bad_frame"),
    ('{"type": "read", "seq": -1}', "bad_frame"),
    ('{"type": "read", "seq": "3"}', "bad_frame"),
    ('{"type": "read", "seq": 1.5}', "bad_frame"),
    ('{"type": "read", "seq": true}', "bad_frame"),
    ('{"type": "typing", "state": "maybe"}', "bad_frame"),
    ('{"type": "typing", "state": 1}', "bad_frame"),
    ('{"type": "presence"}', "bad_frame"),
    ('{"type": "presence", "status": "offline"}', "bad_frame"),
    ('{"type": "presence", "status": ["away"]}', "bad_frame"),
    ('{"type": "edit", "seq": 1, "message": "x"}', "bad_frame"),
    ('{"type": "delete", "seq": 1}', "bad_frame"),
    ('{"type": "delete", "id": "no-such"}', "not_found"),
    ('{"type": "delete", "id": "99999999"}', "not_found"),
    ('{"type": "edit", "id": "99999999", "message": ""}', "bad_frame"),
    ('{"type": "react", "id": "99999999", "emoji": "a b", "on": true}', "bad_frame"),
    ('{"type": "react", "id": "99999999", "emoji": "+1", "on": 1}', "bad_frame"),
    ('{"type": "react", "id": "99999999", "emoji": "+1", "on": true}', "not_found"),
    ('{"type": null, "message": "hi"}', "bad_frame"),
    ('{"type": ["message"], "message": "hi"}', "bad_frame"),
    ('{"type": {"a": 1}}', "bad_frame"),
    ('{"type": "MESSAGE", "message": "hi"}', "bad_frame"),
    ('{"type": "\\u0000"}', "bad_frame"),
    ('{"message": "\\ud800"}', "bad_json"),  # a lone surrogate is not Unicode text
    ('{"message": "NUL \\u0000 inside"}', "bad_frame"),  # PostgreSQL cannot store it
    ('{"message": "hi", "client_id": "c\\u0000"}', "bad_frame"),
]


@pytest.mark.parametrize(("frame", "code"), CORPUS_ERRORS)
def test_corpus_frames_get_their_error_and_the_socket_stays_usable(session, frame, code):
    got = session.answers_to(frame)
    assert [(f["type"], f.get("code")) for f in got] == [("error", code)], got
    session.count(f"error {code}")


def test_corpus_binary_frames_get_bad_frame(session):
    for data in (b"", b"\x00", b'{"message": "hi"}', bytes(range(256)), b"\xff" * 10_000):
        assert [(f["type"], f.get("code")) for f in session.answers_to(data)] == [
            ("error", "bad_frame")
        ]
        session.count("error bad_frame")


def test_corpus_valid_frames_among_the_junk_are_stored_once(session):
    for frame in (
        {"message": "plain"},
        {"type": "message", "message": " ", "client_id": "c-1"},
        {"type": "message", "message": "retry", "client_id": "c-1"},  # the original comes back
        {"message": "x" * MAX_MESSAGE_CHARS, "extra": {"ignored": [1, 2]}},
        {"type": "ping", "junk": True},
        {"type": "read", "seq": 10**15},  # capped at the latest seq, no answer
    ):
        session.check_json(frame)


def test_corpus_invalid_utf8_closes_with_1007(session):
    # RFC 6455 section 8.1: a text frame that is not UTF-8 fails the connection (1007).
    assert session.closed_by(b'{"message": "\xc3\x28"}', text=True) == 1007
    assert session.closed_by(b"\xed\xa0\x80", text=True) == 1007  # an encoded surrogate


def test_corpus_oversized_frames_close_with_1009(session):
    big = json.dumps({"message": "x" * MAX_FRAME_BYTES})
    assert session.closed_by(big) == 1009
    assert session.closed_by(b"\x00" * (MAX_FRAME_BYTES + 1)) == 1009
    # Exactly at the limit is read (and answered): here too long a message.
    exact = '{"message": "' + "y" * (MAX_FRAME_BYTES - 15) + '"}'
    assert len(exact.encode()) == MAX_FRAME_BYTES
    assert [f.get("code") for f in session.answers_to(exact)] == ["too_long"]


# --- generated frames ---------------------------------------------------------------------


def strict_json(text: str) -> Any:
    """Parse ``text`` as RFC 8259 JSON: no NaN or Infinity, numbers that overflow a
    double are errors, integers beyond 64 bits are doubles (RFC 8259 section 6:
    the range that interoperates)."""

    def constant(name: str) -> Any:
        raise ValueError(name)

    def number(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise ValueError(literal)
        return value

    def integer(literal: str) -> int | float:
        value = int(literal)
        return value if -(2**63) <= value < 2**64 else number(literal)

    return json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
frame_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            [
                "message",
                "ping",
                "read",
                "typing",
                "presence",
                "edit",
                "delete",
                "react",
                "",
                "Message",
            ]
        )
        | json_values,
        # Ids that name no message: digit strings and integers could name one.
        # Floats finite: json.dumps writes inf as Infinity, which is no JSON
        # (a bad_json answer, right, but not this test's oracle).
        "id": st.text(max_size=12, alphabet="abc-é ")
        | st.none()
        | st.booleans()
        | st.floats(allow_nan=False, allow_infinity=False),
        "emoji": st.text(max_size=34) | json_values,
        "on": st.booleans() | json_values,
        "state": st.sampled_from(["start", "stop", "Start", ""]) | json_values,
        "status": st.sampled_from(["online", "away", "offline", "Away"]) | json_values,
        "message": st.text(max_size=20)
        | st.text(min_size=3990, max_size=4010, alphabet="ab")
        | json_values,
        "client_id": st.text(min_size=0, max_size=70, alphabet="cd") | json_values,
        "seq": st.integers(min_value=-5, max_value=2**40) | json_values,
    },
    # Other keys are ignored by the server, whatever they hold.
) | st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@FUZZ
@given(value=frame_objects | json_values)
def test_fuzz_json_frames(session, value):
    session.check_json(value)


@FUZZ
@given(text=st.text(max_size=200))
def test_fuzz_text_frames(session, text):
    try:
        value = strict_json(text)
    except ValueError:
        got = session.answers_to(text)
        assert [(f["type"], f.get("code")) for f in got] == [("error", "bad_json")], (text, got)
        session.count("error bad_json")
        return
    session.check_json(value)


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_binary_frames(session, data):
    got = session.answers_to(data)
    assert [(f["type"], f.get("code")) for f in got] == [("error", "bad_frame")], got


# --- handshakes ----------------------------------------------------------------------------


def handshake(server: KaiwaServer, path: str, **kwargs: Any) -> tuple[str, Any]:
    """("http", status) when refused at the handshake, ("close", code) when
    closed after it, ("ready", backlog) when admitted."""
    try:
        ws = open_socket(server, path, **kwargs)
    except InvalidStatus as refused:
        return ("http", refused.response.status_code)
    with ws:
        try:
            return ("ready", until_ready_sync(ws)[0])
        except ConnectionClosed as closed:
            return ("close", closed.rcvd.code if closed.rcvd else None)


@FUZZ
@given(room=st.text(max_size=70) | st.from_regex(SLUG, fullmatch=True))
def test_fuzz_room_names(server, token, room):
    answer = handshake(
        server, f"/ws/chat/{quote(room, safe='')}/", additional_headers=bearer(token)
    )
    if SLUG.fullmatch(room) and not room.startswith("dm-"):
        assert answer[0] == "ready", (room, answer)
    elif SLUG.fullmatch(room):
        assert answer == ("close", 4403), (room, answer)  # dm- rooms are never revealed
    else:
        assert answer in (("http", 404), ("close", 4404)), (room, answer)


@FUZZ
@given(
    after=st.text(max_size=25)
    | st.from_regex(SEQ, fullmatch=True)
    | st.integers(-(10**20), 10**20).map(str)
)
def test_fuzz_after_parameter(server, token, after):
    answer = handshake(
        server,
        f"/ws/chat/fuzz-after/?after={quote(after, safe='')}",
        additional_headers=bearer(token),
    )
    assert answer[0] == "ready", (after, answer)
    kinds = [(f["type"], f.get("code")) for f in answer[1]]
    if after == "" or SEQ.fullmatch(after):
        assert ("error", "bad_request") not in kinds, (after, kinds)
    else:  # an error frame first, then the join goes on as without `after`
        assert kinds[:1] == [("error", "bad_request")], (after, kinds)
        assert all(kind == ("message", None) for kind in kinds[1:]), (after, kinds)


@FUZZ
@given(key=st.text(alphabet=string.ascii_letters + string.digits + string.punctuation, max_size=60))
def test_fuzz_bad_tokens_are_closed_with_4401(server, key):
    assert handshake(server, "/ws/chat/fuzz-auth/", additional_headers=bearer(key)) == (
        "close",
        4401,
    )


def test_expired_token_is_closed_with_4401(server):
    # The token of a deactivated user: the server has it, but it no longer admits.
    headers = bearer(server.gone_token)
    assert handshake(server, "/ws/chat/fuzz-auth/", additional_headers=headers) == ("close", 4401)
    answer = httpx.get(server.http + "/api/rooms/", headers=headers, timeout=10)
    assert answer.status_code == 401


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://127.0.0.1.evil.example",
        "http://localhost.evil.example",
        "null",
        "file://",
        "http://[::2]",
    ],
)
def test_foreign_origins_are_refused_with_403(server, token, origin):
    answer = handshake(
        server, "/ws/chat/fuzz-origin/", additional_headers={**bearer(token), "Origin": origin}
    )
    assert answer == ("http", 403)


def test_garbage_query_strings_do_not_break_the_join(server, token):
    for query in (
        "after=-1",
        "after=abc",
        "after=1e3",
        "after=0x10",
        "after=%ff",
        "after=1&after=x",
        "after",
        "&&&",
        "after=" + "9" * 40,
        "%",
        "after=%00",
    ):
        answer = handshake(
            server, f"/ws/chat/fuzz-query/?{query}", additional_headers=bearer(token)
        )
        assert answer[0] == "ready", (query, answer)

"""docs/asyncapi.yaml (the WebSocket frames) against the real consumer.

Two sockets go through every client frame type; every frame the server sends
them is validated, with jsonschema, against the document's payload schema of
its ``type`` (closed: a field the document does not name fails), and every
server frame type of the document must have been seen. The client frame types
of the document are those the consumer dispatches (``ChatConsumer._dispatch``)
and counts (``metrics.CLIENT_FRAME_TYPES``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from channels.db import database_sync_to_async

from kaiwa import metrics
from kaiwa.chat.realtime.consumers import ChatConsumer
from tests.communicator import Socket
from tests.factories import UserFactory
from tests.openapi import closed

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"


@functools.cache
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text())


def resolved(node: Any) -> Any:
    """``node`` with every local ``$ref`` (``#/components/...``) replaced by its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document()
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolved(target)
        return {k: resolved(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolved(v) for v in node]
    return node


def payloads(operation: str) -> dict[str, dict[str, Any]]:
    """``{frame type: payload schema}`` of the channel's ``publish`` (client
    to server) or ``subscribe`` (server to client) messages."""
    channel = document()["channels"]["/ws/chat/{room}/"]
    messages = resolved(channel[operation]["message"]["oneOf"])
    return {m["name"]: m["payload"] for m in messages}


def check_frame(frame: dict[str, Any], operation: str = "subscribe") -> None:
    """Raise jsonschema.ValidationError unless ``frame`` matches the (closed)
    payload schema of its type; KeyError for a type the document lacks."""
    kind = frame.get("type", "message")
    schema = closed(payloads(operation)[kind])
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(frame)


class CheckedSocket(Socket):
    """A test socket that validates each frame it receives and records its type."""

    seen: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen = set()

    async def receive_output(self, timeout: float = 1) -> dict[str, Any]:
        output = await super().receive_output(timeout)
        if output["type"] == "websocket.send":
            frame = json.loads(output["text"])
            check_frame(frame)
            self.seen.add(frame["type"])
        return output

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send ``frame``, checked first against the client frames of the document."""
        check_frame(frame, "publish")
        await self.send_json_to(frame)

    async def until(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of type ``kind`` (others read, validated and skipped)."""
        deadline = time.monotonic() + timeout
        while (frame := await self.recv(max(0.01, deadline - time.monotonic())))["type"] != kind:
            pass
        return frame


async def checked_join(path: str, user: Any) -> CheckedSocket:
    socket = CheckedSocket(path, user=user)
    await socket.open()
    await socket.until_ready()
    return socket


def dispatched_types() -> set[str]:
    """The frame types ``ChatConsumer`` has a handler for (its HANDLERS table)."""
    return set(ChatConsumer.HANDLERS)


def test_the_client_frames_are_those_the_consumer_takes():
    assert set(payloads("publish")) == dispatched_types() == set(metrics.CLIENT_FRAME_TYPES)


def test_the_document_is_asyncapi_with_a_payload_for_each_server_frame():
    assert document()["asyncapi"].startswith("2.6")
    assert set(payloads("subscribe")) == {
        "message",
        "edit",
        "delete",
        "reaction",
        "typing",
        "presence",
        "ready",
        "reset",
        "pong",
        "read",
        "error",
    }  # fmt: skip — PROTOCOL.md section 3's table
    for schema in payloads("subscribe").values():
        jsonschema.Draft7Validator.check_schema(schema)


def test_a_frame_the_document_does_not_describe_fails():
    with pytest.raises(jsonschema.ValidationError):
        check_frame({"type": "pong", "extra": 1})
    with pytest.raises(jsonschema.ValidationError):
        check_frame({"type": "ready", "room": "lobby", "seq": "1", "username": "a"})
    with pytest.raises(KeyError):
        check_frame({"type": "dance"})


@pytest.mark.django_db(transaction=True)
async def test_every_frame_the_server_sends_matches_the_document(settings):
    settings.KAIWA_PRESENCE_MAX_MEMBERS = 200  # tests.settings turns presence frames off
    settings.KAIWA_RESUME_LIMIT = 3  # events 3, 4, 5 are replayed; 1 to 5 are too many
    make = database_sync_to_async(UserFactory)
    alice, bob = await make(username="alice"), await make(username="bob")
    a = await checked_join("/ws/chat/lobby/", alice)
    b = await checked_join("/ws/chat/lobby/", bob)
    assert (await a.until("presence"))["username"] in ("alice", "bob")

    await a.send_frame({"message": "hello **bob**", "client_id": "c-1"})
    posted = await b.until("message")
    await a.send_frame({"type": "message", "message": "hello **bob**", "client_id": "c-1"})
    assert (await a.until("message"))["id"] == (await a.until("message"))["id"]  # the retry
    await a.send_frame({"type": "edit", "id": posted["id"], "message": "hello *all*"})
    assert (await b.until("edit"))["message"] == "hello *all*"
    await b.send_frame({"type": "react", "id": posted["id"], "emoji": "+1", "on": True})
    assert (await a.until("reaction"))["on"] is True
    await a.send_frame({"type": "message", "message": "oops"})
    oops = await b.until("message")
    await a.send_frame({"type": "delete", "id": oops["id"]})
    assert (await b.until("delete"))["id"] == oops["id"]
    await a.send_frame({"type": "typing"})
    assert (await b.until("typing"))["state"] == "start"
    await a.send_frame({"type": "typing", "state": "stop"})
    assert (await b.until("typing"))["state"] == "stop"
    await b.send_frame({"type": "presence", "status": "away"})
    assert (await a.until("presence"))["status"] == "away"
    await b.send_frame({"type": "presence", "status": "online"})
    await a.send_frame({"type": "ping"})
    await a.until("pong")
    await a.send_to(text_data='{"type": "dance"}')
    assert (await a.until("error"))["code"] == "bad_frame"
    await a.send_to(text_data='{"message": "", "client_id": "c-2"}')
    refused = await a.until("error")
    assert (refused["code"], refused["client_id"]) == ("bad_frame", "c-2")

    a2 = await checked_join("/ws/chat/lobby/", alice)  # alice's second socket
    await a.send_frame({"type": "read", "seq": posted["seq"]})
    assert (await a2.until("read"))["seq"] == posted["seq"]

    # A resume replays stored events (the deleted message as deleted); too far back, a reset.
    assert posted["seq"] == 1  # then 2 the edit, 3 the reaction, 4 oops, 5 its deletion
    replay = await checked_join("/ws/chat/lobby/?after=2", bob)
    assert [f["type"] for f in replay.backlog] == ["reaction", "message", "delete"]
    assert replay.backlog[1].get("deleted") is True
    reset = await checked_join("/ws/chat/lobby/?after=0", bob)
    assert [f["type"] for f in reset.backlog] == ["reset"]
    plain = await checked_join("/ws/chat/lobby/?after=junk", bob)
    assert plain.backlog[0]["code"] == "bad_request"

    sockets = (a, b, a2, replay, reset, plain)
    seen = set().union(*(s.seen for s in sockets))
    assert seen == set(payloads("subscribe"))  # every server frame type, each validated
    for socket in sockets:
        await socket.disconnect()
    await asyncio.sleep(0)

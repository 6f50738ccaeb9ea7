"""Zulip's test_events idea for room events: for a scripted session of posts,
edits, deletions and reactions, applying every frame a client received (live,
and through a resume from each point) to an empty state gives the state
fetched fresh over REST."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from tests.communicator import join
from tests.factories import RoomFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def apply(state, frame):
    """Apply one frame to ``state`` ({message id: fields}) as a client would."""
    kind, key = frame["type"], frame.get("id")
    if kind == "message":
        state[key] = {
            "message": frame["message"],
            "html": frame["html"],
            "edited_at": frame["edited_at"],
            "deleted": frame.get("deleted", False),
            "reactions": {r["emoji"]: set(r["usernames"]) for r in frame["reactions"]},
        }
    elif key not in state or state[key]["deleted"]:
        return  # an event about a message the client never had, or a deleted one
    elif kind == "edit":
        state[key].update(
            message=frame["message"], html=frame["html"], edited_at=frame["edited_at"]
        )
    elif kind == "delete":
        state[key].update(message="", html="", edited_at=None, deleted=True, reactions={})
    elif kind == "reaction":
        users = state[key]["reactions"].setdefault(frame["emoji"], set())
        (users.add if frame["on"] else users.discard)(frame["username"])
        if not users:
            del state[key]["reactions"][frame["emoji"]]


def fold(frames):
    state = {}
    for frame in frames:
        apply(state, frame)
    return state


def fetched(user):
    client = Client()
    client.force_login(user)
    answer = client.get("/api/rooms/lobby/messages/?after=0&limit=200")
    return fold(answer.json()["messages"])


# Resumes answered by the feed's memory (200), by the database (0), or by both (3).
@pytest.mark.parametrize("memory", [200, 0, 3])
async def test_frames_applied_live_or_from_any_resume_point_give_the_rest_state(settings, memory):
    settings.KAIWA_FEED_MEMORY_MESSAGES = memory
    make = database_sync_to_async(UserFactory)
    alice, bob, carol = (
        await make(username="alice"),
        await make(username="bob"),
        await make(username="carol"),
    )
    await database_sync_to_async(RoomFactory)(slug="lobby")
    listener = await join(user=carol)
    a, b = await join(user=alice), await join(user=bob)
    live = []

    async def send(socket, frame):
        await socket.send_json_to(frame)
        seen = len(live)
        while len(live) == seen:  # every scripted frame makes exactly one room event
            live.append(await listener.recv())

    ids = []
    for socket, text in ((a, "m1 @bob"), (b, "m2 **bold**"), (a, "m3"), (b, "m4")):
        await send(socket, {"message": text})
        ids.append(live[-1]["id"])
    script = [
        (a, {"type": "edit", "id": ids[0], "message": "m1 edited"}),
        (a, {"type": "react", "id": ids[1], "emoji": "👍", "on": True}),
        (b, {"type": "react", "id": ids[1], "emoji": "👍", "on": True}),
        (b, {"type": "react", "id": ids[0], "emoji": "🎉", "on": True}),
        (a, {"type": "delete", "id": ids[2]}),
        (b, {"type": "edit", "id": ids[1], "message": "m2 _v2_"}),
        (b, {"type": "edit", "id": ids[1], "message": "m2 _v3_"}),
        (b, {"type": "react", "id": ids[1], "emoji": "👍", "on": False}),
        (a, {"type": "edit", "id": ids[0], "message": "m1 again"}),
        (a, {"type": "delete", "id": ids[0]}),
    ]
    for socket, frame in script:
        await send(socket, frame)
    assert [f["seq"] for f in live] == list(range(1, 15))

    truth = await database_sync_to_async(fetched)(carol)
    assert fold(live) == truth
    assert truth[ids[1]]["message"] == "m2 _v3_"
    assert truth[ids[1]]["reactions"] == {"👍": {"alice"}}
    assert truth[ids[0]]["deleted"]
    assert truth[ids[2]]["deleted"]
    for after in range(len(live) + 1):
        resumed = await join(f"/ws/chat/lobby/?after={after}", user=carol)
        assert fold([*live[:after], *resumed.backlog]) == truth, after
        assert [f["seq"] for f in resumed.backlog] == list(range(after + 1, 15))
        await resumed.disconnect()
    for text in ("m1 edited", "m1 again", "m3", "m1 @bob"):  # deleted texts are never replayed
        assert text not in str((await join("/ws/chat/lobby/?after=0", user=carol)).backlog)

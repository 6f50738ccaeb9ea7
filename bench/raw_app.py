"""A raw ASGI broadcast app: no framework, no auth, no storage.

Each text frame received on ``/ws/chat/<room>/`` is written as is to every
socket of the room with one ``await send`` per member. It is the ceiling the
benchmark holds Kaiwa against on the same ASGI server.
"""

from typing import Any

rooms: dict[str, set[Any]] = {}


async def application(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        return
    room = rooms.setdefault(scope["path"], set())
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            room.add(send)
        elif event["type"] == "websocket.receive":
            text = event.get("text")
            for member in tuple(room):
                await member({"type": "websocket.send", "text": text})
        elif event["type"] == "websocket.disconnect":
            room.discard(send)
            return

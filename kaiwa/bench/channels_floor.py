"""The floor of a Channels WebSocket join on uvicorn: no auth, no database.

A consumer that accepts and sends a ``ready`` frame, on Django's ASGI app,
Channels' ``ProtocolTypeRouter`` and ``URLRouter``, with the same receive
loop as Kaiwa's consumer (``ChatConsumer.__call__``). ``kaiwa bench`` runs it
in the connect scenarios only: what uvicorn and Channels cost per handshake
on this machine, below which no Channels consumer can go.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.exceptions import StopConsumer  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402


class FloorConsumer(AsyncWebsocketConsumer):
    """Accept, then send ``{"type": "ready", "seq": 0}``."""

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data='{"type":"ready","seq":0}')


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([re_path(r"^ws/chat/(?P<room>[^/]+)/$", FloorConsumer.as_asgi())]),
    }
)

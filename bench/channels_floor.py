"""The floor of a Channels WebSocket join on uvicorn: no auth, no database.

A consumer that accepts and sends a ``ready`` frame, on Django's ASGI app,
Channels' ``ProtocolTypeRouter`` and ``URLRouter``, with the same receive
loop as Kaiwa's consumer (``ChatConsumer.__call__``). ``python -m bench`` runs it
in the connect scenarios only: what uvicorn and Channels cost per handshake
on this machine, below which no Channels consumer can go.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from kaiwa.chat.realtime.consumers import ChatConsumer  # noqa: E402


class FloorConsumer(AsyncWebsocketConsumer):
    """Accept, then send ``{"type": "ready", "seq": 0}``; read the client as
    Kaiwa's consumer does (its very ``__call__`` and ``dispatch``)."""

    __call__ = ChatConsumer.__call__
    dispatch = ChatConsumer.dispatch

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data='{"type":"ready","seq":0}')


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # django-stubs and types-channels disagree on routes (see kaiwa.chat.routing).
        "websocket": URLRouter(
            [re_path(r"^ws/chat/(?P<room>[^/]+)/$", FloorConsumer.as_asgi())]  # type: ignore[arg-type,list-item]
        ),
    }
)

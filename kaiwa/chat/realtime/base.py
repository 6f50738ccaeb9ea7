"""The socket plumbing under Kaiwa's consumers: Channels'
``AsyncWebsocketConsumer`` with three of its internals overridden, so that
the protocol (``consumers.ChatConsumer``) reads as the protocol.

- no channel-layer channel per socket: the hub holds one subscription per
  room per process (``hub.Hub``), so a socket reads its client alone;
- no hop to Channels' sync thread before each handler (``close_old_connections``):
  Kaiwa's database calls run on its own pools (``executors``);
- no group cleanup at disconnect: these consumers join no group.
"""

from typing import TYPE_CHECKING, Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, WebSocketDisconnectEvent
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from kaiwa import metrics

if TYPE_CHECKING:
    # The scope type of types-channels (a WebSocket scope with Channels' keys),
    # which names it for type checkers only.
    from channels.consumer import _ChannelScope


class SocketConsumer(AsyncWebsocketConsumer):
    """A WebSocket consumer fed by the hub rather than by a channel of its own;
    counts open sockets in kaiwa_websockets_open."""

    # Sockets get no channel-layer channel of their own: the hub holds one
    # subscription per room per process (see fanout). This alias names no layer.
    channel_layer_alias = "kaiwa.no-per-socket-channel"

    async def __call__(
        self, scope: "_ChannelScope", receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """The ASGI application of one socket: Channels' ``AsyncConsumer.__call__``
        for a consumer with no channel-layer channel of its own.

        Channels waits on the client and the socket's channel at once
        (``await_many_dispatch``: a task and an ``asyncio.wait`` per incoming
        frame); this consumer has no channel (the hub feeds it), so it reads
        the client alone, one message after the other, as Channels would.
        That is more handshakes per second in a connect storm and less work
        per ``read`` frame (docs/performance.md, "Figures once kept in the code").
        """
        self.scope = scope
        # No layer (see channel_layer_alias): what Channels' own __call__ sets
        # for an alias that names none, which its stubs do not foresee.
        self.channel_layer = None  # type: ignore[assignment]
        self.base_send = send
        metrics.SOCKETS_OPEN.inc()
        try:
            while True:
                # An ASGI event is a dict, as Channels' own loop hands it to dispatch.
                await self.dispatch(await receive())  # type: ignore[arg-type]
        except StopConsumer:
            pass
        finally:
            metrics.SOCKETS_OPEN.dec()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' ``AsyncConsumer.dispatch`` without its thread hop.

        Channels 4.2+ runs ``close_old_connections`` on its shared sync thread
        before every handler, so every frame a client sends (each ``read``)
        would cost a trip to that thread. This consumer never uses the
        database on that thread: its calls run on Kaiwa's pools
        (``kaiwa.chat.realtime.executors``), which close old connections themselves.
        Raises ValueError for a message type with no handler, as Channels does.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        """Channels' handler without its group cleanup (this consumer joins
        no group) and thread hop (see ``dispatch``)."""
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

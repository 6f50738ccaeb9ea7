"""The ASGI lifespan of a Kaiwa process: what it does when the server stops.

``kaiwa serve`` runs uvicorn with the lifespan protocol on. At shutdown,
after uvicorn has closed the sockets (1012) and waited for their consumers,
the process writes the read positions still pending (kaiwa.chat.realtime.read_positions) and
the last presence entries of its users (kaiwa.chat.realtime.presence), and closes its
fan-out hub (its channel-layer reader and watchers), so nothing
accepted is lost and no task is left running.
"""

import logging
from typing import Any

from kaiwa import metrics
from kaiwa.chat.realtime import loops

logger = logging.getLogger(__name__)


async def process_shutdown() -> None:
    """Flush this loop's pending read positions and presence entries, then
    close its hub (those that exist)."""
    positions = loops.existing("read_positions")
    if positions is not None:
        await positions.flush()
    presence = loops.existing("presence")
    if presence is not None:
        await presence.shutdown()
    hub = loops.existing("hub")
    if hub is not None:
        await hub.close()
    metrics.process_exit()


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI app for ``scope["type"] == "lifespan"`` (the ASGI lifespan spec):
    nothing to do at startup; ``process_shutdown`` at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await process_shutdown()
            except Exception as exc:  # report it to the server rather than hang
                logger.exception("shutdown failed")
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return

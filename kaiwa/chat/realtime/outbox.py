"""Each socket's bounded outbound buffer (``Outbox``): the last step of the
fan-out, one in-place write per frame, no task switch per recipient."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class OutboxOverflow(Exception):
    """The socket's outbound buffer is full: the client is too slow (close 4408)."""


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
    """Drive ``coro``, which suspended on ``yielded``, to its end as an
    asyncio Task would (Task.__step), through public calls only: wait for
    the future it yielded, then resume it with ``send``. Python 3.12's
    ``asyncio.eager_task_factory`` does the same for a whole task; on 3.12
    ``Outbox._write`` may become ``eager_start=True`` tasks."""
    while True:
        if isinstance(yielded, asyncio.Future):
            await asyncio.wait({yielded})
        else:  # a bare yield, as in asyncio.sleep(0)
            await asyncio.sleep(0)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class Outbox:
    """A socket's writer: writes each frame at once, queues while a write waits.

    ``send`` is the socket's ASGI send callable. A write normally completes
    without suspending (the transport is writable), so ``put`` runs it in the
    caller: no task and no task switch per recipient. Only when the transport
    pushes back (the client reads slowly) does a task take over; frames put
    meanwhile wait in a queue bounded by ``limit_messages`` (frames) and
    ``limit_bytes`` (characters, an upper bound on what is held), beyond which
    ``put`` raises OutboxOverflow.
    """

    __slots__ = ("busy", "frames", "limit_bytes", "limit_messages", "send", "size")

    def __init__(
        self, send: Callable[[dict[str, Any]], Any], limit_messages: int, limit_bytes: int
    ) -> None:
        self.send = send
        self.frames: deque[str] = deque()
        self.size = 0
        self.limit_messages = limit_messages
        self.limit_bytes = limit_bytes
        self.busy: asyncio.Task[None] | None = None

    def put(self, frame: str) -> None:
        """Write ``frame`` now, or queue it behind a pending write."""
        if self.busy is None:
            self._write(frame)
            return
        if len(self.frames) >= self.limit_messages or self.size + len(frame) > self.limit_bytes:
            raise OutboxOverflow
        self.frames.append(frame)
        self.size += len(frame)

    def _write(self, frame: str) -> None:
        coro = self.send({"type": "websocket.send", "text": frame})
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 (the socket is gone; its disconnect event follows)
            return
        self.busy = asyncio.get_running_loop().create_task(self._drain(coro, yielded))

    async def _drain(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        try:
            await _finish(coro, yielded)
            while self.frames:
                frame = self.frames.popleft()
                self.size -= len(frame)
                await self.send({"type": "websocket.send", "text": frame})
        except Exception:
            logger.debug("socket write failed", exc_info=True)
        finally:
            self.busy = None

    def close(self) -> None:
        """Drop queued frames and stop a pending write."""
        self.frames.clear()
        self.size = 0
        if self.busy is not None:
            self.busy.cancel()

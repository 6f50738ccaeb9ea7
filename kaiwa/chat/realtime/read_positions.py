"""Read positions from sockets, merged in memory and written in batches.

A ``read`` frame (PROTOCOL.md section 2) moves the user's read position in a
room. Writing each one in its own transaction made a room of 500 readers cost
500 transactions per message. Instead, each process keeps the highest
position per (room, user) in memory and writes every position that moved in
one statement (``services.membership_read_batch``) at most every
KAIWA_READ_FLUSH_SECONDS, as Zulip merges read flags before writing them.
The user's other sockets are told at once (the consumer publishes the
``read`` frame as it notes the position), so only the stored copy lags.

A position never moves back, in memory or in the database. A process killed
with SIGKILL loses at most the last KAIWA_READ_FLUSH_SECONDS of positions
(``docs/reliability.md``); a socket that closes, including on SIGTERM,
flushes what is pending before its close completes.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from kaiwa.chat import services
from kaiwa.chat.realtime import executors, loops

logger = logging.getLogger(__name__)


class ReadPositions:
    """The pending read positions of one process (one event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[tuple[int, int], int] = {}  # (room id, user id) -> seq
        self.lock = asyncio.Lock()  # one write at a time
        self.task: asyncio.Task[None] | None = None

    def note(self, room_id: int, user_id: int, seq: int) -> None:
        """Remember that ``user_id`` has read ``room_id`` up to ``seq``; stored
        within KAIWA_READ_FLUSH_SECONDS (seconds)."""
        key = (room_id, user_id)
        if seq > self.pending.get(key, -1):
            self.pending[key] = seq
        if self.task is None:
            self.task = self.loop.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(settings.KAIWA_READ_FLUSH_SECONDS)
            await self.flush()
        finally:
            self.task = None
            if self.pending and not self.loop.is_closed():  # a failed write, or noted during it
                self.task = self.loop.create_task(self._flush_later())

    async def flush(self) -> None:
        """Write every pending position now (one statement per 5,000).

        On a database error the positions are kept for the next attempt and
        the error is logged, not raised.
        """
        async with self.lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, {}
            try:
                await executors.run_write(services.membership_read_batch, positions=batch)
            except Exception:
                logger.exception("storing %d read positions failed; retrying", len(batch))
                for key, seq in batch.items():
                    if seq > self.pending.get(key, -1):
                        self.pending[key] = seq


def get_read_positions() -> ReadPositions:
    """The read positions of the running event loop, created on first use (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("read_positions", ReadPositions)

"""Group admission of WebSocket joins (the read-side twin of ``writer``).

A join must authenticate its handshake and look up its room and membership
(``selectors.room_admit_batch``). After a deploy every client reconnects at
once; one database call and two queries per join made the joins queue for
seconds. The ``Admitter`` of a process runs one call at a time on the read
pool (``kaiwa.chat.realtime.executors.run_read``), and every handshake that arrives
meanwhile goes into the next one: a storm of N joins costs a few calls of
two statements each (one for all tokens, one for all rooms), not 2N queries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.contrib.auth.models import User

from kaiwa.chat import selectors
from kaiwa.chat.models import Room
from kaiwa.chat.realtime import executors, loops


class Admitter:
    """Queues handshakes to admit and checks them in batches, one call at a
    time (``loops.Batcher``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.batcher = loops.Batcher(loop, self._check, selectors.ADMIT_BATCH_MAX)

    async def admit(self, admission: selectors.Admission) -> tuple[User | None, Room | None]:
        """Authenticate ``admission`` and check its room (its name already
        checked), in a batch (``selectors.room_admit_batch``): returns
        ``(user, room)``; raises its ChatError, or the database error of the
        batch."""
        result: tuple[User | None, Room | None] = await self.batcher.ask(admission)
        return result

    @staticmethod
    async def _check(admissions: list[selectors.Admission]) -> list[Any]:
        return await executors.run_read(selectors.room_admit_batch, admissions=admissions)


def get_admitter() -> Admitter:
    """The admitter of the running event loop, created on first use (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("admitter", Admitter)

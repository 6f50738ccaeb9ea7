"""Group admission of WebSocket joins (the read-side twin of ``writer``).

A join must authenticate its handshake and look up its room and membership
(``services.room_admit_batch``). After a deploy every client reconnects at
once; one database call and two queries per join made the joins queue for
seconds. The ``Admitter`` of a process runs one call at a time on the read
pool (``kaiwa.chat.db.run_read``), and every handshake that arrives
meanwhile goes into the next one: a storm of N joins costs a few calls of
two statements each (one for all tokens, one for all rooms), not 2N queries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.contrib.auth.models import User

from . import db, loops, services
from .models import Room


class Admitter:
    """Queues handshakes to admit and checks them in batches, one call at a
    time (``loops.Batcher``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.batcher = loops.Batcher(loop, self._check, services.ADMIT_BATCH_MAX)

    async def admit(self, admission: services.Admission) -> tuple[User | None, Room | None]:
        """Authenticate ``admission`` and check its room (its name already
        checked), in a batch (``services.room_admit_batch``): returns
        ``(user, room)``; raises its ChatError, or the database error of the
        batch."""
        result: tuple[User | None, Room | None] = await self.batcher.ask(admission)
        return result

    @staticmethod
    async def _check(admissions: list[services.Admission]) -> list[Any]:
        return await db.run_read(services.room_admit_batch, admissions=admissions)


def get_admitter() -> Admitter:
    """The admitter of the running event loop, created on first use (kaiwa.chat.loops)."""
    return loops.loop_local("admitter", Admitter)

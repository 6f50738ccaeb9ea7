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
from .loops import settle
from .models import Room


class Admitter:
    """Queues handshakes to admit and checks them in batches, one call at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[tuple[services.Admission, asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def admit(self, admission: services.Admission) -> tuple[User | None, Room | None]:
        """Authenticate ``admission`` and check its room (its name already
        checked), in a batch (``services.room_admit_batch``): returns
        ``(user, room)``; raises its ChatError, or the database error of the
        batch."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.queue.append((admission, future))
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self.queue:
                size = services.ADMIT_BATCH_MAX
                batch, self.queue = self.queue[:size], self.queue[size:]
                await self._check(batch)
        finally:
            self.task = None

    async def _check(self, batch: list[tuple[services.Admission, asyncio.Future[Any]]]) -> None:
        results: list[Any]
        try:
            results = await db.run_read(services.room_admit_batch, admissions=[a for a, _ in batch])
        except Exception as exc:  # noqa: BLE001 (raised to every join of the batch by settle)
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            settle(future, result)  # a ChatError is raised to that join only


def get_admitter() -> Admitter:
    """The admitter of the running event loop, created on first use (kaiwa.chat.loops)."""
    return loops.loop_local("admitter", Admitter)

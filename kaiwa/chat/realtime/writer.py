"""Group commit of the sockets' writes: posted messages and new memberships.

Every socket of a process hands its posts to one ``MessageWriter``; while one
transaction runs on the write thread (``kaiwa.chat.realtime.executors.run_write``), new posts
queue, and the next transaction stores all of them at once
(``services.message_create_batch``). A burst of N posts thus costs about one
transaction, not N thread hops and N commits, with the same guarantees:
gapless ``seq`` in post order per room, ``client_id`` idempotency, broadcast
only after commit.

Joins that create a public room or make a user a member queue the same way
and are inserted together (``services.room_create_batch``,
``services.membership_create_batch``; all joiners of one new room share its
creation, made by the first of them within his room budgets): a connect
storm of new members in new rooms costs a few transactions, and on SQLite no
two threads ever compete for the one write lock (whose busy handler sleeps
up to 100 ms per retry).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from django.db import DataError, IntegrityError

from kaiwa.chat import services
from kaiwa.chat.models import Message, Room
from kaiwa.chat.realtime import executors, loops
from kaiwa.chat.realtime.loops import settle

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # posts per transaction


class MessageWriter:
    """Queues posts and stores them in batches, one transaction at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[tuple[services.Post, asyncio.Future[Any]]] = []
        self.members: list[tuple[tuple[int, int], asyncio.Future[Any]]] = []
        self.rooms: list[tuple[services.RoomRequest, asyncio.Future[Any]]] = []
        self.events: list[tuple[services.EventRequest, asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def create_room(self, slug: str, creator: services.Creator) -> Room:
        """The public room ``slug``, created by ``creator`` unless it exists;
        every caller asking for the same slug meanwhile shares one creation.
        Returns the Room (it may be private if created elsewhere meanwhile:
        check). Raises the ChatError refusing this creator the creation
        (``services.room_create_batch``: 4403, 4429) or what storing raised
        (a database error)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.rooms.append((services.RoomRequest(slug=slug, creator=creator), future))
        self._wake()
        return await future

    async def add_member(self, room_id: int, user_id: int) -> None:
        """Make user ``user_id`` a member of room ``room_id``; returns once
        committed. Raises what storing raised (a database error)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.members.append(((room_id, user_id), future))
        self._wake()
        await future

    def _wake(self) -> None:
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    async def room_event(self, request: services.EventRequest) -> Any:
        """Store an edit, deletion or reaction (``request``) with the other
        room events of the moment in one transaction
        (``services.room_event_batch``); returns what its service returned.
        Raises its ChatError, or what storing raised."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.events.append((request, future))
        self._wake()
        return await future

    async def submit(self, post: services.Post) -> tuple[Message, bool]:
        """Store ``post``; returns ``(message, created)`` once committed.

        Raises what storing raised (a database error: the post is not stored).
        """
        future: asyncio.Future[Any] = self.loop.create_future()
        self.queue.append((post, future))
        self._wake()
        return await future

    async def _run(self) -> None:
        try:
            while self.queue or self.members or self.rooms or self.events:
                if self.rooms:
                    rooms, self.rooms = self.rooms[:MAX_BATCH], self.rooms[MAX_BATCH:]
                    await self._store_each(services.room_create_batch, rooms)
                if self.members:
                    joins, self.members = self.members[:MAX_BATCH], self.members[MAX_BATCH:]
                    await self._store_members(joins)
                if self.queue:
                    batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                    await self._store(batch)
                if self.events:
                    events, self.events = self.events[:MAX_BATCH], self.events[MAX_BATCH:]
                    await self._store_each(services.room_event_batch, events)
        finally:
            self.task = None

    async def _store_each(self, service: Any, items: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        """Run ``service(requests=[...])`` (room creations, room events) on the
        write thread; each waiter gets its own result, or its ChatError (a
        creator refused, an event refused), or the error of the whole batch."""
        results: list[Any]
        try:
            results = await executors.run_write(service, requests=[request for request, _ in items])
        except Exception as exc:  # noqa: BLE001 (raised to every waiter by settle)
            results = [exc] * len(items)
        for (_, future), result in zip(items, results, strict=True):
            settle(future, result)

    async def _store_members(
        self, joins: list[tuple[tuple[int, int], asyncio.Future[Any]]]
    ) -> None:
        outcome: Exception | None = None
        try:
            await executors.run_write(
                services.membership_create_batch, pairs=[pair for pair, _ in joins]
            )
        except Exception as exc:  # noqa: BLE001 (raised to every waiter by settle)
            outcome = exc
        for _, future in joins:
            settle(future, outcome)

    async def _store(self, batch: list[tuple[services.Post, asyncio.Future[Any]]]) -> None:
        store = partial(executors.run_write, services.message_create_batch)
        try:
            results = await store(posts=[post for post, _ in batch])
        except (IntegrityError, DataError):
            # Another process stored the same client_id meanwhile, or one post
            # holds what the database refuses: one by one, so that only the
            # post concerned sees the error.
            for item in batch:
                await self._store_one(store, item)
            return
        except Exception as exc:  # noqa: BLE001 (raised to every waiter by settle)
            for _, future in batch:
                settle(future, exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            settle(future, result)  # a ChatError: refused, the author may not post

    async def _store_one(self, store: Any, item: tuple[services.Post, asyncio.Future[Any]]) -> None:
        post, future = item
        try:
            (result,) = await store(posts=[post])
        except Exception as exc:  # noqa: BLE001 (raised to the waiter by settle)
            result = exc
        settle(future, result)


def get_writer() -> MessageWriter:
    """The writer of the running event loop, created on first use (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("writer", MessageWriter)

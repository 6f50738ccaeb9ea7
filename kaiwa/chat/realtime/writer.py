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

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # posts per transaction


class MessageWriter:
    """Stores posts, room events, new rooms and memberships in batches on the
    write thread: one ``loops.Batcher`` per kind, each running one
    transaction at a time with everything of its kind that arrived meanwhile
    (at most MAX_BATCH). The write pool has one thread, so the batches of all
    kinds run one after the other."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.posts = loops.Batcher(loop, self._store, MAX_BATCH)
        self.rooms = loops.Batcher(loop, self._create_rooms, MAX_BATCH)
        self.members = loops.Batcher(loop, self._add_members, MAX_BATCH)
        self.events = loops.Batcher(loop, self._store_events, MAX_BATCH)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """A batch task still running, or None when the writer is idle."""
        batchers = (self.posts, self.rooms, self.members, self.events)
        return next((b.task for b in batchers if b.task is not None), None)

    async def create_room(self, slug: str, creator: services.Creator) -> Room:
        """The public room ``slug``, created by ``creator`` unless it exists;
        every caller asking for the same slug meanwhile shares one creation.
        Returns the Room (it may be private if created elsewhere meanwhile:
        check). Raises the ChatError refusing this creator the creation
        (``services.room_create_batch``: 4403, 4429) or what storing raised
        (a database error)."""
        room: Room = await self.rooms.ask(services.RoomRequest(slug=slug, creator=creator))
        return room

    async def add_member(self, room_id: int, user_id: int) -> None:
        """Make user ``user_id`` a member of room ``room_id``; returns once
        committed. Raises what storing raised (a database error)."""
        await self.members.ask((room_id, user_id))

    async def room_event(self, request: services.EventRequest) -> Any:
        """Store an edit, deletion or reaction (``request``) with the other
        room events of the moment in one transaction
        (``services.room_event_batch``); returns what its service returned.
        Raises its ChatError, or what storing raised."""
        return await self.events.ask(request)

    async def submit(self, post: services.Post) -> tuple[Message, bool]:
        """Store ``post``; returns ``(message, created)`` once committed.

        Raises what storing raised (a database error: the post is not stored).
        """
        result: tuple[Message, bool] = await self.posts.ask(post)
        return result

    # Each batch call: the service looked up when it runs (tests replace it).

    async def _create_rooms(self, requests: list[services.RoomRequest]) -> list[Any]:
        return await executors.run_write(services.room_create_batch, requests=requests)

    async def _store_events(self, requests: list[services.EventRequest]) -> list[Any]:
        return await executors.run_write(services.room_event_batch, requests=requests)

    async def _add_members(self, pairs: list[tuple[int, int]]) -> list[None]:
        await executors.run_write(services.membership_create_batch, pairs=pairs)
        return [None] * len(pairs)

    async def _store(self, posts: list[services.Post]) -> list[Any]:
        """Each post's ``(message, created)``, or its ChatError (the author may
        not post). A database error of the batch is raised to every post."""
        store = partial(executors.run_write, services.message_create_batch)
        try:
            return list(await store(posts=posts))
        except (IntegrityError, DataError):
            # Another process stored the same client_id meanwhile, or one post
            # holds what the database refuses: one by one, so that only the
            # post concerned sees the error.
            return [await self._store_one(store, post) for post in posts]

    async def _store_one(self, store: Any, post: services.Post) -> Any:
        try:
            (result,) = await store(posts=[post])
        except Exception as exc:  # noqa: BLE001 (raised to the waiter by the Batcher)
            return exc
        return result


def get_writer() -> MessageWriter:
    """The writer of the running event loop, created on first use (kaiwa.chat.realtime.loops)."""
    return loops.loop_local("writer", MessageWriter)

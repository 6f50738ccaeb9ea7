"""One home for per-event-loop state: the hub, the writer, the admitter, the
read positions and the flood limits of a process each live here, one per
event loop, as channels_redis keys its layers by loop.

A ``kaiwa serve`` process runs one event loop, so each is in effect one per
process; tests run a new loop per test and get fresh ones, and
``clear_for_testing()`` (after Zulip's ``clear_client_event_queues_for_testing``)
forgets them all. ``spawn`` keeps fire-and-forget tasks referenced until they
finish, as the asyncio documentation asks of ``create_task`` callers ("save a
reference to the result of this function, to avoid a task disappearing
mid-execution").
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# loop -> {name: object}; a closed loop that is collected takes its state along.
_state: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
# loop -> the tasks ``spawn`` started there and that are not done yet.
_tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Task[Any]]] = (
    weakref.WeakKeyDictionary()
)


def loop_local(name: str, factory: Callable[[asyncio.AbstractEventLoop], T]) -> T:
    """The object ``name`` of the running event loop, made by ``factory(loop)``
    on first use. Raises RuntimeError outside a running loop."""
    loop = asyncio.get_running_loop()
    state = _state.get(loop)
    if state is None:
        state = _state[loop] = {}
    found = state.get(name)
    if found is None:
        found = state[name] = factory(loop)
    return found


def existing(name: str) -> Any | None:
    """The object ``name`` of the running event loop if it was made, else None."""
    state = _state.get(asyncio.get_running_loop())
    return state.get(name) if state is not None else None


def serving(name: str) -> Any | None:
    """From any thread: the object ``name`` of a loop that is running now
    (the server's), or None when there is none (a management command, a
    Celery worker, a test's synchronous client)."""
    for loop, state in list(_state.items()):
        if name in state and loop.is_running() and not loop.is_closed():
            return state[name]
    return None


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` as a task of the running loop, referenced until it is done;
    returns the task."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(coro)
    tasks = _tasks.get(loop)
    if tasks is None:
        tasks = _tasks[loop] = set()
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


def clear_for_testing() -> None:
    """Forget every loop's objects and tasks (tests start each from nothing)."""
    _state.clear()
    _tasks.clear()


def settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Give ``future`` its outcome unless it is done already (its waiter
    cancelled): an exception (a refused post, a database error) is raised to
    the waiter, anything else returned."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Batcher:
    """Requests of the moment answered together: one ``call`` runs at a time,
    and every request that arrives meanwhile goes into the next one (at most
    ``batch_max`` each), as the writer does with posts. ``call(requests)``
    returns one outcome per request, in order; an exception outcome is
    raised to that request's waiter only, and an exception of the call
    itself to every waiter of its batch."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        call: Callable[[list[Any]], Awaitable[list[Any]]],
        batch_max: int,
    ) -> None:
        self.loop = loop
        self.call = call
        self.batch_max = batch_max
        self.queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def ask(self, request: Any) -> Any:
        """The outcome of ``request`` in the next batch; raises its error."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.queue.append((request, future))
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self.queue:
                batch = self.queue[: self.batch_max]
                self.queue = self.queue[self.batch_max :]
                outcomes: list[Any]
                try:
                    outcomes = await self.call([request for request, _ in batch])
                except Exception as exc:  # noqa: BLE001 (raised to every waiter of the batch)
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    settle(future, outcome)
        finally:
            self.task = None

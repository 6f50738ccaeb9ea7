"""Database calls from the event loop, on two thread pools so that writes never
wait behind reads or joins.

Channels' ``database_sync_to_async`` runs every call of a process on one
shared thread by default: a connect storm's joins and the sockets' ``read``
frames then queue in front of message writes. Kaiwa splits them:

- ``run_write``: one thread for every write of the socket path: posts and
  new memberships (group commit, ``kaiwa.chat.realtime.writer``), new public rooms,
  the batched read positions (``kaiwa.chat.realtime.read_positions``). One thread is enough,
  as each of them batches whatever queued meanwhile, and it is what SQLite
  wants: one writer, never two threads waiting on its write lock.
- ``run_read``: KAIWA_DB_THREADS threads (default 4) for the reads: joins
  (authentication, room and membership), backlogs, gap filling and the seq
  watcher. On SQLite in WAL mode they run beside the writer.

Each thread keeps its own persistent database connection (Django's
connections are per thread; ``CONN_MAX_AGE``), so a process holds at most
KAIWA_DB_THREADS + 1 connections for its sockets, plus Django's own for HTTP
requests. Like Channels' ``database_sync_to_async``, each call closes broken
or expired connections before and after it runs (``close_old_connections``);
unlike it, a call is a bare ``run_in_executor`` with the caller's context,
without asgiref's thread-sensitivity machinery, which cost a tenth of the
event loop's time in a connect storm (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections

from kaiwa import metrics

R = TypeVar("R")


@cache
def _write_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="kaiwa-db-write")


@cache
def _read_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, settings.KAIWA_DB_THREADS), thread_name_prefix="kaiwa-db-read")


def _in_thread(func: Callable[..., R], kwargs: dict[str, Any]) -> R:
    close_old_connections()
    started = time.perf_counter()
    try:
        return func(**kwargs)
    finally:
        metrics.DATABASE_SECONDS.labels(getattr(func, "__name__", "other")).observe(
            time.perf_counter() - started
        )
        close_old_connections()


async def _run(executor: ThreadPoolExecutor, func: Callable[..., R], kwargs: dict[str, Any]) -> R:
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, context.run, _in_thread, func, kwargs)


async def run_write(func: Callable[..., R], /, **kwargs: Any) -> R:
    """Run ``func(**kwargs)`` on the write thread; returns its result, raises its error."""
    return await _run(_write_executor(), func, kwargs)


async def run_read(func: Callable[..., R], /, **kwargs: Any) -> R:
    """Run ``func(**kwargs)`` on the read pool; returns its result, raises its error."""
    return await _run(_read_executor(), func, kwargs)

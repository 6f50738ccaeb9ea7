"""Database calls from the event loop, on two thread pools so that writes never
wait behind reads or joins.

Channels' ``database_sync_to_async`` runs every call of a process on one
shared thread by default: a connect storm's joins and the sockets' ``read``
frames then queue in front of message writes. Kaiwa splits them:

- ``run_write``: one thread, used only by the message writer (group commit,
  ``kaiwa.chat.writer``). One thread is enough: the writer runs one
  transaction at a time and batches whatever queued meanwhile.
- ``run_read``: KAIWA_DB_THREADS threads (default 4) for joins, backlogs,
  gap filling, the seq watcher and the batched read positions.

Each thread keeps its own persistent database connection (Django's
connections are per thread; ``CONN_MAX_AGE``), so a process holds at most
KAIWA_DB_THREADS + 1 connections for its sockets, plus Django's own for HTTP
requests. Both pools use Channels' ``DatabaseSyncToAsync``, which closes
broken or expired connections before and after each call.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

from channels.db import DatabaseSyncToAsync
from django.conf import settings

R = TypeVar("R")


@cache
def _write_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="kaiwa-db-write")


@cache
def _read_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, settings.KAIWA_DB_THREADS), thread_name_prefix="kaiwa-db-read")


async def run_write(func: Callable[..., R], /, **kwargs: Any) -> R:
    """Run ``func(**kwargs)`` on the write thread; returns its result, raises its error."""
    call = DatabaseSyncToAsync(func, thread_sensitive=False, executor=_write_executor())
    return await call(**kwargs)


async def run_read(func: Callable[..., R], /, **kwargs: Any) -> R:
    """Run ``func(**kwargs)`` on the read pool; returns its result, raises its error."""
    call = DatabaseSyncToAsync(func, thread_sensitive=False, executor=_read_executor())
    return await call(**kwargs)

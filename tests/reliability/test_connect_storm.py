"""A connect storm: 2,000 clients open their sockets at once (as after a deploy
or a network blip) against one ``kaiwa serve`` on PostgreSQL and Redis. Every
one is admitted and gets ``ready``; none gets a 5xx or a close.

200 users with API tokens hold 10 sockets each over 20 rooms; each client
comes from its own address (``X-Forwarded-For``, trusted from 127.0.0.1), so
the default per-IP connect limit and per-user socket cap stay on.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.kaiwa_process import KaiwaServer, manage, services_env
from tests.reliability.faults import rss_kib
from tests.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis, pytest.mark.faults]

CLIENTS = 2000
USERS = 200
ROOMS = 20
WAIT_SECONDS = 120  # for a handshake, then for its ready, in the storm


def raise_open_files(needed: int) -> None:
    """Raise this process's (and its children's) open-file limit to ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"open-file limit {hard} < {needed} (ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.fixture(scope="module")
def storm(postgres_url, redis_url, tmp_path_factory) -> Iterator[tuple[KaiwaServer, list[str]]]:
    raise_open_files(3 * CLIENTS + 1000)
    tmp = tmp_path_factory.mktemp("storm")
    env = services_env(tmp, postgres_url, redis_url)
    manage(env, "migrate", "--noinput", "-v", "0")
    code = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from kaiwa.accounts.services import token_create_batch\n"
        f"names = ['storm{{}}'.format(i) for i in range({USERS})]\n"
        "have = set(User.objects.filter(username__in=names).values_list('username', flat=True))\n"
        "User.objects.bulk_create([User(username=n, password='!') for n in names if n not in have])\n"
        "users = User.objects.filter(username__in=names)\n"
        "print(json.dumps(list(token_create_batch(users=users).values())))\n"
    )
    tokens = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
    server = KaiwaServer(env, tmp / "serve.log").start()
    yield server, tokens
    server.stop()


async def join(server: KaiwaServer, i: int, token: str, room: str) -> tuple[str, Client | None]:
    """Open client ``i``: ("ready", client) or (what went wrong, None)."""
    address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"  # never contacted
    try:
        client = await Client.open(
            server, room, token=token, headers={"X-Forwarded-For": address}, timeout=WAIT_SECONDS
        )
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}", None
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__, None
    try:
        await client.until_ready(timeout=WAIT_SECONDS)
    except ConnectionClosed as closed:
        return f"close {closed.rcvd.code if closed.rcvd else None}", None
    except TimeoutError:
        return "no ready", None
    return "ready", client


async def test_2000_clients_connecting_at_once_all_get_ready(storm):
    server, tokens = storm
    assert server.proc is not None
    prefix = f"storm-{uuid.uuid4().hex[:8]}"
    before = rss_kib(server.proc.pid)
    started = time.monotonic()
    ready_at: list[float] = []

    async def one(i: int) -> tuple[str, Client | None]:
        outcome = await join(server, i, tokens[i % USERS], f"{prefix}-{i % ROOMS}")
        ready_at.append(time.monotonic() - started)
        return outcome

    results = await asyncio.gather(*(one(i) for i in range(CLIENTS)))
    elapsed = time.monotonic() - started
    outcomes = Counter(outcome for outcome, _ in results)
    sockets = [client for _, client in results if client is not None]
    after = rss_kib(server.proc.pid)
    try:
        # Every socket works: one message per room reaches its 100 members.
        for r in range(ROOMS):
            await sockets[r].say("after the storm")
        delivered = 0
        for client in sockets:
            frame = await client.recv(timeout=60)
            delivered += frame["type"] == "message" and frame["message"] == "after the storm"
    finally:
        await asyncio.gather(*(client.close() for client in sockets), return_exceptions=True)
    ready_at.sort()
    log = server.log_path.read_text(errors="replace")
    print(
        f"\nFIGURES connect-storm: {CLIENTS} clients ({USERS} users x {CLIENTS // USERS}, "
        f"{ROOMS} rooms) at once on one process (PostgreSQL + Redis): outcomes "
        f"{dict(outcomes)}; all ready after {elapsed:.1f} s (median client "
        f"{ready_at[len(ready_at) // 2]:.1f} s); then {delivered} of {len(sockets)} sockets "
        f"received a message; RSS {before['VmRSS'] // 1024} -> {after['VmRSS'] // 1024} MiB; "
        f"server log: {log.count('Traceback')} tracebacks, {log.count(' 500')} HTTP 500"
    )
    assert outcomes == {"ready": CLIENTS}
    assert delivered == CLIENTS
    assert "Traceback" not in log

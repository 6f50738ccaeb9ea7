"""Crash safety by fault injection (PROTOCOL.md section 4): two ``kaiwa serve``
processes on PostgreSQL and Redis; eight chatters (four homed on each process)
post 40 messages each with ``client_id``s while a fault strikes a third of the
way through:

- one process is killed with SIGKILL;
- one process gets SIGTERM (graceful shutdown: close 1012, then resume);
- Redis (a ``redis-server`` of the test's own) is killed and restarted;
- PostgreSQL becomes unreachable for 3 seconds (a TCP proxy is cut).

The chatters (``chatters.Chatter``) reconnect with ``after=`` and re-send what
was not acknowledged. At the end every chatter holds the same gapless stream
1..320, the database holds each ``client_id`` exactly once and nothing else,
and the room's ``last_seq`` equals the number of stored messages (no seq was
taken by a half-stored message).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.kaiwa_process import KaiwaServer, base_env, create_users, manage, services_env
from tests.reliability.chatters import Outcome, Progress, check_outcome, make_chatters
from tests.reliability.faults import RedisServer, TcpProxy, wait_for_port
from tests.wsclient import Rest, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis, pytest.mark.faults]

CHATTERS = tuple(f"chatter{i}" for i in range(8))
MESSAGES_EACH = 40
FAULT_AT = 1 / 3  # of all messages acknowledged
OUTAGE_SECONDS = 3.0


def issue_tokens(env: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """API tokens of users ``names`` (created if needed), straight from the database."""
    create_users(env, *names)
    code = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from kaiwa.accounts.services import token_create\n"
        f"names = {list(names)!r}\n"
        "print(json.dumps({n: token_create(user=User.objects.get(username=n))[1]"
        " for n in names}))\n"
    )
    return json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])


def cluster_env(tmp: Path, database_url: str, redis_url: str) -> dict[str, str]:
    # Flood limits off: these runs are about faults, not floods (see test_floods).
    return services_env(
        tmp,
        database_url,
        redis_url,
        KAIWA_RATE_MESSAGES_PER_SECOND="0",
        KAIWA_CONNECT_RATE_PER_IP="0",
    )


def start_pair(env: dict[str, str], tmp: Path) -> tuple[KaiwaServer, KaiwaServer]:
    a = KaiwaServer(env, tmp / "serve-a.log").start()
    b = KaiwaServer(env, tmp / "serve-b.log").start()
    return a, b


@pytest.fixture(scope="module")
def tokens(postgres_url, tmp_path_factory) -> dict[str, str]:
    env = base_env(DATABASE_URL=postgres_url, KAIWA_DATA_DIR=str(tmp_path_factory.mktemp("users")))
    return issue_tokens(env, CHATTERS)


@pytest.fixture
def servers() -> Iterator[list[KaiwaServer]]:
    """Every server the test starts, stopped at the end."""
    started: list[KaiwaServer] = []
    yield started
    for server in started:
        server.stop(signal.SIGKILL)


async def run_with_fault(
    name: str,
    a: KaiwaServer,
    b: KaiwaServer,
    tokens: dict[str, str],
    fault: Callable[[], Awaitable[None]],
    check_on: KaiwaServer,
) -> tuple[Outcome, list]:
    """Run the chatters on ``a`` and ``b``, strike with ``fault`` a third of the
    way through, wait for everyone to finish, check and print the outcome."""
    room = room_name(name)
    progress = Progress()
    chatters = make_chatters(
        list(tokens.items()), [[a, b], [b, a]], room, MESSAGES_EACH, name, progress
    )
    total = len(chatters) * MESSAGES_EACH
    tasks = [asyncio.create_task(chatter.run(total)) for chatter in chatters]
    started = time.monotonic()
    try:
        await asyncio.wait_for(progress.reach(int(total * FAULT_AT)), 60)
        fault_at = progress.acked
        await fault()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for task in tasks:
            task.cancel()
    elapsed = time.monotonic() - started
    outcome = await check_outcome(check_on, tokens[chatters[0].name], chatters)
    async with Rest(check_on, tokens[chatters[0].name]) as rest:
        (found,) = [r for r in await rest.rooms() if r["slug"] == room]
    assert found["last_seq"] == outcome.stored == total  # no seq without its message
    # Informational: how often a feed filled a gap from the database (fanout's log).
    fills = sum(
        server.log_path.read_text(errors="replace").count("from the database") for server in (a, b)
    )
    print(
        f"\n{outcome.line(name)}, fault after {fault_at} acknowledged, run {elapsed:.1f} s, "
        f"gap fills logged={fills}"
    )
    return outcome, chatters


async def test_sigkill_of_one_process(postgres_url, redis_url, tokens, servers, tmp_path):
    a, b = start_pair(cluster_env(tmp_path, postgres_url, redis_url), tmp_path)
    servers += [a, b]

    async def kill_a() -> None:
        assert a.proc is not None
        a.proc.kill()

    _, chatters = await run_with_fault("crash-sigkill", a, b, tokens, kill_a, check_on=b)
    assert a.proc is not None
    assert a.proc.wait(10) == -signal.SIGKILL
    # The chatters homed on A lost their connection without a close frame and
    # finished on B.
    for chatter in chatters[0::2]:
        assert chatter.close_codes[None] >= 1, chatter.close_codes
        assert chatter.servers_used[b.port] >= 1


async def test_sigterm_closes_with_1012_and_clients_resume_elsewhere(
    postgres_url, redis_url, tokens, servers, tmp_path
):
    a, b = start_pair(cluster_env(tmp_path, postgres_url, redis_url), tmp_path)
    servers += [a, b]
    exit_code: list[int | None] = []

    async def terminate_a() -> None:
        exit_code.append(await asyncio.to_thread(a.stop, signal.SIGTERM))

    _, chatters = await run_with_fault("shutdown-sigterm", a, b, tokens, terminate_a, check_on=b)
    # uvicorn re-raises the signal it handled: a graceful exit, not a kill.
    assert exit_code[0] in (0, -signal.SIGTERM)
    for chatter in chatters[0::2]:
        assert chatter.close_codes[1012] == 1, chatter.close_codes
    # Stopped accepting: the port refuses connections.
    wait_for_port(a.port, up=False, timeout=1)


async def test_redis_restart(postgres_url, tokens, servers, tmp_path):
    redis = RedisServer(tmp_path / "redis.log").start()
    try:
        a, b = start_pair(cluster_env(tmp_path, postgres_url, redis.url), tmp_path)
        servers += [a, b]

        async def restart_redis() -> None:
            redis.kill()
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(redis.start)

        await run_with_fault("redis-restart", a, b, tokens, restart_redis, check_on=a)
    finally:
        redis.kill()


async def test_database_unreachable(postgres_url, redis_url, tokens, servers, tmp_path):
    url = urlsplit(postgres_url)
    proxy = TcpProxy(url.port or 5432).start()
    try:
        via_proxy = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
        a, b = start_pair(cluster_env(tmp_path, via_proxy, redis_url), tmp_path)
        servers += [a, b]

        async def cut_database() -> None:
            proxy.cut()
            await asyncio.sleep(OUTAGE_SECONDS)
            proxy.restore()

        outcome, _ = await run_with_fault(
            "database-unreachable", a, b, tokens, cut_database, check_on=a
        )
        # Senders were told; nothing was half-stored (checked by run_with_fault);
        # service resumed by itself (everyone finished).
        assert outcome.unavailable > 0
    finally:
        proxy.stop()

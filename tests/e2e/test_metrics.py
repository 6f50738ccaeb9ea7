"""/metrics of two ``kaiwa serve`` processes on PostgreSQL and Redis sharing
PROMETHEUS_MULTIPROC_DIR: either process answers for both, and the sockets
of a process killed with SIGKILL stop counting at the next scrape."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kaiwa_process import KaiwaServer, create_users, services_env
from tests.wsclient import Client, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]


@pytest.fixture(scope="module")
def cluster(postgres_url, redis_url, tmp_path_factory) -> Iterator[list[KaiwaServer]]:
    tmp = tmp_path_factory.mktemp("metrics")
    (tmp / "prometheus").mkdir()
    env = services_env(
        tmp, postgres_url, redis_url, PROMETHEUS_MULTIPROC_DIR=str(tmp / "prometheus")
    )
    create_users(env, "alice", "bob")
    servers = [KaiwaServer(env, tmp / f"serve-{name}.log").start() for name in ("a", "b")]
    yield servers
    for server in servers:
        server.stop()


def scrape(server: KaiwaServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{server.http}/metrics", trust_env=False)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_either_process_answers_for_both(cluster):
    a, b = cluster
    room = room_name()
    before = scrape(a)
    alice = await Client.join(a, room, token=a.token("alice"))
    bob = await Client.join(b, room, token=b.token("bob"))
    await alice.say("from a", client_id="m1")
    assert (await bob.expect("message"))["message"] == "from a"
    await bob.say("from b", client_id="m2")
    assert [m["message"] for m in await alice.messages(2)] == ["from a", "from b"]
    for server in (a, b):  # the same totals, whichever process is asked
        samples = scrape(server)
        assert value(samples, "kaiwa_sockets_open") == value(before, "kaiwa_sockets_open") + 2
        stored = value(samples, "kaiwa_messages_stored_total")
        assert stored - value(before, "kaiwa_messages_stored_total") == 2
        joins = value(samples, "kaiwa_joins_total", outcome="ready")
        assert joins - value(before, "kaiwa_joins_total", outcome="ready") == 2
        published = value(
            samples, "kaiwa_channel_layer_publish_duration_seconds_count", outcome="ok"
        )
        assert published > value(
            before, "kaiwa_channel_layer_publish_duration_seconds_count", outcome="ok"
        )
    await alice.close()
    await bob.close()


async def test_a_killed_process_stops_counting_its_sockets(cluster):
    a, b = cluster
    room = room_name()
    before = value(scrape(a), "kaiwa_sockets_open")
    clients = [await Client.join(b, room, token=b.token("bob")) for _ in range(3)]
    assert value(scrape(a), "kaiwa_sockets_open") == before + 3
    b.stop(signal.SIGKILL)
    assert value(scrape(a), "kaiwa_sockets_open") == before
    for client in clients:
        await client.close()

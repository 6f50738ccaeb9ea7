"""/healthz and /readyz of real `kaiwa serve` processes: what a load balancer sees
when the database, Redis or the Celery broker is down."""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.kaiwa_process import KaiwaServer, services_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

DEAD = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def get(server: KaiwaServer, path: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    answer = httpx.get(server.http + path, timeout=10)
    return answer.status_code, answer.json(), time.monotonic() - started


def test_embedded_defaults(kaiwa_server):
    assert get(kaiwa_server, "/healthz")[:2] == (200, {"status": "ok"})
    assert get(kaiwa_server, "/readyz")[:2] == (200, {"Database(alias='default')": "OK"})


def test_postgresql_redis_and_the_broker_all_probed(postgres_url, redis_url, tmp_path):
    server = KaiwaServer(services_env(tmp_path, postgres_url, redis_url), tmp_path / "s.log")
    server.start()
    try:
        status, body, _ = get(server, "/readyz")
        assert status == 200, body
        assert body == {
            "Database(alias='default')": "OK",
            "Redis()": "OK",
            "CeleryBroker()": "OK",
        }
    finally:
        server.stop()


def test_a_dead_redis_is_named_and_answered_fast(postgres_url, tmp_path):
    server = KaiwaServer(services_env(tmp_path, postgres_url, DEAD), tmp_path / "s.log")
    server.start()
    try:
        status, body, took = get(server, "/readyz")
        assert status == 503
        assert body["Database(alias='default')"] == "OK"
        assert body["Redis()"] != "OK"
        assert body["CeleryBroker()"] != "OK"
        assert took < 3.0  # each probe has 1 s, and they run at once
        assert get(server, "/healthz")[0] == 200
    finally:
        server.stop()


def test_a_dropped_database_is_named(redis_url, tmp_path):
    name = f"kaiwa_health_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_URL + "/postgres"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    server = KaiwaServer(
        services_env(tmp_path, f"{POSTGRES_URL}/{name}", redis_url), tmp_path / "s.log"
    )
    try:
        server.start()
        assert get(server, "/readyz")[0] == 200
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE {name} WITH (FORCE)"], check=True)
        status, body, _ = get(server, "/readyz")
        assert status == 503
        assert body["Database(alias='default')"] != "OK"
        assert body["Redis()"] == "OK"
        assert get(server, "/healthz")[0] == 200  # alive, not ready
    finally:
        server.stop()
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])

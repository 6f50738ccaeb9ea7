"""Migrations as a release step (`kaiwa migrate`), and any number of
`kaiwa serve` processes started at once on a fresh PostgreSQL database: one
migrates under an advisory lock, the others wait for it; none crashes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import fresh_postgres_database
from tests.kaiwa_process import KAIWA, KaiwaServer, base_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]


@pytest.fixture
def fresh_database(postgres_url) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (dropped after the test)."""
    with fresh_postgres_database("kaiwa_release") as url:
        yield url


def env_for(database_url: str, tmp_path) -> dict[str, str]:
    return base_env(DATABASE_URL=database_url, KAIWA_DATA_DIR=str(tmp_path / "data"))


def applied(database_url: str) -> list[str]:
    """Rows of django_migrations as "app.name", in id order."""
    out = subprocess.run(
        [
            "psql",
            database_url,
            "-Atc",
            "SELECT app || '.' || name FROM django_migrations ORDER BY id",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def test_three_servers_started_at_once_on_a_fresh_database_all_come_up(fresh_database, tmp_path):
    env = env_for(fresh_database, tmp_path)
    servers = [KaiwaServer(env, tmp_path / f"serve-{i}.log") for i in range(3)]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(60)
        for server in servers:
            assert httpx.get(server.http + "/accounts/login/").status_code == 200
            log = server.log_path.read_text()
            assert "Traceback" not in log, log
        rows = applied(fresh_database)
        assert len(rows) == len(set(rows))  # every migration applied once
        assert "chat.0001_initial" in rows
        waited = [
            s
            for s in servers
            if "waiting for another process's migrations" in s.log_path.read_text()
        ]
        assert waited, "no process waited for the lock: the test did not race"
    finally:
        for server in servers:
            server.stop()


def test_serve_without_migrating_waits_for_the_release_step(fresh_database, tmp_path):
    env = env_for(fresh_database, tmp_path)
    server = KaiwaServer(env, tmp_path / "serve.log").launch("--no-migrate")
    try:
        with pytest.raises(RuntimeError, match="did not start"):
            server.wait_ready(4)  # no schema: it waits, and says so
        # On a loaded machine the process may not have logged yet after 4 s.
        deadline = time.monotonic() + 30
        while "waiting for the database schema" not in server.log_path.read_text():
            assert time.monotonic() < deadline, server.log_path.read_text()
            time.sleep(0.2)
        assert "run `kaiwa migrate`" in server.log_path.read_text()
        done = subprocess.run(
            [KAIWA, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        server.wait_ready(30)
        assert httpx.get(server.http + "/accounts/login/").status_code == 200
        assert "Traceback" not in server.log_path.read_text()
    finally:
        server.stop()


def test_migrate_is_idempotent(fresh_database, tmp_path):
    env = env_for(fresh_database, tmp_path)
    for _ in range(2):
        done = subprocess.run(
            [KAIWA, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    rows = applied(fresh_database)
    assert len(rows) == len(set(rows))

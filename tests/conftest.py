"""Shared fixtures: factories, users, and real Kaiwa processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.kaiwa_process import KaiwaServer, base_env, create_users


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


POSTGRES_URL = os.environ.get("KAIWA_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS_TEST_URL = os.environ.get("KAIWA_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database URL for this test session (dropped after)."""
    if not _reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"kaiwa_test_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_URL + "/postgres"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    yield f"{POSTGRES_URL}/{name}"
    subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "kaiwa_fresh") -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards: for
    tests whose outcome other modules' rows in the shared one could change."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_URL + "/postgres"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    try:
        yield f"{POSTGRES_URL}/{name}"
    finally:
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not _reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return REDIS_TEST_URL


@pytest.fixture
def sqlite_env(tmp_path) -> dict[str, str]:
    """Environment of a Kaiwa on embedded defaults in a fresh data dir, with
    users alice, bob and carol (password ``pw-<name>-123``)."""
    env = base_env(KAIWA_DATA_DIR=str(tmp_path / "data"))
    create_users(env, "alice", "bob", "carol")
    return env


@pytest.fixture
def kaiwa_server(sqlite_env, tmp_path) -> Iterator[KaiwaServer]:
    """One ``kaiwa serve`` process on SQLite and the in-memory channel layer."""
    server = KaiwaServer(sqlite_env, tmp_path / "serve.log").start()
    yield server
    server.stop()


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_channel_layers():
    """Each test gets new channel layers and a new fan-out hub."""
    from channels.layers import channel_layers

    from kaiwa.chat import quotas
    from kaiwa.chat.realtime import limits, loops

    channel_layers.backends.clear()
    loops.clear_for_testing()
    quotas.room_create_limits_reset()
    limits.message_limits_reset()
    yield
    channel_layers.backends.clear()
    loops.clear_for_testing()
    quotas.room_create_limits_reset()
    limits.message_limits_reset()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters (django-ratelimit, in the local-memory cache) start at zero."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _rest_answers_match_the_openapi_schema():
    """Every /api/ answer of Django's test Client (and DRF's APIClient) is
    checked against the OpenAPI schema (tests/openapi.py)."""
    from tests.openapi import checking_client

    with checking_client():
        yield


@pytest.fixture
def alice(db):
    from tests.factories import UserFactory

    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    from tests.factories import UserFactory

    return UserFactory(username="bob")

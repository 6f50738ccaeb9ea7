"""PostgreSQL as operators run it: a statement timeout and a connect timeout
on every connection (docs/operations.md), none for the release step."""

from __future__ import annotations

import pytest

from tests.kaiwa_process import manage, services_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

SHOW = (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    c.execute('SHOW statement_timeout'); print(c.fetchone()[0])\n"
    "print(connection.get_connection_params().get('connect_timeout'))\n"
)
SLEEP = (
    "from django.db import connection, OperationalError\n"
    "try:\n"
    "    connection.cursor().execute('SELECT pg_sleep(3)')\n"
    "except OperationalError as exc:\n"
    "    print('refused:', type(exc.__cause__).__name__)\n"
)


def test_every_connection_has_its_timeouts(postgres_url, redis_url, tmp_path):
    env = services_env(
        tmp_path,
        postgres_url,
        redis_url,
        KAIWA_DB_STATEMENT_TIMEOUT_SECONDS="1.5",
        KAIWA_DB_CONNECT_TIMEOUT_SECONDS="3",
    )
    assert manage(env, "shell", "-v", "0", "-c", SHOW).split() == ["1500ms", "3"]
    assert manage(env, "shell", "-v", "0", "-c", SLEEP).strip() == "refused: QueryCanceled"


def test_defaults_and_pgbouncer_mode(postgres_url, redis_url, tmp_path):
    assert manage(
        services_env(tmp_path, postgres_url, redis_url), "shell", "-v", "0", "-c", SHOW
    ).split() == [
        "30s",
        "5",
    ]
    bouncer = services_env(tmp_path, postgres_url, redis_url, KAIWA_PGBOUNCER="1")
    code = "from django.conf import settings; print(settings.DATABASES['default']['DISABLE_SERVER_SIDE_CURSORS'])"
    assert manage(bouncer, "shell", "-v", "0", "-c", code).strip() == "True"
    # No startup options through the bouncer: the role's own timeout applies (0 here).
    assert manage(bouncer, "shell", "-v", "0", "-c", SHOW).split()[0] == "0"

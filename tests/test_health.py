"""/healthz and /readyz in process (the real-process runs are in tests/e2e/test_health.py)."""

import io
import logging

import pytest
from django.test import Client

from kaiwa import logs

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_healthz_is_200_without_touching_anything(client: Client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}
    assert "no-cache" in answer["Cache-Control"]


@pytest.mark.django_db
def test_readyz_on_the_embedded_defaults_probes_the_database(client: Client):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"Database(alias='default')": "OK"}
    assert "no-cache" in answer["Cache-Control"]


@pytest.mark.django_db
def test_readyz_is_503_naming_a_dead_redis(client: Client, settings):
    settings.REDIS_URL = DEAD_REDIS
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["Database(alias='default')"] == "OK"
    (redis,) = [value for key, value in body.items() if key.startswith("Redis")]
    assert redis != "OK"


@pytest.mark.django_db
def test_a_failing_probe_logs_a_line_per_check_without_traceback(client: Client, settings):
    # A balancer polls every second through an outage: each failed probe is
    # a few lines (the failed check, the request), not tracebacks. The
    # console handler of config.settings, filters and formatter included.
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    console.addFilter(logs.QuietFilter())
    console.setFormatter(logs.formatter(json=False))
    logging.getLogger().addHandler(console)
    try:
        settings.REDIS_URL = DEAD_REDIS
        assert client.get("/readyz").status_code == 503
    finally:
        logging.getLogger().removeHandler(console)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert any("Health check Redis() failed" in line for line in lines), lines
    assert not any("Traceback" in line for line in lines), lines
    assert not any("Service Unavailable: /readyz" in line for line in lines), lines
    assert len(lines) <= 3, lines


def test_health_endpoints_take_only_get(client: Client):
    assert client.post("/healthz").status_code == 405

"""/healthz and /readyz in process (the real-process runs are in tests/e2e/test_health.py)."""

import pytest
from django.test import Client

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


def test_health_endpoints_take_only_get(client: Client):
    assert client.post("/healthz").status_code == 405

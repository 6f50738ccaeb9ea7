"""GET /metrics: who may scrape it, and that what the sockets do moves the
counters (kaiwa.metrics). Values are read from the exposition itself, as
Prometheus reads them, and compared before and after (the process's
counters are shared by every test)."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from kaiwa import metrics
from kaiwa.chat.models import Room
from tests.communicator import connect, join
from tests.factories import RoomFactory, UserFactory


def scrape(**extra: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics as a loopback scraper; every sample by (name, labels)."""
    response = Client().get("/metrics", REMOTE_ADDR="127.0.0.1", **extra)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_it_answers_loopback_and_hides_from_everyone_else(settings):
    settings.KAIWA_METRICS_TOKEN = ""
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="::1").status_code == 200
    # A public address gets a 404: the path says nothing to the public.
    assert Client().get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    assert Client().post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405


def test_allowed_networks_and_the_bearer_token(settings):
    settings.KAIWA_METRICS_ALLOW = ["10.0.0.0/8"]
    settings.KAIWA_METRICS_TOKEN = "scrape-secret-for-tests"
    assert Client().get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    good = {"HTTP_AUTHORIZATION": "Bearer scrape-secret-for-tests"}
    bad = {"HTTP_AUTHORIZATION": "Bearer scrape-secret-for-test"}
    assert Client().get("/metrics", **outside, **good).status_code == 200
    assert Client().get("/metrics", **outside, **bad).status_code == 404
    # A wrong token is refused even from an allowed network.
    assert Client().get("/metrics", REMOTE_ADDR="10.1.2.3", **bad).status_code == 404


def test_it_refuses_a_bad_network_setting():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={"KAIWA_METRICS_ALLOW": "10.0.0.0/8,not-a-network", "DJANGO_DEBUG": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "KAIWA_METRICS_ALLOW" in done.stderr
    assert "not-a-network" in done.stderr


def test_frame_type_reads_kaiwas_frames():
    assert metrics.frame_type('{"type":"message","seq":1}') == "message"
    assert metrics.frame_type('{"seq":1}') == "other"
    assert metrics.frame_type('{"type":"' + "x" * 100 + '"}') == "other"


def test_any_json_type_counts_as_other():
    """A client's ``type`` may be a list or an object (unhashable): it counts
    as 'other' instead of raising out of the consumer's dispatch."""
    before = metrics.FRAMES_RECEIVED.labels("other")._value.get()
    for kind in (["message"], {"a": 1}, 3, None, "nonsense"):
        metrics.received(kind)
    assert metrics.FRAMES_RECEIVED.labels("other")._value.get() == before + 5


@pytest.mark.django_db(transaction=True)
async def test_sockets_move_the_counters():
    alice = await database_sync_to_async(UserFactory)(username="alice")
    bob = await database_sync_to_async(UserFactory)(username="bob")
    await database_sync_to_async(RoomFactory)(slug="secret", private=True)
    before = await database_sync_to_async(scrape)()

    a, b = await join(user=alice), await join(user=bob)
    during = await database_sync_to_async(scrape)()
    assert value(during, "kaiwa_sockets_open") == value(before, "kaiwa_sockets_open") + 2
    await a.send_json_to({"message": "hello", "client_id": "c1"})
    assert (await a.recv())["message"] == "hello"
    assert (await b.recv())["message"] == "hello"
    await a.send_json_to({"type": "nonsense"})
    assert (await a.recv())["code"] == "bad_frame"
    await a.send_json_to({"type": "ping"})
    assert (await a.recv())["type"] == "pong"
    refused = await connect("/ws/chat/secret/", user=alice)
    assert await refused.close_code() == 4403
    anonymous = await connect(user=AnonymousUser())
    assert await anonymous.close_code() == 4401
    # What uvicorn sends an application whose socket it closed.
    await refused.disconnect(code=4403)
    await anonymous.disconnect(code=4401)
    last_seq = await database_sync_to_async(lambda: Room.objects.get(slug="lobby").last_seq)()
    resumed = await join(f"/ws/chat/lobby/?after={last_seq - 1}", user=bob)
    assert [frame["message"] for frame in resumed.backlog] == ["hello"]
    await resumed.disconnect()
    await a.disconnect()
    await b.disconnect()
    after = await database_sync_to_async(scrape)()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("kaiwa_sockets_open") == 0
    assert delta("kaiwa_joins_total", outcome="ready") == 3
    assert delta("kaiwa_joins_total", outcome="4403") == 1
    assert delta("kaiwa_joins_total", outcome="4401") == 1
    assert delta("kaiwa_join_duration_seconds_count") == 3
    assert delta("kaiwa_resumes_total", outcome="replayed") == 1
    assert delta("kaiwa_frames_received_total", type="message") == 1
    assert delta("kaiwa_frames_received_total", type="other") == 1
    assert delta("kaiwa_frames_received_total", type="ping") == 1
    assert delta("kaiwa_frames_sent_total", type="pong") == 1
    assert delta("kaiwa_frames_sent_total", type="error") == 1
    assert delta("kaiwa_frames_sent_total", type="ready") == 3
    # The broadcast to both sockets, then its replay to the resumed one.
    assert delta("kaiwa_frames_sent_total", type="message") == 3
    assert delta("kaiwa_deliveries_total") >= 2
    assert delta("kaiwa_messages_stored_total") == 1
    assert delta("kaiwa_room_events_stored_total", type="message") == 1
    assert delta("kaiwa_socket_closes_total", code="4403") == 1
    assert delta("kaiwa_socket_closes_total", code="4401") == 1
    assert delta("kaiwa_database_call_duration_seconds_count", kind="message_create_batch") >= 1


@pytest.mark.django_db(transaction=True)
async def test_a_refused_message_counts_as_a_rate_limit_refusal(settings):
    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 0.001
    settings.KAIWA_RATE_BURST = 1
    alice = await database_sync_to_async(UserFactory)(username="alice")
    before = await database_sync_to_async(scrape)()
    a = await join(user=alice)
    await a.send_json_to({"message": "one"})
    assert (await a.recv())["message"] == "one"
    await a.send_json_to({"message": "two", "client_id": "c-two"})
    refusal = await a.recv()
    assert refusal["code"] == "rate_limited"
    assert refusal["client_id"] == "c-two"  # it names the send it refuses (PROTOCOL.md 3)
    await a.disconnect()
    after = await database_sync_to_async(scrape)()
    refusals = value(after, "kaiwa_rate_limit_refusals_total", limit="message") - value(
        before, "kaiwa_rate_limit_refusals_total", limit="message"
    )
    assert refusals == 1


def test_the_grafana_dashboard_shows_every_metric_and_only_kaiwas():
    import json
    import re
    from pathlib import Path

    from prometheus_client import REGISTRY

    dashboard = json.loads(
        (Path(__file__).parent.parent / "deploy/grafana/kaiwa-dashboard.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for expr in exprs
        for name in re.findall(r"\bkaiwa_[a-z_]+", expr)
    }
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("kaiwa_")
    }
    assert named <= families, named - families
    assert families <= named, families - named


def test_every_client_frame_type_has_a_series_from_the_start():
    # A fresh process lists them at 0, so that dashboards have every series.
    samples = scrape()
    for kind in (*metrics.CLIENT_FRAME_TYPES, "other"):
        assert ("kaiwa_frames_received_total", (("type", kind),)) in samples, kind

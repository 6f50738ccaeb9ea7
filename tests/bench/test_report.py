"""The benchmark's arithmetic and report (the load itself runs in `python -m bench`)."""

import asyncio
import math

import pytest

pytest.importorskip("picows", reason="the benchmark's dependencies: pip install -e .[bench]")

from bench import loadgen, report, runner


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile(values, 100) == 100
    assert loadgen.percentile([7], 99) == 7
    assert math.isnan(loadgen.percentile([], 50))


def row(rate, p99=10.0, lost=0):
    return {
        "deliveries_per_s": rate, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": p99, "max_ms": 20.0,
        "lost": lost, "connect_s": 0.1, "connect_failures": 0, "server_rss_mb": 50.0,
    }  # fmt: skip


def test_report_gives_medians_and_ratios():
    results = {
        "burst-500": {
            "kaiwa": [row(40_000), row(50_000), row(60_000)],
            "tutorial": [row(4_000), row(5_000), row(6_000, lost=3)],
            "raw": [row(55_000), row(60_000), row(65_000)],
        }
    }
    text = report.markdown(
        results,
        [runner.SCENARIOS["burst-500"]],
        ["kaiwa", "tutorial", "raw"],
        "python -m bench --rounds 3",
        {"cores": 2, "cpu": "test", "python": "3.11", "uvicorn": "0", "date": "today"},
    )
    assert "| kaiwa | 50,000 |" in text
    assert "| tutorial | 5,000 |" in text
    assert "| 3 |" in text
    assert "Kaiwa / tutorial: **10.00x**" in text
    assert "raw ASGI / Kaiwa: **1.20x**" in text
    assert "`python -m bench --rounds 3`" in text


def test_tally_counts_until_expected():
    tally = loadgen.Tally(expected=2)
    tally.add(0)
    assert not tally.done.is_set()
    tally.add(0)
    assert tally.done.is_set()
    assert tally.deliveries == 2


class FakeTransport:
    def __init__(self):
        self.sent = []

    def send(self, kind, payload):
        self.sent.append(payload)


async def test_page_like_clients_send_at_most_one_read_a_second(monkeypatch):
    monkeypatch.setattr(loadgen, "READ_INTERVAL_SECONDS", 0.2)
    client = loadgen.Client(loadgen.Tally(), needs_ready=False, reads="page")
    client.transport = FakeTransport()
    for seq in range(1, 21):
        client._on_message({"seq": seq}, f"x:{seq}:0")
    assert [p for p in client.transport.sent] == [b'{"type":"read","seq":1}']
    await asyncio.sleep(0.3)  # the trailing read carries the latest seq
    assert client.transport.sent[-1] == b'{"type":"read","seq":20}'
    assert client.tally.reads_sent == 2
    assert client.tally.gaps == 0


def test_clients_count_skipped_seqs_as_lost():
    client = loadgen.Client(loadgen.Tally(), needs_ready=False)
    for seq in (1, 2, 5, 5, 6):
        client._on_message({"seq": seq}, f"x:{seq}:0")
    assert client.tally.gaps == 2
    assert client.tally.deliveries == 4


def test_zipf_room_sizes():
    assert loadgen.zipf_room_sizes(6, 500, 100) == [500, 250, 167, 125, 100, 100]


def test_report_tables_for_storms_team_day_and_steps():
    storm = {
        "storm_connections": 5000, "storm_failures": 0, "storm_all_ready_s": 4.0,
        "storm_p50_ms": 2000.0, "storm_p99_ms": 3900.0, "storm_per_s": 1250.0,
        "resume_connections": 4990, "resume_failures": 10, "resume_all_ready_s": 5.0,
        "resume_p50_ms": 2500.0, "resume_p99_ms": 4900.0, "resume_per_s": 998.0,
    }  # fmt: skip
    day = {
        "sockets": 3591, "posts": 1200, "deliveries_per_s": 6400.0, "p50_ms": 10.0,
        "p99_ms": 250.0, "ack_p50_ms": 9.0, "ack_p99_ms": 240.0, "reads_sent": 37000,
        "resumes": 200, "resume_p99_ms": 180.0, "lost": 0, "errors": 0, "connect_failures": 0,
    }  # fmt: skip
    steps = {"join|queries": 2, "join|ms": 0.155, "post|queries": 5, "post|ms": 0.9}
    results = {
        "storm-5000": {"kaiwa": [storm, {**storm, "storm_p99_ms": 4100.0}]},
        "team-day": {"kaiwa": [day]},
        "steps": {"kaiwa": [steps]},
        "burst-500": {"kaiwa": [row(50_000)]},
        "read-500": {"kaiwa": [row(45_000)]},
    }
    text = report.markdown(
        results,
        [runner.SCENARIOS[s] for s in results],
        ["kaiwa"],
        "python -m bench",
        {"cores": 2, "cpu": "test", "python": "3.11", "uvicorn": "0", "date": "today"},
    )
    assert "| kaiwa | first connect | 1 | 5,000 | 0 | 4.0 | 1,250 | 2000 | 3900 |" in text
    assert (
        "| kaiwa | first connect | 2 | 5,000 | 0 | 4.0 | 1,250 | 2000 | 4100 |" in text
    )  # every round
    assert "| kaiwa | after SIGTERM restart | 1 | 4,990 | 10 | 5.0 | 998 | 2500 | 4900 |" in text
    assert "| kaiwa | 3,591 | 1,200 | 6,400 | 10.0 | 250.0 | 9.0 | 240.0 |" in text
    assert "| join | 2 | 0.155 |" in text
    assert "| post | 5 | 0.900 |" in text
    assert "`read-500` / `burst-500` (listen-only): kaiwa **0.90x**" in text

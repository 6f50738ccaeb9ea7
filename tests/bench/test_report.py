"""The benchmark's arithmetic and report (the load itself runs in `kaiwa bench`)."""

import math

from kaiwa.bench import loadgen, report, runner


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
        "kaiwa bench --rounds 3",
        {"cores": 2, "cpu": "test", "python": "3.11", "uvicorn": "0", "date": "today"},
    )
    assert "| kaiwa | 50,000 |" in text
    assert "| tutorial | 5,000 |" in text and "| 3 |" in text  # lost is summed
    assert "Kaiwa / tutorial: **10.00x**" in text
    assert "raw ASGI / Kaiwa: **1.20x**" in text
    assert "`kaiwa bench --rounds 3`" in text


def test_tally_counts_until_expected():
    tally = loadgen.Tally(expected=2)
    tally.add(0)
    assert not tally.done.is_set()
    tally.add(0)
    assert tally.done.is_set() and tally.deliveries == 2

"""docs/benchmarks.md and its plot from the results of ``python -m bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runner import ROOM_SIZE_SCENARIOS, SCENARIOS, Scenario, median

Results = dict[str, dict[str, list[dict[str, float]]]]


def _ratio(a: float, b: float) -> str:
    if not a or not b or a != a or b != b:
        return "n/a"
    return f"{a / b:.2f}x"


def _storm_table(per_target: dict[str, list[dict[str, float]]], targets: list[str]) -> list[str]:
    """One row per target, phase and round (a storm is one short sample, so
    every round is shown rather than a median)."""
    lines = [
        "| server | phase | round | ready | failures | all ready s | connects/s | p50 ms to ready | p99 ms to ready |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        for phase, label in (("storm", "first connect"), ("resume", "after SIGTERM restart")):
            for n, r in enumerate(per_target.get(t, []), start=1):
                if f"{phase}_connections" not in r:
                    continue
                lines.append(
                    f"| {t} | {label} | {n} | {int(r[f'{phase}_connections']):,} | "
                    f"{int(r[f'{phase}_failures']):,} | {r[f'{phase}_all_ready_s']:.1f} | "
                    f"{r[f'{phase}_per_s']:,.0f} | {r[f'{phase}_p50_ms']:.0f} | "
                    f"{r[f'{phase}_p99_ms']:.0f} |"
                )
    return lines


def _idle_table(per_target: dict[str, list[dict[str, float]]], targets: list[str]) -> list[str]:
    lines = [
        "| server | connections | failures | connect s | RSS before (MiB) | RSS after (MiB) | KiB per connection |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        for r in per_target.get(t, [])[:1]:
            lines.append(
                f"| {t} | {int(r['connections']):,} | {int(r['connect_failures'])} | "
                f"{r['connect_s']:.1f} | {r['rss_before_mb']:.0f} | {r['rss_after_mb']:.0f} | "
                f"{r['bytes_per_connection'] / 1024:.1f} |"
            )
    return lines


def _team_day_table(per_target: dict[str, list[dict[str, float]]], targets: list[str]) -> list[str]:
    lines = [
        "| server | sockets | posts | deliveries/s | p50 ms | p99 ms | ack p50 ms | ack p99 ms | reads sent | typing, reactions, edits, presence sent | events, typing, presence received | resumes | resume p99 ms | lost | errors | connect failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        rows = per_target.get(t, [])
        if not rows:
            continue
        lines.append(
            f"| {t} | {median(rows, 'sockets'):,.0f} | {median(rows, 'posts'):,.0f} | "
            f"{median(rows, 'deliveries_per_s'):,.0f} | {median(rows, 'p50_ms'):.1f} | "
            f"{median(rows, 'p99_ms'):.1f} | {median(rows, 'ack_p50_ms'):.1f} | "
            f"{median(rows, 'ack_p99_ms'):.1f} | {median(rows, 'reads_sent'):,.0f} | "
            f"{median(rows, 'typing_sent'):,.0f}, {median(rows, 'reactions_sent'):,.0f}, "
            f"{median(rows, 'edits_sent'):,.0f}, {median(rows, 'presence_sent'):,.0f} | "
            f"{median(rows, 'events_received'):,.0f}, {median(rows, 'typing_received'):,.0f}, "
            f"{median(rows, 'presence_received'):,.0f} | "
            f"{median(rows, 'resumes'):,.0f} | {median(rows, 'resume_p99_ms'):.0f} | "
            f"{sum(int(r['lost']) for r in rows)} | {sum(int(r['errors']) for r in rows)} | "
            f"{sum(int(r['connect_failures']) for r in rows)} |"
        )
    return lines


def _burst_table(
    name: str, per_target: dict[str, list[dict[str, float]]], targets: list[str]
) -> list[str]:
    lines = [
        "| server | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | lost | reads sent | connect s | connect failures | RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        rows = per_target.get(t, [])
        if not rows:
            continue
        lines.append(
            f"| {t} | {median(rows, 'deliveries_per_s'):,.0f} | {median(rows, 'p50_ms'):.1f} | "
            f"{median(rows, 'p90_ms'):.1f} | {median(rows, 'p99_ms'):.1f} | {median(rows, 'max_ms'):.1f} | "
            f"{sum(int(r['lost']) for r in rows)} | {median(rows, 'reads_sent'):,.0f} | "
            f"{median(rows, 'connect_s'):.2f} | "
            f"{sum(int(r['connect_failures']) for r in rows)} | {median(rows, 'server_rss_mb'):.0f} |"
        )
    rate = {
        t: median(per_target.get(t, []), "deliveries_per_s") for t in targets if per_target.get(t)
    }
    ratios = []
    if "kaiwa" in rate and "tutorial" in rate:
        ratios.append(f"Kaiwa / tutorial: **{_ratio(rate['kaiwa'], rate['tutorial'])}**")
    if "kaiwa-pg" in rate and "tutorial" in rate:
        ratios.append(
            f"Kaiwa on PostgreSQL+Redis / tutorial: **{_ratio(rate['kaiwa-pg'], rate['tutorial'])}**"
        )
    if "raw" in rate and "kaiwa" in rate:
        ratios.append(f"raw ASGI / Kaiwa: **{_ratio(rate['raw'], rate['kaiwa'])}**")
    if "raw" in rate and "kaiwa-pg" in rate:
        ratios.append(
            f"raw ASGI / Kaiwa on PostgreSQL+Redis: **{_ratio(rate['raw'], rate['kaiwa-pg'])}**"
        )
    if ratios:
        lines += ["", "Ratios of deliveries/s (medians): " + "; ".join(ratios) + "."]
    return lines


def _steps_table(per_target: dict[str, list[dict[str, float]]], targets: list[str]) -> list[str]:
    shown = [t for t in targets if per_target.get(t)]
    if not shown:
        return []
    head = " | ".join(f"{t} queries | {t} ms per item" for t in shown)
    lines = [f"| step | {head} |", "| --- |" + " ---: | ---: |" * len(shown)]
    steps = [key[:-3] for key in per_target[shown[0]][0] if key.endswith("|ms")]
    for step in steps:
        cells = " | ".join(
            f"{per_target[t][0].get(step + '|queries', float('nan')):.0f} | "
            f"{per_target[t][0].get(step + '|ms', float('nan')):.3f}"
            for t in shown
        )
        lines.append(f"| {step} | {cells} |")
    return lines


def _table(
    name: str, per_target: dict[str, list[dict[str, float]]], targets: list[str]
) -> list[str]:
    kind = SCENARIOS[name].kind
    if kind == "steps":
        return _steps_table(per_target, targets)
    if kind == "storm":
        return _storm_table(per_target, targets)
    if kind == "idle":
        return _idle_table(per_target, targets)
    if kind == "team-day":
        return _team_day_table(per_target, targets)
    return _burst_table(name, per_target, targets)


def listen_ratios(results: Results, targets: list[str]) -> list[str]:
    """Lines comparing each realistic burst with the listen-only burst-500, per target
    (deliveries/s of the same rounds' medians)."""
    listen = results.get("burst-500", {})
    lines = []
    for name in ("read-500", "read-each-500"):
        if name not in results:
            continue
        parts = []
        for t in targets:
            base = median(listen.get(t, []), "deliveries_per_s")
            value = median(results[name].get(t, []), "deliveries_per_s")
            if listen.get(t) and results[name].get(t):
                parts.append(f"{t} **{_ratio(value, base)}**")
        if parts:
            lines.append(f"- `{name}` / `burst-500` (listen-only): " + ", ".join(parts))
    return lines


def markdown(
    results: Results,
    scenarios: list[Scenario],
    targets: list[str],
    command: str,
    machine: dict[str, Any],
    plot_name: str = "benchmarks-room-size.png",
) -> str:
    """The report: command, machine, one table per scenario, the plot
    (``plot_name``, beside the report)."""
    rounds = max((len(rows) for per in results.values() for rows in per.values()), default=0)
    out = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench` (bench/); do not edit by hand. Analysis, the",
        "choice of ASGI server and the profile are in [performance.md](performance.md).",
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine['cores']} cores ({machine['cpu']}), Python {machine['python']}, "
        f"uvicorn {machine['uvicorn']}; run {machine['date']}",
        f"- Rounds: {rounds} (targets alternate within each round; figures are medians, lost is the sum; a storm shows every round; memory is measured once)",
        "- Servers, one process each on uvicorn (uvloop, h11, websockets-sansio):",
        "  `kaiwa` (SQLite, in-memory channel layer), `kaiwa-pg` (PostgreSQL, Redis pub/sub layer),",
        "  `tutorial` (the consumer of seeds/000 verbatim, channels_redis RedisChannelLayer defaults),",
        "  `raw` (raw ASGI broadcast app: no auth, no storage), `channels-floor` (a Channels",
        "  consumer that only accepts and says `ready`: connect storms only).",
        "- Load generator: one process of picows clients on uvloop; latency is end to end",
        "  (send to receive, same clock). A delivery is one message frame received by one client.",
        "- lost: deliveries not received by the end of the wait (60 s after a burst, 30 s after",
        "  the last paced send), plus any seq a client skipped. In the paced run, deliveries/s is",
        "  the offered 20,000/s for a server that keeps up; one that falls behind shows less.",
        "- Every client is a distinct user with its own API token. Kaiwa's clients send what the",
        "  room page sends (`read` as `client.js` does, resumes with `after=`); the tutorial and raw",
        "  targets know no `read` frame and only listen. reads sent: `read` frames sent by all",
        "  clients in the run (median of rounds). The tutorial's frames carry no `seq`, so a",
        "  skipped message cannot be told apart there in team-day: its lost column stays 0.",
        "",
    ]
    ratios = listen_ratios(results, targets)
    if ratios:
        out += ["## Realistic clients against listen-only clients", "", *ratios, ""]
    for scenario in scenarios:
        if scenario.name not in results:
            continue
        out += [f"## {scenario.name}: {scenario.description}", ""]
        out += _table(scenario.name, results[scenario.name], targets)
        out.append("")
    if sum(s in results for s in ROOM_SIZE_SCENARIOS) >= 2:  # a curve needs two sizes
        out += [
            "## Deliveries/s and p99 latency against room size",
            "",
            f"![deliveries/s and p99 against room size]({plot_name})",
            "",
        ]
    return "\n".join(out)


def plot(results: Results, path: Path) -> None:
    """Write a PNG of deliveries/s and p99 latency against room size (burst scenarios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [(SCENARIOS[s].members, s) for s in ROOM_SIZE_SCENARIOS if s in results]
    if len(sizes) < 2:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    targets = sorted({t for _, s in sizes for t in results[s]})
    for t in targets:
        xs = [m for m, s in sizes if results[s].get(t)]
        left.plot(
            xs,
            [median(results[s][t], "deliveries_per_s") for m, s in sizes if results[s].get(t)],
            "o-",
            label=t,
        )
        right.plot(
            xs,
            [median(results[s][t], "p99_ms") for m, s in sizes if results[s].get(t)],
            "o-",
            label=t,
        )
    for ax, title in ((left, "deliveries/s (burst)"), (right, "p99 latency, ms (burst)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("room size (members)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)

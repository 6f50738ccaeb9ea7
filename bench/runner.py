"""``python -m bench``: start the servers, run the scenarios in alternating rounds,
print the figures and write docs/benchmarks.md (with a PNG plot).

Targets, all on uvicorn with the same options (uvloop, h11,
websockets-sansio), one process each:

- ``kaiwa``: Kaiwa on its embedded defaults (SQLite, in-memory channel layer);
- ``kaiwa-pg``: Kaiwa on PostgreSQL and Redis (channels_redis pub/sub layer);
- ``tutorial``: the consumer of seeds/000 verbatim on channels_redis's
  RedisChannelLayer with default settings (bench.tutorial);
- ``raw``: a raw ASGI broadcast app (bench.raw_app);
- ``channels-floor``: a Channels consumer that only accepts and says ``ready``
  (bench.channels_floor), in the connect storms only.

Rounds alternate the targets within each scenario so that the machine's
noise falls on all of them alike; the report gives medians and ratios.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import loadgen

UVICORN_OPTIONS = [
    "--ws", "websockets-sansio", "--log-level", "warning", "--no-access-log", "--backlog", "4096",
    "--http", "h11",  # as `kaiwa serve` (kaiwa.uvicorn_h11: bounded request heads)
]  # fmt: skip
KAIWA_BIN = str(Path(sys.executable).with_name("kaiwa"))
# The checkout holding bench/: the working directory of every process the
# runner starts, which imports bench.* from it (bench/ is not installed).
CHECKOUT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Target:
    """A server under test: how to start it and how clients talk to it."""

    name: str
    command: list[str]
    env: dict[str, str]
    needs_auth: bool
    setup: Callable[[Target, int], list[str]] | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    tokens: list[str] = field(default_factory=list)
    log_dir: Path | None = None
    kinds: frozenset[str] | None = None  # scenario kinds it runs (None: all)

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/{room}/"

    @property
    def is_kaiwa(self) -> bool:
        """Kaiwa speaks PROTOCOL.md (``ready``, ``read``); the others only the tutorial's frames."""
        return self.name.startswith("kaiwa")

    def start(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log = open(log_dir / f"{self.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*self.command, "--port", str(self.port)],
            env=self.env,
            cwd=CHECKOUT,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {log_dir / self.name}.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def ensure_tokens(self, count: int) -> list[str] | None:
        if not self.needs_auth:
            return None
        if len(self.tokens) < count and self.setup is not None:
            self.tokens = self.setup(self, count)
        return self.tokens[:count]

    def rss(self) -> int:
        assert self.proc is not None
        return rss_bytes(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM (Kaiwa closes its sockets with 1012), then SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def restart(self) -> None:
        """Stop with SIGTERM and start again on the same port and data."""
        assert self.log_dir is not None
        self.stop()
        self.start(self.log_dir)


def in_target_env(target: Target, module: str, *args: str) -> Any:
    """Run ``python -m <module> ARGS`` in ``target``'s environment (its
    database) and return the JSON of its last line of output."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=target.env,
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def kaiwa_tokens(target: Target, count: int) -> list[str]:
    """API tokens of ``count`` users of ``target`` (bench.tokens)."""
    return in_target_env(target, "bench.tokens", str(count))


def kaiwa_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIWA_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        KAIWA_LOG_LEVEL="WARNING",
        # The benchmark measures fan-out, not abuse limits.
        KAIWA_RATE_MESSAGES_PER_SECOND="1000000",
        KAIWA_RATE_BURST="1000000",
        KAIWA_CONNECT_RATE_PER_IP="1000000",
        KAIWA_CONNECT_BURST_PER_IP="1000000",
        KAIWA_MAX_CONNECTIONS_PER_USER="1000000",
        # Every round makes new rooms through the same users (tokens[0] opens
        # each one-room scenario): room budgets off, as the limits above.
        KAIWA_ROOM_CREATE_RATE_PER_MINUTE="0",
        KAIWA_MAX_ROOMS_PER_USER="0",
        KAIWA_SIGNIN_RATE_PER_IP="1000000/m",
    )
    env.update(extra)
    return env


def make_targets(work: Path, names: Sequence[str], redis: str, postgres: str) -> list[Target]:
    py = sys.executable
    uvicorn = [py, "-m", "uvicorn", *UVICORN_OPTIONS]
    kaiwa = [KAIWA_BIN, "serve", "--log-level", "warning"]
    targets = {
        "kaiwa": lambda: Target(
            "kaiwa", kaiwa, kaiwa_env(KAIWA_DATA_DIR=str(work / "kaiwa-data")), True, kaiwa_tokens
        ),
        "kaiwa-pg": lambda: Target(
            "kaiwa-pg",
            kaiwa,
            kaiwa_env(
                KAIWA_DATA_DIR=str(work / "kaiwa-pg-data"),
                DATABASE_URL=_fresh_postgres(postgres),
                REDIS_URL=redis,
                KAIWA_REDIS_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
            ),
            True,
            kaiwa_tokens,
        ),
        # kaiwa-pg with its flood limits counted per process (KAIWA_CLUSTER_LIMITS=0):
        # what counting them across processes in Redis costs.
        "kaiwa-pg-local-limits": lambda: Target(
            "kaiwa-pg-local-limits",
            kaiwa,
            kaiwa_env(
                KAIWA_DATA_DIR=str(work / "kaiwa-pg-local-data"),
                DATABASE_URL=_fresh_postgres(postgres),
                REDIS_URL=redis,
                KAIWA_REDIS_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
                KAIWA_CLUSTER_LIMITS="0",
            ),
            True,
            kaiwa_tokens,
        ),
        # kaiwa-pg with PROMETHEUS_MULTIPROC_DIR set: what prometheus_client's
        # multiprocess mode (values in memory-mapped files) costs.
        "kaiwa-pg-multiproc": lambda: Target(
            "kaiwa-pg-multiproc",
            kaiwa,
            kaiwa_env(
                KAIWA_DATA_DIR=str(work / "kaiwa-pg-multiproc-data"),
                DATABASE_URL=_fresh_postgres(postgres),
                REDIS_URL=redis,
                KAIWA_REDIS_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
                PROMETHEUS_MULTIPROC_DIR=str(work / f"prometheus-{uuid.uuid4().hex[:8]}"),
            ),
            True,
            kaiwa_tokens,
        ),
        # Another checkout's Kaiwa on embedded defaults, side by side with this
        # one in the same run (A/B of a change): BENCH_BASELINE_KAIWA names its
        # `kaiwa` command, e.g. /tmp/before/.venv/bin/kaiwa.
        "kaiwa-baseline": lambda: Target(
            "kaiwa-baseline",
            [os.environ["BENCH_BASELINE_KAIWA"], "serve", "--log-level", "warning"],
            kaiwa_env(KAIWA_DATA_DIR=str(work / "kaiwa-baseline-data")),
            True,
            kaiwa_tokens,
        ),
        "tutorial": lambda: Target(
            "tutorial",
            [*uvicorn, "bench.tutorial.asgi:application"],
            {**os.environ, "BENCH_REDIS": redis.split("//")[1].split("/")[0]},
            False,
        ),
        "raw": lambda: Target(
            "raw", [*uvicorn, "bench.raw_app:application"], dict(os.environ), False
        ),
        "channels-floor": lambda: Target(
            "channels-floor",
            [*uvicorn, "bench.channels_floor:application"],
            kaiwa_env(KAIWA_DATA_DIR=str(work / "floor-data")),
            False,
            kinds=frozenset({"storm"}),
        ),
    }
    # Kaiwa (embedded defaults) on other ASGI servers, to choose one by measurement.
    app = "config.asgi:application"
    granian = str(Path(py).with_name("granian"))
    others = {
        "kaiwa@uvicorn-websockets": [
            py,
            "-m",
            "uvicorn",
            app,
            "--ws",
            "websockets",
            *UVICORN_OPTIONS[2:],
        ],
        "kaiwa@uvicorn-wsproto": [
            py,
            "-m",
            "uvicorn",
            app,
            "--ws",
            "wsproto",
            *UVICORN_OPTIONS[2:],
        ],
        "kaiwa@daphne": [py, "-m", "daphne", "-b", "127.0.0.1", app],
        "kaiwa@granian": [
            granian,
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--loop",
            "uvloop",
            app,
        ],
    }
    for name, command in others.items():
        targets[name] = partial(
            Target,
            name,
            command,
            kaiwa_env(KAIWA_DATA_DIR=str(work / f"{name}-data")),
            True,
            kaiwa_tokens,
        )
    return [targets[n]() for n in names]


# (server URL, name) of the databases this run created: dropped when it ends.
CREATED_DATABASES: list[tuple[str, str]] = []


def _fresh_postgres(base: str) -> str:
    """A new, empty database on the PostgreSQL server at ``base`` (a URL
    without a database); returns its URL. Dropped by ``_drop_databases``."""
    name = f"kaiwa_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    CREATED_DATABASES.append((base, name))
    return f"{base}/{name}"


def _drop_databases() -> None:
    """Drop the databases of ``_fresh_postgres`` (after the servers stopped);
    one that cannot be dropped is named on stderr and left."""
    while CREATED_DATABASES:
        base, name = CREATED_DATABASES.pop()
        done = subprocess.run(
            ["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"],
            check=False,
            capture_output=True,
        )
        if done.returncode:
            print(f"bench: could not drop database {name}", file=sys.stderr)


# --- scenarios ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One load shape. ``kind``: burst, paced, storm, idle or team-day.

    ``reads``: how Kaiwa's clients acknowledge what they receive (None: they
    only listen; "page": as the room page does; "each": one ``read`` per
    message). The tutorial and raw targets know no ``read`` frame and only
    listen. ``restart``: a storm also restarts the server (SIGTERM) and
    measures every client resuming at once.
    """

    name: str
    kind: str
    rooms: int = 1
    members: int = 500
    messages: int = 20  # per room (burst) or per second (paced)
    seconds: float = 5.0
    description: str = ""
    reads: str | None = None
    restart: bool = False

    @property
    def clients(self) -> int:
        return self.rooms * self.members


TEAM_DAY = loadgen.TeamDay()
# The same day with posts and reads only (version 1 clients): the baseline the
# v2 mix (typing, reactions, edits) is compared with in the same run.
TEAM_DAY_V1 = dataclasses.replace(
    TEAM_DAY, typing=False, react_every=0, edit_every=0, away_every_s=0.0
)

SCENARIOS = {
    s.name: s
    for s in [
        Scenario(
            "burst-500", "burst", 1, 500, 20,
            description="one room of 500 distinct users, 20 messages at once; clients only listen",
        ),
        Scenario(
            "read-500", "burst", 1, 500, 20, reads="page",
            description="burst-500 with every client acknowledging with `read` as the page does "
            "(at most once a second)",
        ),
        Scenario(
            "read-each-500", "burst", 1, 500, 20, reads="each",
            description="burst-500 with one `read` per message per client (a naive bot, "
            "the version-1 page)",
        ),
        Scenario(
            "storm-5000", "storm", 500, 10, restart=True,
            description="5,000 distinct users in 500 rooms connect at once; then the server "
            "is restarted (SIGTERM) and all resume at once with `after=`",
        ),
        Scenario(
            "team-day", "team-day", TEAM_DAY.rooms, seconds=TEAM_DAY.seconds,
            description=f"{TEAM_DAY.users:,} users in {TEAM_DAY.rooms} rooms of Zipf sizes "
            f"({TEAM_DAY.largest} down to {TEAM_DAY.smallest}), one socket per membership, "
            f"a post per member every {TEAM_DAY.post_every_s:g} s per room, page-like reads, "
            f"{TEAM_DAY.churn_per_s:.1%} of sockets leaving and resuming each second, "
            f"{TEAM_DAY.seconds:g} s; Kaiwa's clients also send the v2 mix: `typing` before "
            f"each post, a reaction every {TEAM_DAY.react_every} posts, an edit every "
            f"{TEAM_DAY.edit_every}, and each user's tab goes `away` once per "
            f"{TEAM_DAY.away_every_s:g} s on average (back `online` 2-10 s later)",
        ),
        Scenario(
            "team-day-v1", "team-day", TEAM_DAY.rooms, seconds=TEAM_DAY.seconds,
            description="team-day with version-1 clients: posts and page-like reads only, "
            "no typing, reactions, edits or presence (the baseline of the v2 mix)",
        ),
        Scenario(
            "idle-5000", "idle", 1, 5000,
            description="5,000 idle connections of distinct users on a freshly started "
            "server: memory per connection",
        ),
        Scenario(
            "steps", "steps", 1, 200,
            description="queries and milliseconds of each database step of the socket path "
            "(`python -m bench.steps`), alone and batched",
        ),
        Scenario(
            "burst-100", "burst", 1, 100, 20, description="one room of 100, 20 messages at once"
        ),
        Scenario(
            "burst-2000", "burst", 1, 2000, 10, description="one room of 2,000, 10 messages at once"
        ),
        Scenario(
            "rooms-100x10", "burst", 100, 10, 10,
            description="100 rooms of 10, every member sends once (write-heavy)",
        ),
        Scenario(
            "paced-20k", "paced", 1, 500, 40, 5.0,
            description="one room of 500, 40 messages/s for 5 s = 20,000 deliveries/s",
        ),
    ]
}  # fmt: skip
# What `python -m bench` runs without --scenarios: the realistic loads first.
DEFAULT_SCENARIOS = [
    "burst-500",
    "read-500",
    "read-each-500",
    "storm-5000",
    "team-day-v1",
    "team-day",
    "idle-5000",
]
ROOM_SIZE_SCENARIOS = ["burst-100", "burst-500", "burst-2000"]


class Profiler:
    """py-spy on a server process while a scenario's load runs (after connects).

    Writes ``<dir>/<target>-<scenario>.txt`` in py-spy's raw (collapsed
    stack) format, one file per target and scenario (the last round wins).
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def starter(self, target: Target, scenario: Scenario) -> Callable[[], None]:
        def start() -> None:
            if self.directory is None or target.proc is None:
                return
            out = self.directory / f"{target.name}-{scenario.name}.txt"
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(target.proc.pid),
                 "--format", "raw", "--rate", "250", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # attached

        return start

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)
            self.proc.wait(30)
            self.proc = None


PROFILER = Profiler(None)


def run_steps(target: Target, users: int) -> dict[str, float]:
    """``python -m bench.steps`` in the target's environment, flattened:
    ``{"<step>|queries": n, "<step>|ms": ms per item}``."""
    steps = in_target_env(target, "bench.steps", "--users", str(users))["steps"]
    result: dict[str, float] = {}
    for name, figures in steps.items():
        result[f"{name}|queries"] = figures["queries"]
        result[f"{name}|ms"] = figures["ms_per_item"]
    return result


def _clients(scenario: Scenario) -> int:
    if scenario.kind == "team-day":
        return TEAM_DAY.users
    return scenario.clients


async def run_scenario(target: Target, scenario: Scenario, round_no: int) -> dict[str, float]:
    tokens = target.ensure_tokens(_clients(scenario))
    rooms = [
        f"b{round_no}_{scenario.name.replace('-', '_')}_{r}_{uuid.uuid4().hex[:6]}"
        for r in range(scenario.rooms)
    ]
    urls = [target.url(r) for r in rooms]
    ready = target.is_kaiwa
    reads = scenario.reads if target.is_kaiwa else None
    on_start = PROFILER.starter(target, scenario)
    if scenario.kind == "burst":
        result = await loadgen.run_burst(
            urls, scenario.members, scenario.messages, tokens, ready, on_start=on_start,
            reads=reads,
        )  # fmt: skip
        PROFILER.stop()
    elif scenario.kind == "paced":
        result = await loadgen.run_paced(
            urls[0], scenario.members, scenario.messages, scenario.seconds, tokens, ready, on_start,
            reads,
        )  # fmt: skip
        PROFILER.stop()
    elif scenario.kind == "storm":
        restart = partial(asyncio.to_thread, target.restart) if scenario.restart else None
        on_start()
        result = await loadgen.run_storm(urls, scenario.members, tokens, ready, restart)
        PROFILER.stop()
    elif scenario.kind == "steps":
        return await asyncio.to_thread(run_steps, target, scenario.members)
    elif scenario.kind == "team-day":
        day = TEAM_DAY_V1 if scenario.name == "team-day-v1" else TEAM_DAY
        result = await loadgen.run_team_day(urls.__getitem__, day, tokens, ready, on_start)
        PROFILER.stop()
    else:
        # Memory per connection is only meaningful on a fresh process: a heap
        # grown by an earlier scenario absorbs new sockets without growing.
        await asyncio.to_thread(target.restart)
        await asyncio.sleep(1.0)
        result = await loadgen.run_idle(urls[0], scenario.members, tokens, ready, target.rss)
    result["server_rss_mb"] = target.rss() / 2**20
    return result


# --- driver -------------------------------------------------------------------------


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_all(
    targets: list[Target], scenarios: list[Scenario], rounds: int, log: Callable[[str], None]
) -> dict[str, dict[str, list[dict[str, float]]]]:
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for scenario in scenarios:
        per_target = results.setdefault(scenario.name, {t.name: [] for t in targets})
        # A storm is short and noisy: it runs every round, and the report
        # shows each. Memory (idle) and the steps are measured once.
        scenario_rounds = 1 if scenario.kind in ("idle", "steps") else rounds
        for round_no in range(scenario_rounds):
            order = targets if round_no % 2 == 0 else list(reversed(targets))
            for target in order:
                if target.kinds is not None and scenario.kind not in target.kinds:
                    continue
                if scenario.kind == "steps" and not target.is_kaiwa:
                    continue
                result = await run_scenario(target, scenario, round_no)
                per_target[target.name].append(result)
                log(f"{scenario.name:13} round {round_no + 1} {target.name:9} {_brief(result)}")
                await asyncio.sleep(0.5)
    return results


def _brief(r: dict[str, float]) -> str:
    if any("|ms" in key for key in r):
        return ", ".join(
            f"{key[:-3]}: {r[key[:-3] + '|queries']:.0f} queries, {r[key]:.3f} ms/item"
            for key in r
            if key.endswith("|ms")
        )
    if "storm_connections" in r:
        text = (
            f"storm: {int(r['storm_connections'])} ready, {int(r['storm_failures'])} failed, "
            f"all in {r['storm_all_ready_s']:.1f} s, p99 {r['storm_p99_ms']:.0f} ms"
        )
        if "resume_connections" in r:
            text += (
                f"; resume: {int(r['resume_connections'])} ready, {int(r['resume_failures'])} "
                f"failed, all in {r['resume_all_ready_s']:.1f} s, p99 {r['resume_p99_ms']:.0f} ms"
            )
        return text
    if "bytes_per_connection" in r:
        return (
            f"{int(r['connections'])} conns, {r['bytes_per_connection'] / 1024:.1f} KiB/conn, "
            f"failures {int(r['connect_failures'])}"
        )
    return (
        f"{r['deliveries_per_s']:>9,.0f} deliveries/s  p50 {r['p50_ms']:7.1f} ms  "
        f"p99 {r['p99_ms']:7.1f} ms  lost {int(r['lost'])}  conn fail {int(r['connect_failures'])}"
    )


def median(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit status."""
    import argparse

    from . import report

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--targets", default="kaiwa,kaiwa-pg,tutorial,raw", help="comma-separated")
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--output", default="docs/benchmarks.md", help="report path ('-' for none)")
    parser.add_argument(
        "--profile", metavar="DIR", help="record py-spy profiles of the servers under load into DIR"
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.profile:
        PROFILER.directory = Path(args.profile)
        PROFILER.directory.mkdir(parents=True, exist_ok=True)
    scenarios = [SCENARIOS[s] for s in args.scenarios.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="kaiwa-bench-"))
    targets = make_targets(
        work, [t for t in args.targets.split(",") if t], args.redis, args.postgres
    )
    print(f"bench: logs in {work}", flush=True)
    try:
        for target in targets:
            target.start(work)
        import uvloop

        results = uvloop.run(
            run_all(targets, scenarios, args.rounds, lambda s: print(s, flush=True))
        )
    finally:
        for target in targets:
            target.stop()
        _drop_databases()
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.output)
    plot = out.with_name(f"{out.stem}-room-size.png")
    text = report.markdown(
        results, scenarios, [t.name for t in targets], command.strip(), machine(), plot.name
    )
    print(text)
    if args.output != "-":
        out.parent.mkdir(parents=True, exist_ok=True)
        report.plot(results, plot)
        out.write_text(text)
        print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import uvicorn

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }

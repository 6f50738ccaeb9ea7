"""Prometheus metrics of a Kaiwa process, and ``GET /metrics``.

Built on prometheus_client, Prometheus' own Python client. The names follow
Prometheus' conventions (``kaiwa_`` prefix, ``_total`` for counters, base
units: seconds); the set follows Centrifugo's (connections, commands by
method, messages sent and received by type, broadcast duration, recoveries)
where Kaiwa has the same thing, plus what Kaiwa has of its own (seq gap
fills, outbox overflows, the write thread's database calls).

Several processes on one host (``kaiwa serve`` on ports 8001, 8002 ... behind
nginx): set ``PROMETHEUS_MULTIPROC_DIR`` to one empty directory for all of
them, and prometheus_client's multiprocess mode (its documentation,
"Multiprocess Mode") keeps each process's values in memory-mapped files
there; any process's ``/metrics`` then answers for all of them together
(counters summed; ``kaiwa_sockets_open`` summed over the live processes).
Empty the directory before the first process starts (the release step does,
deploy/systemd). Without it, each process answers for itself, and Prometheus
scrapes every process as a target of its own.

Who may scrape (``/metrics`` is not public): ``KAIWA_METRICS_TOKEN``, a
bearer token (``Authorization: Bearer <token>``), and/or
``KAIWA_METRICS_ALLOW``, the networks allowed without one (default the
loopback addresses ``127.0.0.0/8,::1``). Anyone else gets 404, so that the
path says nothing to the public.
"""

from __future__ import annotations

import glob
import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# prometheus_client opens its files in PROMETHEUS_MULTIPROC_DIR as the metrics
# below are made: the directory must exist by then.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Latency buckets (seconds). Joins include authentication, the room and the
# backlog; database calls and publishes are usually well under a millisecond.
JOIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

# --- sockets ---------------------------------------------------------------------

SOCKETS_OPEN = Gauge(
    "kaiwa_sockets_open",
    "WebSocket connections accepted and not yet closed.",
    multiprocess_mode="livesum",
)
JOINS = Counter(
    "kaiwa_joins_total",
    "Room joins by outcome: ready, or the close code that refused them.",
    ["outcome"],
)
JOIN_SECONDS = Histogram(
    "kaiwa_join_duration_seconds",
    "Seconds from a socket's accept to its ready frame (authentication, room, backlog).",
    buckets=JOIN_BUCKETS,
)
RESUMES = Counter(
    "kaiwa_resumes_total",
    "Joins with after= by outcome: replayed (the backlog was sent) or reset.",
    ["outcome"],
)
CLOSES = Counter(
    "kaiwa_socket_closes_total",
    "Closed sockets by close code (1000, 1001, 1006, 1009, 1012, 4401, 4403, 4404, 4408, 4429 ...).",
    ["code"],
)
OUTBOX_OVERFLOWS = Counter(
    "kaiwa_outbox_overflows_total",
    "Sockets closed with 4408 because their outbox was full (a slow client).",
)

# --- frames ----------------------------------------------------------------------

FRAMES_RECEIVED = Counter(
    "kaiwa_frames_received_total",
    "Frames received from clients, by type (unknown types counted as 'other').",
    ["type"],
)
FRAMES_SENT = Counter(
    "kaiwa_frames_sent_total",
    "Frames sent to sockets, by type (room events counted once per recipient).",
    ["type"],
)
DELIVERIES = Counter(
    "kaiwa_deliveries_total",
    "Frames handed to sockets by the fan-out (room events, typing, presence, user events).",
)

# --- storage and fan-out ---------------------------------------------------------

ROOM_EVENTS_STORED = Counter(
    "kaiwa_room_events_stored_total",
    "Room events stored by this process and published, by type (message, edit, delete, reaction ...).",
    ["type"],
)
MESSAGES_STORED = Counter(
    "kaiwa_messages_stored_total",
    "Messages stored by this process (posts over WebSocket and REST).",
)
GAP_FILLS = Counter(
    "kaiwa_gap_fills_total",
    "Gaps in a room feed's seq filled from the database (a lost or late broadcast).",
)
PUBLISH_SECONDS = Histogram(
    "kaiwa_channel_layer_publish_duration_seconds",
    "Seconds a channel-layer group_send took (to other processes), by outcome.",
    ["outcome"],
    buckets=FAST_BUCKETS,
)
DATABASE_SECONDS = Histogram(
    "kaiwa_database_call_duration_seconds",
    "Seconds of one database call of the socket path (kaiwa.chat.realtime.executors), by call kind.",
    ["kind"],
    buckets=FAST_BUCKETS,
)

# --- limits, background work -----------------------------------------------------

RATE_LIMITED = Counter(
    "kaiwa_rate_limit_refusals_total",
    "Refusals by limit: message, connect, sockets (per-user cap), room_create.",
    ["limit"],
)
CELERY_TASKS = Counter(
    "kaiwa_celery_tasks_total",
    "Celery task runs by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
)
MISSED_MESSAGE_EMAILS = Counter(
    "kaiwa_missed_message_emails_sent_total",
    "Missed-message emails handed to the SMTP server.",
)

# The frame types of PROTOCOL.md, so that a client's junk type names cannot
# create series without bound.
CLIENT_FRAME_TYPES = frozenset(
    {"message", "ping", "read", "edit", "delete", "react", "typing", "presence"}
)
# Every series at 0 from the start, so that a dashboard's panels and rate()
# have them before the first frame of a type.
for _kind in (*sorted(CLIENT_FRAME_TYPES), "other"):
    FRAMES_RECEIVED.labels(_kind)


def frame_type(frame: str) -> str:
    """The ``type`` of an encoded server frame: Kaiwa's frames start with
    ``{"type":"<name>"`` (kaiwa.chat.frames.encode); "other" otherwise."""
    if frame.startswith('{"type":"'):
        end = frame.find('"', 9)
        if 9 < end < 40:
            return frame[9:end]
    return "other"


def received(kind: object) -> None:
    """Count one client frame of type ``kind`` (any value; unknown ones as 'other')."""
    # A client's type may be any JSON value, a list or an object included:
    # only a known string names a series.
    known = isinstance(kind, str) and kind in CLIENT_FRAME_TYPES
    FRAMES_RECEIVED.labels(kind if known else "other").inc()


def sent(frame: str, count: int = 1) -> None:
    """Count ``frame`` sent to ``count`` sockets."""
    FRAMES_SENT.labels(frame_type(frame)).inc(count)


# --- GET /metrics ----------------------------------------------------------------


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, or None when each process answers for itself."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def reap_dead_processes(path: str) -> None:
    """Drop the live gauges (``kaiwa_sockets_open``) of processes of this host
    that are gone without a clean shutdown (SIGKILL, a crash), so their
    sockets stop counting; their counters stay (a total never goes back)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        try:
            pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except (ValueError, PermissionError):
            continue


def process_exit() -> None:
    """Called at a clean shutdown (kaiwa.chat.realtime.lifespan): this process's live
    gauges stop counting in multiprocess mode."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(os.getpid(), path)


def exposition() -> bytes:
    """The metrics in Prometheus' text format: every process's of this host
    in multiprocess mode, else this process's."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    reap_dead_processes(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return generate_latest(registry)


def _allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in settings.KAIWA_METRICS_ALLOW)


def scrape_allowed(request: HttpRequest) -> bool:
    """True when ``request`` may read the metrics: it carries the bearer token
    KAIWA_METRICS_TOKEN, or comes from a network in KAIWA_METRICS_ALLOW
    (REMOTE_ADDR, which uvicorn takes from X-Forwarded-For only when the
    proxy is in FORWARDED_ALLOW_IPS)."""
    token = settings.KAIWA_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].encode(), token.encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: 200 with the exposition, or 404 for a scraper that
    is not allowed (see scrape_allowed), 405 for another method."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if not scrape_allowed(request):
        return HttpResponseNotFound()
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)

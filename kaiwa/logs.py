"""Kaiwa's logs: one line per HTTP request and per socket at INFO, plain or JSON.

Built on structlog and django-structlog (its ``RequestMiddleware`` logs
``request_finished`` with a ``request_id``, the method and path, the status
and the user). Kaiwa's own modules keep the standard ``logging`` API; the
context that structlog binds in ``contextvars`` (``request_id`` for a
request; ``socket_id``, ``room`` and ``user_id`` for a socket, bound by the
consumer) is added to every line logged meanwhile, by
``structlog.stdlib.ProcessorFormatter`` (structlog's documentation,
"Rendering Using structlog-based Formatters Within logging").

``KAIWA_LOG_FORMAT``: ``plain`` (default) renders
``2026-11-22 10:00:00.123456 INFO kaiwa.chat.realtime.consumers: socket closed code=1000 socket_id=...``;
``json`` one JSON object per line (``timestamp``, ``level``, ``logger``,
``event`` and the context) for a log shipper.

What is left out at INFO (``QuietFilter``): uvicorn's lines for each
WebSocket (``[accepted]``, ``connection open``, ``connection closed``; the
consumer writes one line per socket instead) and successful probes of
``/healthz``, ``/readyz`` and ``/metrics`` (a balancer polls every second).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from django.dispatch import receiver
from django_structlog import signals

# uvicorn's per-WebSocket messages (uvicorn.protocols.websockets.*_impl).
UVICORN_SOCKET_MESSAGES = frozenset(
    {'%s - "WebSocket %s" [accepted]', "connection open", "connection closed"}
)
# Paths polled by machines: their successful requests are not logged.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.stdlib.PositionalArgumentsFormatter(),
]


def configure_structlog() -> None:
    """Route structlog's loggers (django-structlog's) through ``logging``, so
    that one handler and formatter (``formatter``) writes every line."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def plain_renderer(logger: Any, method: str, event: dict[str, Any]) -> str:
    """One line: ``<timestamp> <LEVEL> <logger>: <event> key=value ...``,
    then the traceback of an exception, if any."""
    head = f"{event.pop('timestamp')} {event.pop('level').upper()} {event.pop('logger', '-')}: "
    text = str(event.pop("event", ""))
    exception = event.pop("exception", None)
    fields = " ".join(f"{key}={value}" for key, value in event.items())
    line = head + text + (" " + fields if fields else "")
    return line + "\n" + exception if exception else line


def formatter(json: bool = False) -> structlog.stdlib.ProcessorFormatter:
    """The ``logging.Formatter`` of config.settings LOGGING: plain lines, or
    JSON objects when ``json`` (KAIWA_LOG_FORMAT=json)."""
    if json:
        stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
        renderer: Any = structlog.processors.JSONRenderer()
    else:
        stamp = structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S.%f", utc=False)
        renderer = plain_renderer
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            stamp,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


class QuietFilter(logging.Filter):
    """Drops uvicorn's per-WebSocket lines, successful machine probes and
    django.request's copy of a failed probe, and keeps a failed health
    check to one line without its traceback (see the module's docstring);
    passes everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if record.name == "health_check" and record.levelno <= logging.WARNING:
            # "Health check Redis() failed": one line, not its traceback, as a
            # balancer polls every second through an outage (the 503's JSON
            # names the error); unexpected errors keep theirs (ERROR).
            record.exc_info = None
            record.exc_text = None
            return True
        if record.name == "django.request":
            request = getattr(record, "request", None)
            if getattr(request, "path", None) in QUIET_PATHS:
                return False  # django_structlog's request_finished line has it
        if isinstance(message, str):
            return not (record.name.startswith("uvicorn") and message in UVICORN_SOCKET_MESSAGES)
        if isinstance(message, dict) and message.get("event") == "request_finished":
            path = str(message.get("request", "")).rsplit(" ", 1)[-1].split("?", 1)[0]
            code = message.get("code")
            if path in QUIET_PATHS and isinstance(code, int) and code < 400:
                return False
        return True


_sockets = structlog.get_logger("kaiwa.chat.realtime.consumers")


def socket_closed(code: int, seconds: float, ready: bool) -> None:
    """The socket's one line at INFO: ``socket_closed`` with its close
    ``code``, ``seconds`` open and whether it got to ``ready``, plus the ids
    bound by ``bind_socket``."""
    _sockets.info("socket_closed", code=code, seconds=round(seconds, 3), ready=ready)


def bind_socket(**fields: Any) -> None:
    """Bind ``fields`` (``socket_id``, ``room``, ``user_id``) to every line
    the current socket's task logs from now on."""
    structlog.contextvars.bind_contextvars(**fields)


@receiver(signals.bind_extra_request_metadata)
def bind_client_address(
    request: Any, logger: Any, log_kwargs: dict[str, Any], **kwargs: Any
) -> None:
    """Bind ``ip``: REMOTE_ADDR as uvicorn set it (the proxy's X-Forwarded-For
    only from FORWARDED_ALLOW_IPS), never a header read anew."""
    structlog.contextvars.bind_contextvars(ip=request.META.get("REMOTE_ADDR"))

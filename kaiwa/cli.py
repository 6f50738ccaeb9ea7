"""The ``kaiwa`` command: serve, worker, manage.

kaiwa serve [--host H] [--port P]   migrate, then serve HTTP and WebSocket on one port
kaiwa worker [--no-beat] [celery worker options]
                                    a Celery worker (with the sweep's beat) for background tasks
kaiwa manage <command ...>          Django's management commands
"""

import argparse
import os
import sys
from pathlib import Path


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    data_dir_create()


def data_dir_create() -> None:
    """Create the directory of an SQLite database (KAIWA_DATA_DIR on embedded
    defaults) if it is missing; nothing for other databases."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)


def serve(host: str, port: int, log_level: str) -> None:
    """Apply migrations, then run the ASGI app on uvicorn until SIGINT/SIGTERM.

    uvicorn's sans-I/O websockets protocol is used; frames above
    KAIWA_MAX_FRAME_BYTES are refused by it with close code 1009, and sockets
    open at shutdown are closed with 1012 (server restarting). HTTP is parsed
    by h11 (kaiwa.http): a request head above KAIWA_MAX_HEADER_BYTES gets 400,
    one not complete within KAIWA_HEADER_TIMEOUT_SECONDS is closed.
    """
    _setup()
    import uvicorn
    from django.conf import settings
    from django.core.management import call_command

    from kaiwa.http import HeadTimeoutH11Protocol

    call_command("migrate", interactive=False, verbosity=0)
    uvicorn.run(
        "config.asgi:application",
        host=host,
        port=port,
        http=HeadTimeoutH11Protocol,
        h11_max_incomplete_event_size=settings.KAIWA_MAX_HEADER_BYTES,
        ws="websockets-sansio",
        ws_max_size=settings.KAIWA_MAX_FRAME_BYTES,
        lifespan="on",  # kaiwa.chat.lifespan: flush read positions, close the hub
        backlog=settings.KAIWA_LISTEN_BACKLOG,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def worker(argv: list[str]) -> None:
    """Start a Celery worker of ``config.celery_app`` with extra ``argv`` options.

    The worker embeds Celery beat (``--beat``), which runs the periodic sweep
    of due missed-message emails every KAIWA_EMAIL_SWEEP_SECONDS; every
    worker may run one, as the sweep is idempotent. ``--no-beat`` leaves it
    out. Exits with status 2 when no broker is configured (tasks then run
    eagerly inside ``kaiwa serve``, and a worker would receive nothing).
    """
    _setup()
    from django.conf import settings

    from config.celery_app import app

    if settings.CELERY_TASK_ALWAYS_EAGER:
        print(
            "kaiwa worker: no broker configured (set REDIS_URL or CELERY_BROKER_URL); "
            "without one, tasks run inside kaiwa serve.",
            file=sys.stderr,
        )
        sys.exit(2)
    beat = [] if "--no-beat" in argv else ["--beat"]
    argv = [arg for arg in argv if arg != "--no-beat"]
    app.worker_main(["worker", "--loglevel=INFO", *beat, *argv])


def manage(argv: list[str]) -> None:
    """Run a Django management command, e.g. ``["createsuperuser", "--noinput"]``."""
    _setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["kaiwa manage", *argv])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="kaiwa", description="Kaiwa, a real-time chat server.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="migrate, then serve HTTP and WebSocket")
    p_serve.add_argument("--host", default=os.environ.get("KAIWA_HOST", "127.0.0.1"))
    p_serve.add_argument("--port", type=int, default=int(os.environ.get("KAIWA_PORT", "8000")))
    p_serve.add_argument("--log-level", default="info")
    sub.add_parser("worker", help="start a Celery worker", add_help=False)
    sub.add_parser("manage", help="run a Django management command", add_help=False)
    if argv and argv[0] in ("worker", "manage"):
        {"worker": worker, "manage": manage}[argv[0]](argv[1:])
        return
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.log_level)


if __name__ == "__main__":
    main()

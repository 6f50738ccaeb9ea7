"""The ``kaiwa`` command: serve, worker, manage.

kaiwa serve [--host H] [--port P] [--no-migrate]
                                    migrate (under a lock), then serve HTTP and WebSocket on
                                    one port; with --no-migrate, wait for the schema instead
kaiwa migrate                       apply migrations (the release step), under the same lock
kaiwa worker [--no-beat] [celery worker options]
                                    a Celery worker (with the sweep's beat) for background tasks
kaiwa manage <command ...>          Django's management commands
"""

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("kaiwa.cli")

# The PostgreSQL advisory lock that serializes migrations ("kaiwa" in ASCII):
# any number of `kaiwa migrate` and `kaiwa serve` may start at once; the first
# applies the migrations, the others wait for it and find nothing left to do.
MIGRATION_LOCK_KEY = 0x6B61697761
# How often `kaiwa serve --no-migrate` looks at the schema, and says it waits (seconds).
SCHEMA_POLL_SECONDS = 1.0
SCHEMA_LOG_SECONDS = 10.0


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


@contextlib.contextmanager
def migration_lock() -> Iterator[None]:
    """Hold the lock of migrations for the ``with`` block: PostgreSQL's
    session advisory lock MIGRATION_LOCK_KEY (``pg_advisory_lock``), or on
    SQLite an exclusive ``flock`` on ``<database>.migrate.lock``. Logs once
    when it has to wait for another process. Raises the database's error."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
            if not cursor.fetchone()[0]:
                logger.warning("waiting for another process's migrations (advisory lock)")
                cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
        return
    import fcntl

    name = str(connection.settings_dict["NAME"])
    with open(f"{name}.migrate.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("waiting for another process's migrations (%s.migrate.lock)", name)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # the lock goes with the file's closing


def migrate() -> None:
    """Apply every pending migration under ``migration_lock`` (the release
    step; ``kaiwa serve`` does the same at start unless ``--no-migrate``),
    with no statement timeout (an index build may take longer than
    KAIWA_DB_STATEMENT_TIMEOUT_SECONDS). Raises the database's or the
    migration's error."""
    from django.core.management import call_command
    from django.db import connection

    with migration_lock():
        if connection.vendor == "postgresql" and not settings_pgbouncer():
            with connection.cursor() as cursor:  # an index build may take longer
                cursor.execute("SET statement_timeout = 0")
        call_command("migrate", interactive=False, verbosity=0)


def settings_pgbouncer() -> bool:
    """KAIWA_PGBOUNCER: the database is reached through PgBouncer (transaction pooling)."""
    from django.conf import settings

    return bool(getattr(settings, "KAIWA_PGBOUNCER", False))


def pending_migrations() -> int | None:
    """How many migrations the database lacks; None when it cannot be read."""
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    except DatabaseError:
        return None
    finally:
        connection.close()


def schema_wait() -> None:
    """Return once the database has every migration, saying every
    SCHEMA_LOG_SECONDS what it waits for (``kaiwa serve --no-migrate``)."""
    said = 0.0
    while (pending := pending_migrations()) != 0:
        now = time.monotonic()
        if now - said >= SCHEMA_LOG_SECONDS:
            what = "unreachable" if pending is None else f"{pending} migrations behind"
            logger.warning(
                "waiting for the database schema (%s): run `kaiwa migrate`, the release step",
                what,
            )
            said = now
        time.sleep(SCHEMA_POLL_SECONDS)


def serve(host: str, port: int, log_level: str, migrate_first: bool = True) -> None:
    """Apply migrations (``migrate``: under a lock, so that several processes
    may start at once; with ``migrate_first`` false, wait for another's
    instead), then run the ASGI app on uvicorn until SIGINT/SIGTERM.

    uvicorn's sans-I/O websockets protocol is used; frames above
    KAIWA_MAX_FRAME_BYTES are refused by it with close code 1009, and sockets
    open at shutdown are closed with 1012 (server restarting). HTTP is parsed
    by h11 (kaiwa.uvicorn_h11): a request head above KAIWA_MAX_HEADER_BYTES gets 400,
    one not complete within KAIWA_HEADER_TIMEOUT_SECONDS is closed.
    """
    _setup()
    import uvicorn
    from django.conf import settings

    from kaiwa.uvicorn_h11 import HeadTimeoutH11Protocol

    if migrate_first:
        migrate()
    else:
        schema_wait()
    uvicorn.run(
        "config.asgi:application",
        host=host,
        port=port,
        http=HeadTimeoutH11Protocol,
        h11_max_incomplete_event_size=settings.KAIWA_MAX_HEADER_BYTES,
        ws="websockets-sansio",
        ws_max_size=settings.KAIWA_MAX_FRAME_BYTES,
        lifespan="on",  # kaiwa.chat.realtime.lifespan: flush read positions, close the hub
        backlog=settings.KAIWA_LISTEN_BACKLOG,
        log_level=log_level,
        # uvicorn's records go through Kaiwa's LOGGING (kaiwa.logs: one format,
        # its per-WebSocket lines left out); requests are logged by Django.
        log_config=None,
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
    p_serve.add_argument(
        "--no-migrate",
        action="store_true",
        default=os.environ.get("KAIWA_MIGRATE_ON_START", "1") == "0",
        help="do not migrate; wait until `kaiwa migrate` (the release step) has "
        "(default from KAIWA_MIGRATE_ON_START=0)",
    )
    sub.add_parser("migrate", help="apply migrations (the release step)")
    sub.add_parser("worker", help="start a Celery worker", add_help=False)
    sub.add_parser("manage", help="run a Django management command", add_help=False)
    if argv and argv[0] in ("worker", "manage"):
        {"worker": worker, "manage": manage}[argv[0]](argv[1:])
        return
    args = parser.parse_args(argv)
    if args.command == "migrate":
        _setup()
        migrate()
        return
    serve(args.host, args.port, args.log_level, migrate_first=not args.no_migrate)


if __name__ == "__main__":
    main()

"""Kaiwa settings, read from the environment.

Every variable is documented in the README with its default. With no variable
set, Kaiwa runs in one process on SQLite (a file in ``KAIWA_DATA_DIR``), the
in-memory channel layer and eagerly run Celery tasks. ``DATABASE_URL`` and
``REDIS_URL`` switch to PostgreSQL and Redis so that several processes act as
one server.
"""

import ipaddress
import logging
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import dj_email_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

import kaiwa.logs
import kaiwa.redis_conn

BASE_DIR = Path(__file__).resolve().parent.parent

# Known only to development; production refuses to start with it.
INSECURE_SECRET_KEY = "django-insecure-kaiwa-development-key-do-not-use-in-production"


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean variable: 1/true/yes/on are true, 0/false/no/off/'' false."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """Read an integer variable; raises ImproperlyConfigured on junk."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_float(name: str, default: float) -> float:
    """Read a float variable (seconds and the like); raises ImproperlyConfigured on junk."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


# Fail closed: debug is off unless asked for (`make run` asks, for the embedded
# defaults on a developer's machine).
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or INSECURE_SECRET_KEY
# Django's bar for a key (check --deploy, security.W009): 50 characters, 5 distinct.
if not DEBUG and (
    SECRET_KEY == INSECURE_SECRET_KEY
    or SECRET_KEY.startswith("django-insecure")
    or len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 5
):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is off but DJANGO_SECRET_KEY is unset, the development default or "
        "weak (fewer than 50 characters or 5 distinct ones): set DJANGO_SECRET_KEY to a "
        "long random string (e.g. `python -c 'import secrets; "
        "print(secrets.token_urlsafe(50))'`)."
    )

ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

# Where SQLite lives on embedded defaults: $KAIWA_DATA_DIR, else the XDG data
# directory (~/.local/share/kaiwa), never the working directory. It is created
# when Kaiwa starts (kaiwa.cli.data_dir_create), not at import.
DATA_DIR = Path(
    os.environ.get("KAIWA_DATA_DIR")
    or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "kaiwa"
).resolve()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "django_ratelimit",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by Kaiwa: /api/docs works offline
    "django_structlog",
    "csp",
    "kaiwa.accounts",
    "kaiwa.chat",
    "kaiwa.notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy and Permissions-Policy on every answer (below).
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # One log line per request, with its request_id (kaiwa.logs).
    "django_structlog.middlewares.RequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "kaiwa.accounts.limits.SignInRateLimit",
    # Last, as django-axes asks: it answers 429 for a locked-out sign-in.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    # Persistent connections (checked before reuse): a new PostgreSQL connection
    # per query would dominate every WebSocket join.
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A database that stops answering must not stall a thread for minutes
        # (docs/operations.md): libpq's connect_timeout, and a server-side
        # statement_timeout sent at connection start (0: none). Behind
        # PgBouncer in transaction mode, which passes no startup options, set
        # KAIWA_PGBOUNCER=1 and the timeout on the role instead.
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        _options.setdefault("connect_timeout", env_int("KAIWA_DB_CONNECT_TIMEOUT_SECONDS", 5))
        KAIWA_PGBOUNCER = env_bool("KAIWA_PGBOUNCER", False)
        _statement_ms = round(env_float("KAIWA_DB_STATEMENT_TIMEOUT_SECONDS", 30.0) * 1000)
        if not KAIWA_PGBOUNCER:
            _options.setdefault("options", f"-c statement_timeout={_statement_ms}")
        else:
            # Server-side cursors do not survive PgBouncer's transaction
            # pooling (Django's documentation, "Transaction pooling and
            # server-side cursors").
            DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "kaiwa.sqlite3")}
    }

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock
    # at BEGIN so that two writers queue on busy_timeout instead of deadlocking
    # on a lock upgrade (https://www.sqlite.org/lang_transaction.html).
    DATABASES["default"]["CONN_MAX_AGE"] = 600  # one connection per thread, kept
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(DATA_DIR / "test-kaiwa.sqlite3")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer and Celery ---------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
# Redis Sentinel (kaiwa.redis_conn): REDIS_SENTINELS=host:port,host:port and
# REDIS_SENTINEL_MASTER=<name> find the master for every Redis user; REDIS_URL
# then gives only its database and password (unset: redis://<master>/0).
_sentinel = kaiwa.redis_conn.sentinel_from_env(os.environ)
REDIS_SENTINELS = list(_sentinel.sentinels) if _sentinel else []
REDIS_SENTINEL_MASTER = _sentinel.master if _sentinel else ""
REDIS_SENTINEL_PASSWORD = _sentinel.password if _sentinel else ""
if _sentinel and not REDIS_URL:
    REDIS_URL = f"redis://{_sentinel.master}/0"
if _sentinel:
    kaiwa.redis_conn.target_of(REDIS_URL)  # fails closed on rediss://, unix://, a bad db
# Every Redis key and channel of Kaiwa starts with this (two deployments, or
# test runs, may share one Redis).
KAIWA_REDIS_PREFIX = os.environ.get("KAIWA_REDIS_PREFIX", "kaiwa")
# With REDIS_URL, count the flood limits across processes (kaiwa.chat.realtime.cluster_limits).
KAIWA_CLUSTER_LIMITS = env_bool("KAIWA_CLUSTER_LIMITS", True)
if REDIS_URL:
    # One Redis pub/sub subscription per room per process: the fan-out hub
    # (kaiwa.chat.realtime.hub) joins one group per room, never one per socket.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [kaiwa.redis_conn.channel_layer_host(REDIS_URL, _sentinel)],
                "prefix": KAIWA_REDIS_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds rate-limit counters (django-ratelimit): in Redis when there is
# one, so that every process counts together; else in this one process.
if REDIS_URL:
    CACHES: dict[str, dict[str, object]] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": KAIWA_REDIS_PREFIX + ":cache",
        }
    }
    if _sentinel:
        CACHES["default"]["OPTIONS"] = kaiwa.redis_conn.cache_options(_sentinel)
    # Django's own Redis cache increments atomically (INCRBY), which is what
    # django-ratelimit needs; it only lists django-redis by name.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001", "axes.W006"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # One process on embedded defaults: its memory is the whole server's.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001", "axes.W006"]
# axes.W006 asks for lockouts per IP too: one office behind one NAT address
# would then lock itself out after 5 typos. Kaiwa counts per IP separately
# (KAIWA_SIGNIN_RATE_PER_IP, every attempt), per username with django-axes.

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "") or REDIS_URL or "memory://"
_broker_options: dict[str, object] = {}
if _sentinel and not os.environ.get("CELERY_BROKER_URL"):
    # kombu's Sentinel transport: sentinel://host:port/db;sentinel://... plus the master's name.
    CELERY_BROKER_URL, _broker_options = kaiwa.redis_conn.celery_broker(REDIS_URL, _sentinel)
CELERY_TASK_ALWAYS_EAGER = not (os.environ.get("CELERY_BROKER_URL") or REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "sentinel://")):
    # Kaiwa's queues live under KAIWA_REDIS_PREFIX, like its channels: two
    # deployments (or test runs) on one Redis never take each other's tasks.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "global_keyprefix": KAIWA_REDIS_PREFIX + ":celery:",
        **_broker_options,
    }
# The beat embedded in `kaiwa worker` (kaiwa.cli) keeps its schedule in memory:
# its only job, the sweep (CELERY_BEAT_SCHEDULE below), is idempotent, so a
# restart or two beats do no harm.
CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"

# --- email ------------------------------------------------------------------------

EMAIL_URL = os.environ.get("EMAIL_URL", "")
if EMAIL_URL:
    # smtp://user:password@host:port?tls=1 (or ?ssl=1, ?timeout=30), console:, ...
    # parsed by dj-email-url.
    _email = dj_email_url.parse(EMAIL_URL)
    if "EMAIL_BACKEND" not in _email:
        raise ImproperlyConfigured(
            f"EMAIL_URL: unknown scheme in {EMAIL_URL.split(':', 1)[0]!r} "
            "(smtp, submission, console, file, memory, dummy)"
        )
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
    EMAIL_PORT = _email["EMAIL_PORT"] or 25
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
    EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
    EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
    # Seconds: a bounded SMTP conversation, as the sender holds its rows locked.
    EMAIL_TIMEOUT = _email["EMAIL_TIMEOUT"] or env_int("EMAIL_TIMEOUT", 30)
elif os.environ.get("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = env_int("EMAIL_PORT", 25)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
else:
    # Development: emails are printed on the standard output of the sending process.
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "") or "Kaiwa <kaiwa@localhost>"

# --- auth -------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Brute force (docs/security.md): after KAIWA_LOGIN_FAILURES wrong passwords
# for one username within KAIWA_LOGIN_COOLOFF_MINUTES, that username is
# refused (429) until the window passes, on every sign-in path (login page,
# admin, POST /api/auth/token); counted in the database, so across processes.
# Zulip's default is the same: 5 failures per username per 30 minutes.
AXES_FAILURE_LIMIT = env_int("KAIWA_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = env_float("KAIWA_LOGIN_COOLOFF_MINUTES", 30.0) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
# Cut to the 255 characters of axes' column (a longer one answered 500 on PostgreSQL).
AXES_USERNAME_CALLABLE = "kaiwa.accounts.limits.axes_username"
# Per client IP, every sign-in or password-reset POST counts (django-ratelimit,
# kaiwa.accounts.middleware.SignInRateLimit), so that one address cannot try
# many usernames; password-reset emails are limited per address as well.
KAIWA_SIGNIN_RATE_PER_IP = os.environ.get("KAIWA_SIGNIN_RATE_PER_IP", "") or "30/m"
KAIWA_PASSWORD_RESET_RATE = os.environ.get("KAIWA_PASSWORD_RESET_RATE", "") or "3/h"
# Searches per user (GET /api/search/, django-ratelimit's format; "0": no
# limit): a query costs about a second of PostgreSQL time on 200,000 messages.
KAIWA_SEARCH_RATE = os.environ.get("KAIWA_SEARCH_RATE", "") or "20/m"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/chat/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# API tokens (django-rest-knox): hashed at rest, one per sign-in or per name,
# expiring after KAIWA_TOKEN_TTL_DAYS (0: never), all revoked on a password
# change or deactivation (kaiwa.accounts.signals).
KNOX_TOKEN_MODEL = "accounts.ApiToken"
KAIWA_TOKEN_TTL_DAYS = env_float("KAIWA_TOKEN_TTL_DAYS", 90.0)
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=KAIWA_TOKEN_TTL_DAYS) if KAIWA_TOKEN_TTL_DAYS > 0 else None,
    "AUTH_HEADER_PREFIX": "Bearer",
    "AUTO_REFRESH": False,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first so that an anonymous call gets 401 with WWW-Authenticate.
        "kaiwa.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["kaiwa.rest.StrictJSONParser"],
    "EXCEPTION_HANDLER": "kaiwa.rest.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# /api/schema and /api/docs (drf-spectacular; the bodies are described in kaiwa.openapi).
# Both are public: the schema tells what PROTOCOL.md tells, nothing about any user.
SPECTACULAR_SETTINGS = {
    "TITLE": "Kaiwa",
    "DESCRIPTION": (
        "REST API of Kaiwa, the real-time chat server (PROTOCOL.md section 5). "
        "Errors are `{code, detail}`. The WebSocket frames are in docs/asyncapi.yaml."
    ),
    "VERSION": "2",  # PROTOCOL.md's version
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"ErrorCodeEnum": "kaiwa.openapi.ERROR_CODES"},
}

# --- i18n, static -----------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Only for `manage collectstatic` (a CDN or the proxy serving /static/): unset,
# whitenoise serves the apps' static folders directly.
STATIC_ROOT = os.environ.get("KAIWA_STATIC_ROOT") or None
# Serve straight from the apps' static folders: `kaiwa serve` needs no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Kaiwa ------------------------------------------------------------------------

KAIWA_ALLOW_GUESTS = env_bool("KAIWA_ALLOW_GUESTS", False)
KAIWA_BACKLOG_MESSAGES = env_int("KAIWA_BACKLOG_MESSAGES", 50)
KAIWA_RESUME_LIMIT = env_int("KAIWA_RESUME_LIMIT", 1000)
KAIWA_MAX_FRAME_BYTES = env_int("KAIWA_MAX_FRAME_BYTES", 16 * 1024)
KAIWA_MAX_MESSAGE_CHARS = env_int("KAIWA_MAX_MESSAGE_CHARS", 4000)
# Seconds after posting during which its author may edit a message; 0: always.
KAIWA_EDIT_WINDOW_SECONDS = env_float("KAIWA_EDIT_WINDOW_SECONDS", 0.0)
# Caps on what one message accumulates (docs/security.md): its edits (each
# keeps a former version; a history answer holds at most this + 1 versions;
# 0: no edits) and its distinct reaction emoji (Discord's 20).
KAIWA_MAX_EDITS_PER_MESSAGE = env_int("KAIWA_MAX_EDITS_PER_MESSAGE", 50)
KAIWA_MAX_REACTIONS_PER_MESSAGE = env_int("KAIWA_MAX_REACTIONS_PER_MESSAGE", 20)
# `typing` is not relayed in rooms with more members than this (PROTOCOL.md).
KAIWA_TYPING_MAX_MEMBERS = env_int("KAIWA_TYPING_MAX_MEMBERS", 100)
# How often a visible room page asks GET /api/rooms/ for the sidebar's unread
# counts (seconds): 2,000 visible tabs at 30 s are about 70 requests a second.
KAIWA_ROOMS_POLL_SECONDS = env_float("KAIWA_ROOMS_POLL_SECONDS", 30.0)
# Presence (PROTOCOL.md section 3): a user is offline once no socket of his has
# been open for this long (seconds); `presence` frames go to rooms of at most
# KAIWA_PRESENCE_MAX_MEMBERS members (0: to none; REST still answers).
KAIWA_PRESENCE_GRACE_SECONDS = env_float("KAIWA_PRESENCE_GRACE_SECONDS", 30.0)
KAIWA_PRESENCE_MAX_MEMBERS = env_int("KAIWA_PRESENCE_MAX_MEMBERS", 200)
KAIWA_OUTBOUND_MAX_MESSAGES = env_int("KAIWA_OUTBOUND_MAX_MESSAGES", 1000)
KAIWA_OUTBOUND_MAX_BYTES = env_int("KAIWA_OUTBOUND_MAX_BYTES", 1024 * 1024)
KAIWA_GAP_GRACE_SECONDS = env_float("KAIWA_GAP_GRACE_SECONDS", 0.2)
KAIWA_SEQ_CHECK_SECONDS = env_float("KAIWA_SEQ_CHECK_SECONDS", 2.0)
# Frames each room feed keeps in memory to answer joins and resumes without a
# query (kaiwa.chat.realtime.hub, invariant 4).
KAIWA_FEED_MEMORY_MESSAGES = env_int("KAIWA_FEED_MEMORY_MESSAGES", 200)
# Threads for the sockets' database reads and joins (kaiwa.chat.realtime.executors); the message
# writer has its own one.
KAIWA_DB_THREADS = env_int("KAIWA_DB_THREADS", 4)
# Read positions from `read` frames are merged and stored at most this often
# (seconds; kaiwa.chat.realtime.read_positions).
KAIWA_READ_FLUSH_SECONDS = env_float("KAIWA_READ_FLUSH_SECONDS", 1.0)
# Pending TCP connections the listening socket queues (uvicorn's --backlog;
# the kernel caps it at net.core.somaxconn).
KAIWA_LISTEN_BACKLOG = env_int("KAIWA_LISTEN_BACKLOG", 4096)
# Bounds on a request head (request line and headers) for `kaiwa serve`
# (kaiwa.uvicorn_h11): bytes buffered before it is refused with 400 (nginx's
# large_client_header_buffers default is 4 x 8 KiB), and seconds it may take to
# arrive before the connection is closed (nginx's client_header_timeout).
KAIWA_MAX_HEADER_BYTES = env_int("KAIWA_MAX_HEADER_BYTES", 65536)
KAIWA_HEADER_TIMEOUT_SECONDS = env_float("KAIWA_HEADER_TIMEOUT_SECONDS", 10.0)
# Missed-message emails (kaiwa.notifications): how long a mention or DM may stay
# unread before it is emailed, how often the worker sweeps for due batches, and
# the address links in emails point to.
KAIWA_EMAIL_BATCH_SECONDS = env_float("KAIWA_EMAIL_BATCH_SECONDS", 120.0)
KAIWA_EMAIL_SWEEP_SECONDS = env_float("KAIWA_EMAIL_SWEEP_SECONDS", 30.0)
KAIWA_EMAIL_MAX_MESSAGES = env_int("KAIWA_EMAIL_MAX_MESSAGES", 50)
KAIWA_BASE_URL = os.environ.get("KAIWA_BASE_URL", "").rstrip("/") or "http://127.0.0.1:8000"
# Sent and skipped missed-message rows (and the emails' records) are deleted
# after this many days (notifications.tasks.missed_messages_cleanup); 0 keeps them.
KAIWA_MISSED_MESSAGE_KEEP_DAYS = env_int("KAIWA_MISSED_MESSAGE_KEEP_DAYS", 30)

# Retention (kaiwa.chat.retention): days messages are kept (0: forever; a room
# may say otherwise in the admin), the seqs deleted per transaction, and how
# often the beat of `kaiwa worker` applies it (seconds).
KAIWA_RETENTION_DAYS = env_int("KAIWA_RETENTION_DAYS", 0)
KAIWA_RETENTION_BATCH = env_int("KAIWA_RETENTION_BATCH", 500)
KAIWA_RETENTION_SWEEP_SECONDS = env_float("KAIWA_RETENTION_SWEEP_SECONDS", 3600.0)
if KAIWA_RETENTION_DAYS < 0 or KAIWA_RETENTION_BATCH < 1:
    raise ImproperlyConfigured(
        "KAIWA_RETENTION_DAYS must be 0 (forever) or more, KAIWA_RETENTION_BATCH 1 or more"
    )

CELERY_BEAT_SCHEDULE = {
    "missed-message-emails-sweep": {
        "task": "kaiwa.notifications.tasks.missed_message_emails_sweep",
        "schedule": KAIWA_EMAIL_SWEEP_SECONDS,
    },
    "retention-sweep": {
        "task": "kaiwa.chat.tasks.retention_sweep",
        "schedule": KAIWA_RETENTION_SWEEP_SECONDS,
    },
    "missed-messages-cleanup": {
        "task": "kaiwa.notifications.tasks.missed_messages_cleanup",
        "schedule": KAIWA_RETENTION_SWEEP_SECONDS,
    },
}

# Flood limits (kaiwa.chat.realtime.limits), per process; 0 turns one off.
KAIWA_RATE_MESSAGES_PER_SECOND = env_float("KAIWA_RATE_MESSAGES_PER_SECOND", 10.0)
KAIWA_RATE_BURST = env_int("KAIWA_RATE_BURST", 50)
KAIWA_RATE_STRIKES = env_int("KAIWA_RATE_STRIKES", 10)
KAIWA_CONNECT_RATE_PER_IP = env_float("KAIWA_CONNECT_RATE_PER_IP", 10.0)
KAIWA_CONNECT_BURST_PER_IP = env_int("KAIWA_CONNECT_BURST_PER_IP", 100)
KAIWA_MAX_CONNECTIONS_PER_USER = env_int("KAIWA_MAX_CONNECTIONS_PER_USER", 20)
# Room creation (kaiwa.chat.services.room_create_batch, dm_open): new rooms per
# user (per IP for guests) per minute, per process, in bursts of as many; and
# public rooms one user (one guest IP) may have created, counted from the
# database. Joining an existing room is never limited.
KAIWA_ROOM_CREATE_RATE_PER_MINUTE = env_float("KAIWA_ROOM_CREATE_RATE_PER_MINUTE", 10.0)
KAIWA_MAX_ROOMS_PER_USER = env_int("KAIWA_MAX_ROOMS_PER_USER", 100)
# Every socket re-checks its session or token and room this often (seconds),
# behind the revocation events (kaiwa.chat.receivers); 0 turns it off.
KAIWA_REVALIDATE_SECONDS = env_float("KAIWA_REVALIDATE_SECONDS", 300.0)

# --- metrics (kaiwa.metrics) --------------------------------------------------------

# Who may read GET /metrics: a scraper with the bearer token KAIWA_METRICS_TOKEN
# (unset: none), or any address in KAIWA_METRICS_ALLOW (networks, comma-separated;
# default this host only). Everyone else gets 404.
KAIWA_METRICS_TOKEN = os.environ.get("KAIWA_METRICS_TOKEN", "")
KAIWA_METRICS_ALLOW = [
    net.strip()
    for net in os.environ.get("KAIWA_METRICS_ALLOW", "127.0.0.0/8,::1").split(",")
    if net.strip()
]
for _net in KAIWA_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(
            f"KAIWA_METRICS_ALLOW: {_net!r} is not a network (like 10.0.0.0/8 or ::1)"
        ) from _exc

# --- HTTPS (check --deploy) --------------------------------------------------------

# With debug off Kaiwa assumes it is reached over HTTPS, usually through a proxy
# that terminates TLS: uvicorn then takes the scheme from X-Forwarded-Proto,
# but only from the addresses in FORWARDED_ALLOW_IPS (uvicorn's setting,
# default 127.0.0.1), so a client cannot claim HTTPS itself. KAIWA_HTTPS=0
# serves plain HTTP (a LAN, the tests); `manage check --deploy` then warns.
KAIWA_HTTPS = env_bool("KAIWA_HTTPS", not DEBUG)
if KAIWA_HTTPS:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Probes from a load balancer speak plain HTTP to the process.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Seconds browsers remember to use HTTPS only; start small and raise it
    # (Django's deployment checklist, cookiecutter-django's default of 60).
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 60)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): nothing but this origin's own files. No
# page has inline script or style (json_script data is not run), so neither
# 'unsafe-inline' nor a nonce is needed; connect-src 'self' covers the room
# page's fetch and its WebSocket (ws:// and wss:// of the same host). Swagger
# UI at /api/docs (config.urls) loads its start-up script as a file too.
# Held in Chromium by tests/browser/test_csp.py.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "manifest-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Permissions-Policy (django-permissions-policy): no page uses these browser
# features, so no page, nor anything injected into one, may ask for them.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "bluetooth",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}

# The debug page and error emails mask URL-shaped secrets (DATABASE_URL ...) too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "kaiwa.error_reports.KaiwaExceptionReporterFilter"

# Logs (kaiwa.logs): one line per HTTP request (django-structlog) and per
# socket at INFO, with their request_id or socket_id; KAIWA_LOG_FORMAT=json
# writes one JSON object per line.
KAIWA_LOG_FORMAT = os.environ.get("KAIWA_LOG_FORMAT", "plain")
if KAIWA_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"KAIWA_LOG_FORMAT must be plain or json, got {KAIWA_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kaiwa": {"()": "kaiwa.logs.formatter", "json": KAIWA_LOG_FORMAT == "json"},
    },
    "filters": {"quiet": {"()": "kaiwa.logs.QuietFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "kaiwa", "filters": ["quiet"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("KAIWA_LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own handlers off (its console one doubles lines in debug):
        # its records reach the root's. Requests are logged by django-structlog,
        # so django.request (a line per 4xx) keeps its errors only.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.request": {"level": "ERROR"},
        "django.db.backends": {"level": "WARNING"},
    },
}
kaiwa.logs.configure_structlog()
# django-structlog: the request line once, when it is answered; the client
# address is uvicorn's (X-Forwarded-For only from FORWARDED_ALLOW_IPS), bound
# by kaiwa.logs, not read from headers any client may send.
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_STATUS_4XX_LOG_LEVEL = logging.INFO  # a client's mistake, not the server's
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False

"""Settings read from the environment (config/settings.py), checked in real
subprocesses: fail-closed production defaults, the embedded defaults, Redis,
email and the Celery broker."""

import json
import subprocess
import sys

import pytest

from tests.kaiwa_process import KAIWA, base_env


def settings_of(tmp_path, names, **env):
    """The settings ``names`` of a ``kaiwa manage`` process with ``env``, as JSON
    gives them (anything else as its ``str``)."""
    show = (
        "import json; from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}, default=str))"
    )
    done = subprocess.run(
        [KAIWA, "manage", "shell", "-c", show],
        env=base_env(KAIWA_DATA_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_check(tmp_path, *args, **env):
    """``kaiwa manage check ARGS`` with ``env``; a value of None unsets that variable."""
    full = base_env(KAIWA_DATA_DIR=str(tmp_path), **{k: v for k, v in env.items() if v is not None})
    for name in [k for k, v in env.items() if v is None]:
        full.pop(name, None)
    return subprocess.run(
        [KAIWA, "manage", "check", *args], env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("secret", [None, "", "django-insecure-abc", "changeme", "s" * 50])
def test_production_refuses_a_default_secret(tmp_path, secret):
    done = run_check(tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY=secret)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr


def test_it_fails_closed_with_no_environment_at_all(tmp_path):
    # No DJANGO_DEBUG, no secret: debug is off, so Kaiwa refuses to start.
    done = run_check(tmp_path, DJANGO_SECRET_KEY=None, KAIWA_HTTPS=None)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr


# The production environment README.md documents (behind a TLS-terminating proxy).
PRODUCTION = {
    "DJANGO_DEBUG": None,
    "KAIWA_HTTPS": None,
    "DJANGO_SECRET_KEY": "p" * 20 + "-Q7x!" + "z9" * 20,
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
}


def test_check_deploy_is_clean_for_the_documented_production_settings(tmp_path):
    done = run_check(tmp_path, "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_warns_on_plain_http(tmp_path):
    done = run_check(tmp_path, "--deploy", **{**PRODUCTION, "KAIWA_HTTPS": "0"})
    assert "security.W012" in done.stderr  # SESSION_COOKIE_SECURE


def test_settings_import_creates_no_directory(tmp_path):
    data = tmp_path / "not" / "yet"
    env = base_env(KAIWA_DATA_DIR=str(data), DJANGO_SETTINGS_MODULE="config.settings")
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["False"], done.stderr  # debug is off by default
    assert not data.exists()


def test_data_dir_defaults_to_xdg_not_the_working_directory(tmp_path):
    home = tmp_path / "home"
    env = base_env(HOME=str(home), DJANGO_SETTINGS_MODULE="config.settings")
    env.pop("XDG_DATA_HOME", None)
    code = "from config import settings; print(settings.DATABASES['default']['NAME'])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == [str(home / ".local/share/kaiwa/kaiwa.sqlite3")], done.stderr


def test_production_starts_with_a_real_secret(tmp_path):
    done = run_check(tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="Zx-" + "0123456789" * 5)
    assert done.returncode == 0, done.stderr


def test_embedded_defaults_use_sqlite_in_the_data_dir(tmp_path):
    s = settings_of(tmp_path, ["DATABASES", "CHANNEL_LAYERS", "CELERY_TASK_ALWAYS_EAGER"])
    assert s["DATABASES"]["default"]["NAME"] == str(tmp_path / "kaiwa.sqlite3")
    assert s["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert s["CELERY_TASK_ALWAYS_EAGER"] is True


def test_redis_url_selects_redis_for_channels_and_celery(tmp_path):
    s = settings_of(
        tmp_path,
        ["CHANNEL_LAYERS", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"],
        REDIS_URL="redis://127.0.0.1:6379/3",
    )
    backend = s["CHANNEL_LAYERS"]["default"]["BACKEND"]
    assert backend == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert s["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/3"
    assert s["CELERY_TASK_ALWAYS_EAGER"] is False


REDIS_NAMES = [
    "REDIS_URL", "CHANNEL_LAYERS", "CACHES", "CELERY_BROKER_URL",
    "CELERY_BROKER_TRANSPORT_OPTIONS", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER",
]  # fmt: skip


def test_without_sentinels_every_redis_user_takes_redis_url_as_is(tmp_path):
    url = "redis://:pw@127.0.0.1:6379/3"
    s = settings_of(tmp_path, REDIS_NAMES, REDIS_URL=url)
    assert s["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"] == [url]
    assert s["CACHES"]["default"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "kaiwa:cache",
    }
    assert s["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"global_keyprefix": "kaiwa:celery:"}
    assert (s["REDIS_SENTINELS"], s["REDIS_SENTINEL_MASTER"]) == ([], "")


def test_sentinels_find_the_master_for_every_redis_user(tmp_path):
    s = settings_of(
        tmp_path,
        REDIS_NAMES,
        REDIS_URL="redis://:p%40ss@ignored:1/2",
        REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26380,[::1]:26381",
        REDIS_SENTINEL_MASTER="kaiwa",
    )
    pairs = [["10.0.0.1", 26379], ["10.0.0.2", 26380], ["::1", 26381]]
    assert s["REDIS_SENTINELS"] == pairs
    (host,) = s["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert (host["sentinels"], host["master_name"]) == (pairs, "kaiwa")
    assert (host["db"], host["password"]) == (2, "p@ss")
    options = s["CACHES"]["default"]["OPTIONS"]
    assert options["pool_class"] == "kaiwa.redis_conn.SentinelCachePool"
    assert (options["sentinels"], options["master_name"]) == (pairs, "kaiwa")
    assert s["CELERY_BROKER_URL"] == (
        "sentinel://:p%40ss@10.0.0.1:26379/2;sentinel://:p%40ss@10.0.0.2:26380/2;"
        "sentinel://:p%40ss@[::1]:26381/2"
    )
    transport = s["CELERY_BROKER_TRANSPORT_OPTIONS"]
    assert (transport["master_name"], transport["global_keyprefix"]) == ("kaiwa", "kaiwa:celery:")


def test_sentinels_without_redis_url_stand_for_the_masters_database_0(tmp_path):
    s = settings_of(tmp_path, REDIS_NAMES, REDIS_SENTINELS="s1:26379", REDIS_SENTINEL_MASTER="m")
    assert s["REDIS_URL"] == "redis://m/0"
    assert s["CELERY_BROKER_URL"] == "sentinel://s1:26379/0"


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_SENTINELS": "s1"},
        {"REDIS_SENTINELS": "s1:0"},
        {"REDIS_SENTINELS": "s1:65536"},
        {"REDIS_SENTINELS": "s1:26379,"},
        {"REDIS_SENTINELS": "s1:26379;s2:26379"},
        {"REDIS_SENTINELS": "s1:26379"},  # no master name
        {"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "my master"},
        {"REDIS_SENTINEL_MASTER": "m"},  # no sentinels
        {"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "rediss://h/0"},
        {"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://h/x"},
    ],
)
def test_a_malformed_sentinel_setting_fails_closed(tmp_path, env):
    done = run_check(tmp_path, **env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert "REDIS_" in done.stderr.splitlines()[-1]


# --- email and the Celery broker -----------------------------------------------

EMAIL = [
    "EMAIL_BACKEND",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "EMAIL_TIMEOUT",
    "DEFAULT_FROM_EMAIL",
    "KAIWA_EMAIL_BATCH_SECONDS",
    "KAIWA_EMAIL_SWEEP_SECONDS",
    "KAIWA_BASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
]


def test_the_defaults_print_emails_and_run_tasks_in_process(tmp_path):
    s = settings_of(tmp_path, EMAIL)
    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert s["DEFAULT_FROM_EMAIL"] == "Kaiwa <kaiwa@localhost>"
    assert s["KAIWA_EMAIL_BATCH_SECONDS"] == 120
    assert s["KAIWA_EMAIL_SWEEP_SECONDS"] == 30
    assert s["KAIWA_BASE_URL"] == "http://127.0.0.1:8000"
    assert s["CELERY_TASK_ALWAYS_EAGER"] is True


def test_email_url_configures_smtp(tmp_path):
    s = settings_of(
        tmp_path,
        EMAIL,
        EMAIL_URL="smtp://mailer:s%40cret@mail.example.com:587?tls=1&timeout=5",
        DEFAULT_FROM_EMAIL="Chat <chat@example.com>",
        KAIWA_BASE_URL="https://chat.example.com/",
    )
    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (s["EMAIL_HOST"], s["EMAIL_PORT"]) == ("mail.example.com", 587)
    assert (s["EMAIL_HOST_USER"], s["EMAIL_HOST_PASSWORD"]) == ("mailer", "s@cret")
    assert (s["EMAIL_USE_TLS"], s["EMAIL_USE_SSL"], s["EMAIL_TIMEOUT"]) == (True, False, 5)
    assert s["DEFAULT_FROM_EMAIL"] == "Chat <chat@example.com>"
    assert s["KAIWA_BASE_URL"] == "https://chat.example.com"


def test_email_host_configures_smtp(tmp_path):
    s = settings_of(
        tmp_path, EMAIL, EMAIL_HOST="mail.example.com", EMAIL_PORT="465", EMAIL_USE_SSL="1"
    )
    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (s["EMAIL_HOST"], s["EMAIL_PORT"], s["EMAIL_USE_SSL"]) == ("mail.example.com", 465, True)
    assert s["EMAIL_TIMEOUT"] == 30


def test_a_broker_url_turns_eager_mode_off(tmp_path):
    s = settings_of(tmp_path, EMAIL, CELERY_BROKER_URL="amqp://guest@127.0.0.1:5672//")
    assert s["CELERY_BROKER_URL"] == "amqp://guest@127.0.0.1:5672//"
    assert s["CELERY_TASK_ALWAYS_EAGER"] is False


def test_an_unknown_email_url_is_refused(tmp_path):
    done = run_check(tmp_path, EMAIL_URL="gopher://mail.example.com")
    assert done.returncode != 0
    assert "EMAIL_URL" in done.stderr


# --- security headers (CONTENT_SECURITY_POLICY, PERMISSIONS_POLICY) -------------------


def directives(header: str) -> dict[str, list[str]]:
    """A policy header as ``{directive: [values]}``."""
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/api/schema"])
def test_pages_send_a_content_security_policy_without_inline_script(client, path):
    answer = client.get(path)
    assert answer.status_code == 200
    policy = directives(answer["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]  # the room page's fetch and WebSocket
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]


@pytest.mark.django_db
def test_the_signed_in_pages_and_the_api_send_it_too(client, alice):
    client.force_login(alice)
    for path in ("/chat/", "/chat/lobby/", "/accounts/tokens/", "/api/rooms/", "/api/docs"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "script-src 'self'" in answer["Content-Security-Policy"], path


@pytest.mark.django_db
def test_pages_deny_powerful_browser_features(client):
    answer = client.get("/accounts/login/")
    policy = dict(
        feature.strip().split("=", 1) for feature in answer["Permissions-Policy"].split(",")
    )
    for feature in ("camera", "microphone", "geolocation", "payment", "usb", "display-capture"):
        assert policy[feature] == "()", feature


@pytest.mark.django_db
def test_the_api_docs_add_only_swagger_uis_style_and_icons(client):
    docs = directives(client.get("/api/docs")["Content-Security-Policy"])
    style, *hashes = docs["style-src"]
    assert style == "'self'"
    assert len(hashes) == 1
    assert hashes[0].startswith("'sha256-")  # its one inline <style>, by hash
    assert docs["img-src"] == ["'self'", "data:"]
    assert docs["script-src"] == ["'self'"]
    script = client.get("/api/docs?script=")  # the start-up script, a file of its own
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    login = directives(client.get("/accounts/login/")["Content-Security-Policy"])
    assert login["img-src"] == ["'self'"]

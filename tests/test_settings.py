"""Settings read from the environment, checked in real subprocesses."""

import subprocess
import sys

import pytest

from tests.kaiwa_process import KAIWA, base_env


def run_check(tmp_path, *args, **env):
    """``kaiwa manage check ARGS`` with ``env``; a value of None unsets that variable."""
    full = base_env(KAIWA_DATA_DIR=str(tmp_path), **{k: v for k, v in env.items() if v is not None})
    for name in [k for k, v in env.items() if v is None]:
        full.pop(name, None)
    return subprocess.run(
        [KAIWA, "manage", "check", *args], env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("secret", [None, "", "django-insecure-abc"])
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
    done = run_check(tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="s" * 50)
    assert done.returncode == 0, done.stderr


def test_embedded_defaults_use_sqlite_in_the_data_dir(tmp_path):
    done = subprocess.run(
        [
            KAIWA,
            "manage",
            "shell",
            "-c",
            "from django.conf import settings as s; print(s.DATABASES['default']['NAME']);"
            "print(s.CHANNEL_LAYERS['default']['BACKEND']); print(s.CELERY_TASK_ALWAYS_EAGER)",
        ],
        env=base_env(KAIWA_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stdout.split()
    assert lines[-3] == str(tmp_path / "kaiwa.sqlite3")
    assert lines[-2] == "channels.layers.InMemoryChannelLayer"
    assert lines[-1] == "True"


def test_redis_url_selects_redis_for_channels_and_celery(tmp_path):
    done = subprocess.run(
        [
            KAIWA,
            "manage",
            "shell",
            "-c",
            "from django.conf import settings as s; print(s.CHANNEL_LAYERS['default']['BACKEND']);"
            "print(s.CELERY_BROKER_URL); print(s.CELERY_TASK_ALWAYS_EAGER)",
        ],
        env=base_env(KAIWA_DATA_DIR=str(tmp_path), REDIS_URL="redis://127.0.0.1:6379/3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split()[-3:] == [
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "redis://127.0.0.1:6379/3",
        "False",
    ]


def test_error_reports_mask_url_shaped_secrets(rf, settings):
    from django.views.debug import get_default_exception_reporter_filter

    settings.DATABASE_URL = "postgres://kaiwa:db-password@db:5432/kaiwa"
    settings.REDIS_URL = "redis://:redis-password@redis:6379/0"
    settings.EMAIL_URL = "smtp://mailer:mail-password@smtp:587"
    settings.CELERY_BROKER_URL = "amqp://rabbit:broker-password@mq//"
    shown = str(get_default_exception_reporter_filter().get_safe_settings())
    for secret in ("db-password", "redis-password", "mail-password", "broker-password"):
        assert secret not in shown
    assert "DATABASE_URL" in shown  # named, with its value masked


def test_error_reports_mask_passwords_inside_other_settings(rf, settings):
    from django.views.debug import get_default_exception_reporter_filter

    url = "redis://:redis-password@redis:6379/0"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache", "LOCATION": url}
    }
    settings.CHANNEL_LAYERS = {"default": {"CONFIG": {"hosts": [url]}}}
    reporter = get_default_exception_reporter_filter()
    shown = str(reporter.get_safe_settings())
    assert "redis-password" not in shown
    assert "redis://:********************@redis:6379/0" in shown  # the rest still helps
    request = rf.get("/", HTTP_AUTHORIZATION="Bearer secret-token-value")
    assert "secret-token-value" not in str(reporter.get_safe_request_meta(request))

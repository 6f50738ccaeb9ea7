"""Settings read from the environment, checked in real subprocesses."""

import subprocess

import pytest

from tests.kaiwa_process import KAIWA, base_env


def run_check(tmp_path, **env):
    return subprocess.run(
        [KAIWA, "manage", "check"],
        env=base_env(KAIWA_DATA_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("secret", [None, "", "django-insecure-abc"])
def test_production_refuses_a_default_secret(tmp_path, secret):
    env = {"DJANGO_DEBUG": "0"}
    if secret is not None:
        env["DJANGO_SECRET_KEY"] = secret
    done = run_check(tmp_path, **env)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr


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

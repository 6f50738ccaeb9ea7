"""Email and notification settings read from the environment, in real subprocesses."""

import json
import subprocess

import pytest

from tests.kaiwa_process import KAIWA, base_env

SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k, None)"
    " for k in ['EMAIL_BACKEND', 'EMAIL_HOST', 'EMAIL_PORT', 'EMAIL_HOST_USER',"
    " 'EMAIL_HOST_PASSWORD', 'EMAIL_USE_TLS', 'EMAIL_USE_SSL', 'EMAIL_TIMEOUT',"
    " 'DEFAULT_FROM_EMAIL', 'KAIWA_EMAIL_BATCH_SECONDS', 'KAIWA_EMAIL_SWEEP_SECONDS',"
    " 'KAIWA_BASE_URL', 'CELERY_BROKER_URL', 'CELERY_TASK_ALWAYS_EAGER']}))"
)


def settings_with(tmp_path, **env: str) -> dict:
    done = subprocess.run(
        [KAIWA, "manage", "shell", "-c", SHOW],
        env=base_env(KAIWA_DATA_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_defaults_print_emails_and_run_tasks_in_process(tmp_path):
    s = settings_with(tmp_path)
    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert s["DEFAULT_FROM_EMAIL"] == "Kaiwa <kaiwa@localhost>"
    assert s["KAIWA_EMAIL_BATCH_SECONDS"] == 120
    assert s["KAIWA_EMAIL_SWEEP_SECONDS"] == 30
    assert s["KAIWA_BASE_URL"] == "http://127.0.0.1:8000"
    assert s["CELERY_TASK_ALWAYS_EAGER"] is True


def test_email_url_configures_smtp(tmp_path):
    s = settings_with(
        tmp_path,
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
    s = settings_with(tmp_path, EMAIL_HOST="mail.example.com", EMAIL_PORT="465", EMAIL_USE_SSL="1")
    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (s["EMAIL_HOST"], s["EMAIL_PORT"], s["EMAIL_USE_SSL"]) == ("mail.example.com", 465, True)
    assert s["EMAIL_TIMEOUT"] == 30


def test_a_broker_url_turns_eager_mode_off(tmp_path):
    s = settings_with(tmp_path, CELERY_BROKER_URL="amqp://guest@127.0.0.1:5672//")
    assert s["CELERY_BROKER_URL"] == "amqp://guest@127.0.0.1:5672//"
    assert s["CELERY_TASK_ALWAYS_EAGER"] is False


@pytest.mark.parametrize("url", ["gopher://mail.example.com"])
def test_an_unknown_email_url_is_refused(tmp_path, url):
    done = subprocess.run(
        [KAIWA, "manage", "check"],
        env=base_env(KAIWA_DATA_DIR=str(tmp_path), EMAIL_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "EMAIL_URL" in done.stderr

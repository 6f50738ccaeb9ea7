"""The Celery worker logs through Django's LOGGING: a real ``kaiwa worker`` on Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid

import pytest

from tests.kaiwa_process import KAIWA, base_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

# kaiwa.logs' plain format: "<date> <time.microseconds> <LEVEL> <logger>: <message>".
READY_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} INFO celery\.apps\.worker: celery@\S+ ready\.$",
    re.MULTILINE,
)
# Celery's own format, "[2025-01-01 12:00:00,000: INFO/MainProcess] ...".
CELERY_FORMAT = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: \w+/\w+\]", re.MULTILINE)


def test_it_logs_in_kaiwas_format(redis_url, tmp_path):
    env = base_env(
        REDIS_URL=redis_url,
        KAIWA_REDIS_PREFIX=f"kaiwa-test-{uuid.uuid4().hex[:10]}",
        KAIWA_DATA_DIR=str(tmp_path / "data"),
    )
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                KAIWA,
                "worker",
                "--no-beat",
                "--concurrency=1",
                "--without-mingle",
                "--without-gossip",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while b" ready." not in log_path.read_bytes() and worker.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(15)
    text = log_path.read_text()
    assert READY_LINE.search(text), text
    assert not CELERY_FORMAT.search(text), text

"""Real ``kaiwa serve`` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
KAIWA = str(Path(sys.executable).with_name("kaiwa"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """The test process environment: no inherited Kaiwa/Django settings but
    production's (debug off) with a test secret over plain HTTP, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAIWA_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_"))
    }
    env.update(
        DJANGO_SECRET_KEY="tests-only-secret-key-" + "k" * 40,
        KAIWA_HTTPS="0",
        # A module's server makes many rooms through a few users; tests of the
        # room budgets (tests/chat/test_room_limits.py) set their own.
        KAIWA_ROOM_CREATE_RATE_PER_MINUTE="0",
        KAIWA_MAX_ROOMS_PER_USER="0",
        # Tests sign many users in from 127.0.0.1; tests of the limit set their own.
        KAIWA_SIGNIN_RATE_PER_IP="100000/m",
        # As tests/settings.py: no `presence` frames racing scripted sequences.
        KAIWA_PRESENCE_MAX_MEMBERS="0",
    )
    env.update(extra)
    return env


def services_env(tmp: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of a Kaiwa on PostgreSQL and Redis, with its own Redis
    prefix (so that test runs sharing a Redis never see each other)."""
    return base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        KAIWA_REDIS_PREFIX=f"kaiwa-test-{uuid.uuid4().hex[:10]}",
        KAIWA_DATA_DIR=str(tmp / "data"),
        **extra,
    )


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``kaiwa manage ARGS`` with ``env``; returns stdout, raises on failure."""
    done = subprocess.run(
        [KAIWA, "manage", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"kaiwa manage {args} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def create_users(env: dict[str, str], *names: str) -> None:
    """Create users ``name`` with password ``pw-<name>-123`` in the env's database."""
    code = (
        "from django.contrib.auth.models import User\n"
        f"for n in {list(names)!r}:\n"
        "    User.objects.filter(username=n).exists() or "
        "User.objects.create_user(n, email=n+'@example.com', password='pw-'+n+'-123')\n"
    )
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "shell", "-c", code)


def password(name: str) -> str:
    return f"pw-{name}-123"


class KaiwaServer:
    """A ``kaiwa serve`` subprocess on a free port with its own environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, *args: str) -> KaiwaServer:
        """Launch and wait until it answers HTTP (``args``: more ``kaiwa serve`` options)."""
        return self.launch(*args).wait_ready(timeout)

    def launch(self, *args: str) -> KaiwaServer:
        """Start the process without waiting for it (``wait_ready`` does)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(
            [KAIWA, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> KaiwaServer:
        """Return once the server answers HTTP; raises RuntimeError (with its
        log) when it exits or does not answer within ``timeout`` seconds."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kaiwa serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.http + "/accounts/login/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kaiwa serve did not start: {self.log_path.read_text()}")

    def token(self, name: str) -> str:
        answer = httpx.post(
            self.http + "/api/auth/token", json={"username": name, "password": password(name)}
        )
        answer.raise_for_status()
        return answer.json()["token"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

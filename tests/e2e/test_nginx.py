"""Kaiwa behind Debian's nginx with the repository's proxy configuration
(deploy/nginx/kaiwa-proxy.conf) in front of two `kaiwa serve` processes on
PostgreSQL and Redis: WebSockets through the proxy, X-Forwarded-For believed
from the proxy only, and a backend restarted with SIGTERM while clients
resume through nginx with nothing lost."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.kaiwa_process import REPO, KaiwaServer, create_users, free_port, services_env
from tests.wsclient import Client, bearer, room_name

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_redis]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """nginx in the foreground with a config of its own: an upstream of the
    given backends and a server that includes the repository's proxy file."""

    def __init__(self, tmp: Path, backends: list[KaiwaServer]) -> None:
        self.port = free_port()
        self.tmp = tmp
        servers = "\n".join(
            f"    server 127.0.0.1:{b.port} max_fails=1 fail_timeout=2s;" for b in backends
        )
        (tmp / "logs").mkdir(exist_ok=True)
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(
            f"""
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    upstream kaiwa_backends {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        include {REPO}/deploy/nginx/kaiwa-proxy.conf;
    }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.tmp), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "logs" / "stderr.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(self.http + "/healthz", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError((self.tmp / "logs" / "error.log").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def site(postgres_url, redis_url, tmp_path_factory) -> Iterator[tuple[Nginx, list[KaiwaServer]]]:
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    tmp = tmp_path_factory.mktemp("nginx")
    env = services_env(
        tmp,
        postgres_url,
        redis_url,
        FORWARDED_ALLOW_IPS="127.0.0.1",
        KAIWA_CONNECT_RATE_PER_IP="0.02",  # a window of 2 handshakes per 100 s
        KAIWA_CONNECT_BURST_PER_IP="2",
    )
    create_users(env, "alice", "bob")
    backends = [KaiwaServer(env, tmp / f"serve-{n}.log").start() for n in ("a", "b")]
    proxy = Nginx(tmp, backends).start()
    yield proxy, backends
    proxy.stop()
    for backend in backends:
        backend.stop()


async def handshake(
    target: Nginx | KaiwaServer, room: str, token: str, source: str, **headers: str
) -> int:
    """The HTTP status of a WebSocket handshake to ``target`` from local
    address ``source`` (101 when it was accepted)."""
    try:
        client = await Client.open(
            target,
            room,
            token=token,
            headers=headers,
            local_addr=(source, 0),
        )
    except InvalidStatus as refused:
        return refused.response.status_code
    await client.close()
    return 101


async def test_websockets_and_rest_through_nginx(site):
    proxy, backends = site
    token = backends[0].token("alice")
    room = room_name()
    client = await Client.join(proxy, room, token=token, local_addr=("127.0.0.5", 0))
    async with httpx.AsyncClient(
        base_url=proxy.http, headers=bearer(token), trust_env=False
    ) as http:
        posted = await http.post(f"/api/rooms/{room}/messages/", json={"message": "via nginx"})
        assert posted.status_code == 201, posted.text
        assert (await client.expect("message"))["message"] == "via nginx"
        assert (await http.get("/readyz")).status_code == 200
    await client.close()


async def test_forwarded_for_is_believed_from_the_proxy_only(site):
    proxy, backends = site
    token = backends[0].token("bob")
    room = room_name()
    # Through nginx the per-address window keys on the real client address.
    assert [await handshake(proxy, room, token, "127.0.0.3") for _ in range(3)] == [
        101,
        101,
        429,
    ]
    assert await handshake(proxy, room, token, "127.0.0.4") == 101  # another client: its own window
    # Straight to a backend from an untrusted address, a forged header changes nothing.
    direct = backends[1]
    got = [
        await handshake(direct, room, token, "127.0.0.2", **{"X-Forwarded-For": f"10.0.0.{n}"})
        for n in range(3)
    ]
    assert got == [101, 101, 429]


async def test_a_backend_restarted_with_sigterm_loses_nothing_through_nginx(site):
    proxy, backends = site
    token = backends[0].token("alice")
    room = room_name()
    total = 60
    seen: dict[int, list[int]] = {}
    resumed = []  # (listener, after) of every reconnection

    async def listener(n: int) -> None:
        last = 0
        got = seen.setdefault(n, [])
        attempts = 0
        while last < total:
            # A new address per attempt: the module's connect window is 2 per
            # address, and this test is about resuming, not about that limit.
            attempts += 1
            source = f"127.{n + 1}.{attempts // 250}.{attempts % 250 + 1}"
            try:
                client = await Client.open(
                    proxy,
                    room,
                    token=token,
                    after=last,
                    local_addr=(source, 0),
                )
            except (OSError, InvalidStatus):
                await asyncio.sleep(0.2)
                continue
            try:
                while last < total:
                    frame = await client.recv(30)
                    if frame["type"] == "message":
                        got.append(frame["seq"])
                        last = frame["seq"]
            except ConnectionClosed:
                resumed.append((n, last))
                await asyncio.sleep(0.1)  # 1012 from the restarting backend: resume
            finally:
                await client.close()

    async def poster() -> None:
        async with httpx.AsyncClient(
            base_url=proxy.http, headers=bearer(token), trust_env=False
        ) as http:
            for i in range(total):
                while True:  # a retry with the same client_id stores nothing twice
                    try:
                        answer = await http.post(
                            f"/api/rooms/{room}/messages/",
                            json={"message": f"m{i}", "client_id": f"c{i}"},
                        )
                        if answer.status_code in (200, 201):
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.05)

    listeners = [asyncio.create_task(listener(n)) for n in range(6)]
    await asyncio.sleep(1.0)
    posting = asyncio.create_task(poster())
    await asyncio.sleep(1.0)
    await asyncio.to_thread(backends[0].stop, signal.SIGTERM)  # clients on it resume via b
    await asyncio.to_thread(backends[0].start)
    await asyncio.wait_for(posting, 60)
    await asyncio.wait_for(asyncio.gather(*listeners), 60)
    for n, seqs in seen.items():
        assert seqs == list(range(1, total + 1)), (n, seqs)  # every message once, in order
    # The restart did cut some sockets mid-stream, and they resumed through nginx.
    assert any(0 < after < total for _, after in resumed), resumed

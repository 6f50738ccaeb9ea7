"""Revocations made in another process on embedded defaults (a shell, a
management command: no shared channel layer) still close the server's open
sockets within seconds, relayed through the database (kaiwa.chat.realtime.relay)."""

import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.kaiwa_process import manage
from tests.wsclient import joined_sync

pytestmark = pytest.mark.e2e


def closed_within(ws, seconds):
    """(close code, seconds it took), reading and dropping frames until then."""
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            ws.recv(timeout=seconds)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None, time.monotonic() - start
    except TimeoutError:
        pass
    return None, time.monotonic() - start


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("Membership.objects.filter(room__slug='vault', user__username='bob').delete()", 4403),
        ("u = User.objects.get(username='bob'); u.is_active = False; u.save()", 4401),
        ("u = User.objects.get(username='bob'); u.set_password('x-new-pass-9'); u.save()", 4401),
    ],
)
def test_a_change_made_in_a_shell_closes_the_open_socket(kaiwa_server, change, code):
    env = kaiwa_server.env
    token = kaiwa_server.token("bob")
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "from kaiwa.chat.models import Membership, Room\n"
        "room = Room.objects.create(slug='vault', private=True)\n"
        "Membership.objects.create(room=room, user=User.objects.get(username='bob'))\n",
    )
    with joined_sync(kaiwa_server, "vault", token=token) as ws:
        manage(
            env,
            "shell",
            "-c",
            "from django.contrib.auth.models import User\n"
            "from kaiwa.chat.models import Membership\n" + change,
        )
        got, took = closed_within(ws, 8)
    assert got == code
    assert took < 5  # the seq check's period (2 s) plus the shell's own start

"""``python -m bench.steps [--users N] [--repeat R]``: queries and
milliseconds of each database step of the socket path (join, post, read),
alone and batched, printed as JSON.

Run by ``python -m bench --scenarios steps`` in each Kaiwa target's
environment (SQLite, or PostgreSQL + Redis). Each step calls the service the
server calls on its database threads, on a fresh room with ``--users``
members:

- join: ``selectors.room_admit_batch`` with one handshake (Bearer token), and
  with all of them at once (what a connect storm makes of it);
- post: ``services.message_create_batch`` with one message, and with 100
  (group commit); the broadcast on commit is left out (it runs on the event
  loop, not the database thread);
- read: ``services.membership_read`` (one position, its own transaction: the
  REST call), and ``services.membership_read_batch`` with every member's
  position (what the server stores each KAIWA_READ_FLUSH_SECONDS).

Queries are counted with Django's ``CaptureQueriesContext``; milliseconds are
the median of ``--repeat`` timed runs without capture, divided by the items
per call.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.database import kaiwa_database_setup
from kaiwa.chat.realtime import publish


def measure(call: Callable[[], Any], items: int, repeat: int) -> dict[str, float]:
    """Queries per call and median milliseconds per item of ``call()``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return {
        "items": items,
        "queries": len(queries),
        "ms_per_item": statistics.median(times) * 1000 / items,
    }


def steps_measure(*, users: int, repeat: int) -> dict[str, Any]:
    """``{"vendor": database vendor, "steps": {step: measure(...)}}`` for a
    new room of ``users`` new members, each with an API token."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from kaiwa.accounts.services import token_create_batch
    from kaiwa.chat import selectors, services
    from kaiwa.chat.models import Membership, Room

    publish.publish_message = lambda *a, **k: None
    tag = secrets.token_hex(4)
    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"steps-{tag}-{i}", password="!") for i in range(users)]
    )
    people = list(user_model.objects.filter(username__startswith=f"steps-{tag}-"))
    keys = token_create_batch(users=people, name="bench")
    tokens = [keys[u.pk] for u in people]
    room = Room.objects.create(slug=f"steps-{tag}", title="steps")
    Membership.objects.bulk_create([Membership(room=room, user=u) for u in people])
    one = [selectors.Admission(slug=room.slug, token=tokens[0])]
    every = [selectors.Admission(slug=room.slug, token=t) for t in tokens]

    def post(count: int) -> Callable[[], Any]:
        batch = [
            services.Post(room=room, user=people[i % users], username="x", text="m")
            for i in range(count)
        ]
        return lambda: services.message_create_batch(posts=batch)

    counter = iter(range(1, 10**9))
    moving = iter(range(1, 10**9))

    def read_all() -> None:  # every position moves up by one each call
        seq = next(moving)
        services.membership_read_batch(positions={(room.pk, u.pk): seq for u in people})

    steps = {
        "join": measure(lambda: selectors.room_admit_batch(admissions=one), 1, repeat),
        f"join x{users}": measure(
            lambda: selectors.room_admit_batch(admissions=every), users, repeat
        ),
        "post": measure(post(1), 1, repeat),
        "post x100": measure(post(100), 100, repeat),
        "read": measure(
            lambda: services.membership_read(room=room, user=people[0], seq=next(counter)),
            1,
            repeat,
        ),
        f"read x{users}": measure(read_all, users, repeat),
    }
    return {"vendor": connection.vendor, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.steps", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    kaiwa_database_setup()
    print(json.dumps(steps_measure(users=args.users, repeat=args.repeat)))


if __name__ == "__main__":
    main()

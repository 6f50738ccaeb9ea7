"""``python -m bench.retention_cost [--messages N] [--batch B]``: what retention
costs (kaiwa.chat.retention): a room of N old messages (one in ten with a
reaction) in the database of ``DATABASE_URL`` (or the embedded SQLite),
purged by ``room_retention_apply`` with batches of B seqs, each batch timed.

Prints one ``FIGURES`` line: batches, total seconds, and the per-batch
median, p99 and max in milliseconds (a batch holds the room's row lock, so
that is what a post to the room may wait). Use a scratch database: it
creates the user ``retention-bench`` and the room ``retention-bench``.
"""

import argparse
import time
from datetime import timedelta

from bench.database import kaiwa_database_setup


def retention_cost(*, messages: int, batch: int) -> str:
    """Fill the room, purge it, and return the FIGURES line."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from kaiwa.chat import retention
    from kaiwa.chat.models import Message, Reaction, Room

    user, _ = get_user_model().objects.get_or_create(username="retention-bench")
    room, _ = Room.objects.get_or_create(slug="retention-bench")
    Message.objects.filter(room=room).delete()
    old = timezone.now() - timedelta(days=100)
    Message.objects.bulk_create(
        [
            Message(room=room, seq=seq, author=user, username=user.username, text=f"message {seq}",
                    html=f"<p>message {seq}</p>", created_at=old)
            for seq in range(1, messages + 1)
        ],
        batch_size=5000,
    )  # fmt: skip
    reacted = Message.objects.filter(room=room, seq__lte=messages // 10).values_list(
        "pk", flat=True
    )
    Reaction.objects.bulk_create(
        [Reaction(message_id=pk, user=user, username=user.username, emoji="+1") for pk in reacted],
        batch_size=5000,
    )
    Room.objects.filter(pk=room.pk).update(last_seq=messages, purged_seq=0)
    room.refresh_from_db()

    times: list[float] = []
    batch_delete = retention._batch_delete

    def timed(*args: int) -> tuple[int, int, int]:
        started = time.perf_counter()
        try:
            return batch_delete(*args)
        finally:
            times.append(time.perf_counter() - started)

    retention._batch_delete = timed  # type: ignore[assignment]
    started = time.perf_counter()
    try:
        with override_settings(KAIWA_RETENTION_DAYS=30, KAIWA_RETENTION_BATCH=batch):
            done = retention.room_retention_apply(room=room, now=timezone.now())
    finally:
        retention._batch_delete = batch_delete
    total = time.perf_counter() - started
    times.sort()
    ms = [t * 1000 for t in (times[len(times) // 2], times[int(len(times) * 0.99)], times[-1])]
    return (
        f"FIGURES retention {connection.vendor}: {done.messages} messages "
        f"({len(reacted)} with a reaction) in {len(times)} batches of {batch}: "
        f"{total:.1f} s, per batch median {ms[0]:.0f} ms, p99 {ms[1]:.0f} ms, max {ms[2]:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retention_cost", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    options = parser.parse_args()
    kaiwa_database_setup()
    print(retention_cost(messages=options.messages, batch=options.batch))


if __name__ == "__main__":
    main()

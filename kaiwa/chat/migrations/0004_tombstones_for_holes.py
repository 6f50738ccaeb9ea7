"""A message row deleted before room events existed (in the admin, a shell)
left a hole in its room's seq: a resume skipped it silently and a feed
waiting for it re-queried the database forever. Each hole becomes a
tombstone: a deleted message with no text, so that seq is gapless again.
Existing messages get their ``html`` (kaiwa.chat.formatting; every ``@name``
marked, as their rooms' past members are not known)."""

from django.db import migrations
from django.utils import timezone


def holes_fill(apps, schema_editor):
    Room = apps.get_model("chat", "Room")
    Message = apps.get_model("chat", "Message")
    now = timezone.now()
    for room_id, last_seq in Room.objects.values_list("id", "last_seq").iterator():
        stored = set(Message.objects.filter(room_id=room_id).values_list("seq", flat=True))
        missing = [seq for seq in range(1, last_seq + 1) if seq not in stored]
        Message.objects.bulk_create(
            [
                Message(room_id=room_id, seq=seq, username="", text="", deleted_at=now)
                for seq in missing
            ],
            batch_size=1000,
        )


def html_fill(apps, schema_editor):
    from kaiwa.chat.formatting import message_html

    Message = apps.get_model("chat", "Message")
    todo = Message.objects.filter(html="", deleted_at__isnull=True).exclude(text="")
    batch = []
    for message in todo.only("pk", "text").iterator(chunk_size=1000):
        message.html = message_html(text=message.text)
        batch.append(message)
        if len(batch) >= 1000:
            Message.objects.bulk_update(batch, ["html"])
            batch = []
    Message.objects.bulk_update(batch, ["html"])


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_room_events")]

    operations = [
        migrations.RunPython(holes_fill, migrations.RunPython.noop),
        migrations.RunPython(html_fill, migrations.RunPython.noop),
    ]

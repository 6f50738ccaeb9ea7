"""Give every existing user his ``UsernameClaim``.

Users are taken oldest first: the first holder of a key keeps it; a later
user with the same key (``Ünal`` beside ``ünal``, possible on SQLite before
this table) keeps his name and holds ``<key>#<user id>``, unique too, so that
the migration never fails and no one is renamed.
"""

from django.conf import settings
from django.db import migrations

from kaiwa.accounts.validators import username_key

BATCH_USERS = 1000


def claims_fill(apps, schema_editor):
    User = apps.get_model(settings.AUTH_USER_MODEL)
    UsernameClaim = apps.get_model("accounts", "UsernameClaim")
    taken = set(UsernameClaim.objects.values_list("key", flat=True))
    claimed = UsernameClaim.objects.values("user_id")
    users = User.objects.exclude(pk__in=claimed).order_by("pk").values_list("pk", "username")
    claims = []
    for pk, username in users.iterator(chunk_size=BATCH_USERS):
        key = username_key(username)
        key = f"{key}#{pk}" if key in taken else key
        taken.add(key)
        claims.append(UsernameClaim(user_id=pk, key=key))
        if len(claims) == BATCH_USERS:
            UsernameClaim.objects.bulk_create(claims)
            claims = []
    UsernameClaim.objects.bulk_create(claims)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(claims_fill, migrations.RunPython.noop),
    ]

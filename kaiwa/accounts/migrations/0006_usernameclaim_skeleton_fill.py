"""Give every user's ``UsernameClaim`` its skeleton (``username_skeleton``).

Users are taken oldest first: the first holder of a skeleton keeps it; a
later user with the same one (``aIice`` beside ``alice``, possible before
skeletons) keeps his name and holds ``<skeleton>#<user id>``, unique too, so
that the migration never fails and no one is renamed. ``skeletons_fill``
recomputes every claim, so it may be run again after an upgrade of Python's
or confusable_homoglyphs' Unicode data. (Apart from 0005's new column: on
PostgreSQL an index cannot be built in a transaction that updated the rows.)
"""

from django.db import migrations, models
from django.db.models.functions import Cast, Concat

from kaiwa.accounts.validators import username_skeleton

BATCH_USERS = 1000


def skeletons_fill(apps, schema_editor):
    UsernameClaim = apps.get_model("accounts", "UsernameClaim")
    # A placeholder of each claim's own first, so that no new skeleton
    # collides with another claim's old one (usernames hold no "#").
    UsernameClaim.objects.update(
        skeleton=Concat(models.Value("#"), Cast("user_id", output_field=models.TextField()))
    )
    claims = UsernameClaim.objects.order_by("user_id").values_list("pk", "user_id", "user__username")
    taken: set[str] = set()
    batch = []
    for pk, user_id, username in claims.iterator(chunk_size=BATCH_USERS):
        skeleton = username_skeleton(username)
        skeleton = f"{skeleton}#{user_id}" if skeleton in taken else skeleton
        taken.add(skeleton)
        batch.append(UsernameClaim(pk=pk, skeleton=skeleton))
        if len(batch) == BATCH_USERS:
            UsernameClaim.objects.bulk_update(batch, ["skeleton"])
            batch = []
    UsernameClaim.objects.bulk_update(batch, ["skeleton"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_usernameclaim_skeleton"),
    ]

    operations = [
        migrations.RunPython(skeletons_fill, migrations.RunPython.noop),
    ]

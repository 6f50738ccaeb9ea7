"""The skeleton column of ``UsernameClaim``, filled by 0006."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_apitoken_from_plaintext"),
    ]

    operations = [
        migrations.AddField(
            model_name="usernameclaim",
            name="skeleton",
            field=models.TextField(null=True, unique=True),
        ),
    ]

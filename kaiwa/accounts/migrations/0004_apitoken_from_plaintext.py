"""Move the plaintext API tokens of rest_framework.authtoken (Kaiwa before
hashed tokens) into accounts.ApiToken as digests, then drop their table, so
that no token is left readable in the database. Existing tokens keep working
until KAIWA_TOKEN_TTL_DAYS from the migration (never, with a TTL of 0); their
owners see them in their list as "before hashing" and may revoke them."""

from django.db import migrations

OLD_TABLE = "authtoken_token"


def tokens_hash(apps, schema_editor):
    from django.utils import timezone
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS, knox_settings

    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("accounts", "ApiToken")
    ttl = knox_settings.TOKEN_TTL
    quoted = schema_editor.quote_name(OLD_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {quoted}")
        rows = cursor.fetchall()
    ApiToken.objects.bulk_create(
        [
            ApiToken(
                digest=hash_token(key),
                token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
                user_id=user_id,
                expiry=timezone.now() + ttl if ttl is not None else None,
                name="before hashing",
            )
            for key, user_id in rows
        ],
        ignore_conflicts=True,
    )
    schema_editor.execute(f"DROP TABLE {quoted}")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_apitoken")]

    operations = [migrations.RunPython(tokens_hash, migrations.RunPython.noop)]

"""Move the plaintext API tokens of rest_framework.authtoken (Kaiwa before
hashed tokens) into accounts.ApiToken as digests, then drop their table, so
that no token is left readable in the database. Existing tokens keep working
and never expire (they were issued without an expiry); their owners see them
in their list as "before hashing" and may revoke them."""

from django.db import migrations

OLD_TABLE = "authtoken_token"


def tokens_hash(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("accounts", "ApiToken")
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
                expiry=None,
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

"""The GIN index of full-text search on PostgreSQL (selectors.message_search):
the expression Django's ``SearchVector("text", config="simple")`` compiles
to, so that the planner uses it. Nothing on SQLite (no such index type)."""

from django.db import migrations

INDEX = "chat_message_text_search"


def index_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON chat_message "
            "USING gin (to_tsvector('simple'::regconfig, COALESCE(text, '')))"
        )


def index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_relayed_event")]

    operations = [migrations.RunPython(index_create, index_drop)]

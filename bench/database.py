"""Django on Kaiwa's own settings, for the scripts the runner starts in a
target's environment (bench.tokens, bench.steps)."""

import os


def kaiwa_database_setup() -> None:
    """Set Django up on ``config.settings`` as ``kaiwa serve`` does (so on the
    environment's DATABASE_URL or KAIWA_DATA_DIR: the target's database) and
    apply Kaiwa's migrations. No benchmark app is installed: the scripts only
    call Kaiwa's models and public services."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from kaiwa.cli import data_dir_create

    data_dir_create()
    call_command("migrate", interactive=False, verbosity=0)

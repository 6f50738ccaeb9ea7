"""``kaiwa manage send_missed_message_emails``: send every due batch now, in this process.

The same sweep the worker's beat runs, for a deployment without a broker (run
it from cron) or by hand. Safe beside running workers: rows are claimed with
``SKIP LOCKED``, so no email goes twice.
"""

from typing import Any

from django.core.management.base import BaseCommand

from kaiwa.notifications import services


class Command(BaseCommand):
    help = "Send the missed-message emails that are due."

    def handle(self, *args: Any, **options: Any) -> None:
        sent = services.missed_message_emails_send_due()
        self.stdout.write(f"{sent} missed-message email(s) sent")

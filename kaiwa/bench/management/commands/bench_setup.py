"""``kaiwa manage bench_setup N``: N users ``bench-<i>`` with new API tokens, as JSON."""

import json

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from kaiwa.accounts.services import token_create_batch


class Command(BaseCommand):
    help = "Create N benchmark users with tokens and print the tokens as a JSON list."

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)

    def handle(self, *args, count: int, **options):
        call_command("migrate", interactive=False, verbosity=0)
        User = get_user_model()
        names = [f"bench-{i}" for i in range(count)]
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        User.objects.bulk_create(
            [User(username=n, password="!") for n in names if n not in existing], batch_size=1000
        )
        users = list(User.objects.filter(username__in=names).order_by("id"))
        # Tokens are stored hashed: every run makes new ones (the old ones stay valid).
        keys = token_create_batch(users=users, name="bench")
        by_name = {u.username: keys[u.pk] for u in users}
        self.stdout.write(json.dumps([by_name[n] for n in names]))

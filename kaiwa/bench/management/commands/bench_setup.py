"""``kaiwa manage bench_setup N``: N users ``bench-<i>`` with API tokens, as JSON."""

import json
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


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
        have = set(Token.objects.filter(user__in=users).values_list("user_id", flat=True))
        Token.objects.bulk_create(
            [Token(user=u, key=secrets.token_hex(20)) for u in users if u.pk not in have],
            batch_size=1000,
        )
        keys = dict(Token.objects.filter(user__in=users).values_list("user__username", "key"))
        self.stdout.write(json.dumps([keys[n] for n in names]))

"""``python -m bench.tokens N``: N users ``bench-<i>`` with new API tokens,
printed as a JSON list of the tokens (user ``bench-0``'s first).

The runner runs it in each Kaiwa target's environment, so the users and
tokens land in the database that target's server reads.
"""

import argparse
import json

from bench.database import kaiwa_database_setup


def bench_tokens_create(*, count: int) -> list[str]:
    """Create the users ``bench-0`` .. ``bench-<count - 1>`` that are missing
    and one new API token each (``token_create_batch``, named "bench");
    returns the tokens in user order. Tokens are stored hashed, so every run
    makes new ones (the old ones stay valid)."""
    from django.contrib.auth import get_user_model

    from kaiwa.accounts.services import token_create_batch

    user_model = get_user_model()
    names = [f"bench-{i}" for i in range(count)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    user_model.objects.bulk_create(
        [user_model(username=n, password="!") for n in names if n not in existing],
        batch_size=1000,
    )
    users = list(user_model.objects.filter(username__in=names).order_by("id"))
    keys = token_create_batch(users=users, name="bench")
    by_name = {u.username: keys[u.pk] for u in users}
    return [by_name[n] for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tokens", description=__doc__)
    parser.add_argument("count", type=int)
    count = parser.parse_args().count
    kaiwa_database_setup()
    print(json.dumps(bench_tokens_create(count=count)))


if __name__ == "__main__":
    main()

"""GET /api/search/: only rooms you can see, deleted messages never; full-text
on PostgreSQL (checked in a real process), every word on SQLite."""

import json

import pytest
from django.test import Client

from kaiwa.chat import services
from kaiwa.chat.models import Membership
from tests.factories import RoomFactory
from tests.kaiwa_process import base_env, manage


def say(room, user, text):
    return services.message_create(room=room, user=user, username=user.username, text=text)[0]


def search(user, **params):
    client = Client()
    client.force_login(user)
    return client.get("/api/search/", params)


@pytest.mark.django_db
def test_it_finds_in_visible_rooms_only_and_never_deleted_messages(alice, bob):
    lobby, secret = RoomFactory(slug="lobby"), RoomFactory(slug="secret", private=True)
    Membership.objects.create(room=secret, user=alice)
    say(lobby, alice, "deploy the Release today")
    say(secret, alice, "release notes, private")
    gone = say(lobby, alice, "release the hounds")
    say(lobby, alice, "nothing here")
    services.message_delete(room=lobby, user=alice, message_id=gone.pk)
    found = search(bob, q="release").json()["messages"]
    assert [m["message"] for m in found] == ["deploy the Release today"]
    mine = search(alice, q="release").json()["messages"]
    assert {m["room"] for m in mine} == {"lobby", "secret"}
    assert [m["message"] for m in search(alice, q="release private").json()["messages"]] == [
        "release notes, private"
    ]
    assert [m["room"] for m in search(alice, q="release", room="secret").json()["messages"]] == [
        "secret"
    ]
    assert search(bob, q="release", room="secret").status_code == 404
    assert search(bob, q="release", limit=1000).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": " "}, {"q": "x" * 201}])
def test_it_needs_a_query(alice, params):
    answer = search(alice, **params)
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_request"


@pytest.mark.django_db
def test_it_limits_each_users_searches(alice, bob, settings):
    settings.KAIWA_SEARCH_RATE = "3/m"
    for _ in range(3):
        assert search(alice, q="anything").status_code == 200
    refused = search(alice, q="anything")
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert search(bob, q="anything").status_code == 200  # per user: bob has his own


@pytest.mark.django_db
def test_the_search_limit_can_be_turned_off(alice, settings):
    settings.KAIWA_SEARCH_RATE = "0"
    assert all(search(alice, q="x").status_code == 200 for _ in range(5))


@pytest.mark.e2e
@pytest.mark.postgres_redis
def test_postgresql_full_text_search_ranks_and_uses_its_index(postgres_url, tmp_path):
    env = base_env(DATABASE_URL=postgres_url, KAIWA_DATA_DIR=str(tmp_path))
    manage(env, "migrate", "--noinput", "-v", "0")
    code = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from django.db import connection\n"
        "from kaiwa.chat import selectors, services\n"
        "from kaiwa.chat.models import Room\n"
        "u = User.objects.create_user('searcher', password='x')\n"
        "room = Room.objects.create(slug='s-room')\n"
        "for t in ['the cat sat', 'cat cat cat food', 'dogs only', 'a catalogue']:\n"
        "    services.message_create(room=room, user=u, username='searcher', text=t)\n"
        "found = selectors.message_search(user=u, query='cat', limit=10)\n"
        "cur = connection.cursor()\n"
        "cur.execute(\"SELECT indexname FROM pg_indexes WHERE indexname = 'chat_message_text_search'\")\n"
        "print(json.dumps({'found': [m.text for m in found], 'index': cur.fetchall()}))\n"
    )
    result = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
    assert result["found"] == ["cat cat cat food", "the cat sat"]  # ranked; words, not substrings
    assert result["index"] == [["chat_message_text_search"]]


@pytest.mark.e2e
@pytest.mark.postgres_redis
def test_postgresql_search_uses_at_most_ten_words_of_a_query(postgres_url, tmp_path):
    env = base_env(DATABASE_URL=postgres_url, KAIWA_DATA_DIR=str(tmp_path))
    manage(env, "migrate", "--noinput", "-v", "0")
    code = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from django.db import connection\n"
        "from django.test.utils import CaptureQueriesContext\n"
        "from kaiwa.chat import selectors, services\n"
        "from kaiwa.chat.models import Room\n"
        "u = User.objects.create_user('wordy', password='x')\n"
        "room = Room.objects.create(slug='w-room')\n"
        "services.message_create(room=room, user=u, username='wordy', text='cat food')\n"
        "query = ' or '.join(['cat'] + [f'w{n}' for n in range(60)])\n"
        "with CaptureQueriesContext(connection) as queries:\n"
        "    found = selectors.message_search(user=u, query=query, room=room, limit=10)\n"
        "sql = [q['sql'] for q in queries if 'websearch_to_tsquery' in q['sql']]\n"
        "print(json.dumps({'found': [m.text for m in found], 'sql': sql}))\n"
    )
    result = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
    assert result["found"] == ["cat food"]
    [sql] = result["sql"]
    assert "'cat or w0 or w1 or w2 or w3 or'" in sql  # the first 10 words, "or" included

"""kaiwa.chat.realtime.limits with a fake clock: token refill, forgetting idle buckets,
strikes, the per-user socket count."""

import pytest
import token_bucket.storage
from asgiref.sync import async_to_sync

from kaiwa.chat import quotas
from kaiwa.chat.realtime import limits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(token_bucket.storage.time, "monotonic", fake)
    monkeypatch.setattr(quotas.time, "monotonic", fake)
    return fake


async def test_it_passes_a_burst_then_the_refill_rate(settings, clock):
    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 2.0
    settings.KAIWA_RATE_BURST = 3
    sender = limits.SenderLimit("user:1")
    assert [await sender.check() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token at 2 per second
    assert [await sender.check(), await sender.check()] == [True, False]
    clock.now += 60  # refilled to the burst, not beyond
    assert [await sender.check() for _ in range(4)] == [True, True, True, False]


async def test_it_counts_strikes_in_a_row_and_a_pass_clears_them(settings, clock):
    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 1.0
    settings.KAIWA_RATE_BURST = 1
    settings.KAIWA_RATE_STRIKES = 2
    sender = limits.SenderLimit("user:7")
    assert await sender.check()
    assert not await sender.check()
    assert not await sender.check()
    assert not sender.exhausted
    clock.now += 1
    assert await sender.check()
    assert sender.strikes == 0
    assert not any([await sender.check() for _ in range(3)])
    assert sender.exhausted


async def test_sockets_of_one_user_share_a_bucket(settings, clock):
    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 1.0
    settings.KAIWA_RATE_BURST = 2
    first, second, other = (limits.SenderLimit(k) for k in ("user:1", "user:1", "user:2"))
    assert await first.check()
    assert await second.check()
    assert not await first.check()
    assert not await second.check()
    assert await other.check()


async def test_a_rate_of_zero_turns_the_limits_off(settings):
    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 0
    settings.KAIWA_CONNECT_RATE_PER_IP = 0
    settings.KAIWA_MAX_CONNECTIONS_PER_USER = 0
    assert all([await limits.SenderLimit("user:1").check() for _ in range(10_000)])
    assert all([await limits.connect_allowed("10.0.0.1") for _ in range(10_000)])
    assert all([await limits.user_socket_acquire(1, f"s{i}") for i in range(10_000)])


async def test_connect_buckets_are_per_address(settings, clock):
    settings.KAIWA_CONNECT_RATE_PER_IP = 0.5
    settings.KAIWA_CONNECT_BURST_PER_IP = 2
    assert [await limits.connect_allowed("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert await limits.connect_allowed("10.0.0.2")
    assert await limits.connect_allowed(None)  # no address: nothing to key on
    assert limits.retry_after_seconds() == 2


def test_idle_buckets_are_forgotten_without_changing_any_answer(clock):
    storage = quotas.ForgetfulMemoryStorage(sweep_seconds=10)
    limiter = token_bucket.Limiter(1.0, 5, storage)
    for ip in range(100):
        assert limiter.consume(f"10.0.0.{ip}", 5)
    assert len(storage) == 100
    clock.now += 5.0  # refilled (5 tokens at 1/s), but not yet swept
    assert limiter.consume("10.0.0.0", 5)
    clock.now += 5.0  # sweep: every bucket idle for >= 5 / 1 seconds is full again
    assert limiter.consume("10.0.0.1", 5)  # a forgotten bucket starts full, as it would be
    assert len(storage) == 1  # only the bucket just used
    assert not limiter.consume("10.0.0.1", 1)


async def test_user_socket_cap_counts_and_releases(settings):
    settings.KAIWA_MAX_CONNECTIONS_PER_USER = 2
    assert await limits.user_socket_acquire(1, "a")
    assert await limits.user_socket_acquire(1, "b")
    assert not await limits.user_socket_acquire(1, "c")
    assert await limits.user_socket_acquire(2, "d")
    await limits.user_socket_release(1, "a")
    assert await limits.user_socket_acquire(1, "e")
    await limits.user_socket_release(1, "b")
    await limits.user_socket_release(1, "e")
    assert limits.get_limits().sockets == {2: 1}


@pytest.mark.django_db
def test_rest_posts_share_the_sockets_message_budget(settings, clock):
    from django.test import Client

    from tests.factories import RoomFactory, UserFactory

    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 1.0
    settings.KAIWA_RATE_BURST = 3
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    RoomFactory(slug="lobby")
    socket = limits.SenderLimit(f"user:{alice.pk}")
    assert async_to_sync(socket.check)()  # one message over WebSocket
    client = Client()
    client.force_login(alice)

    def post(c):
        return c.post(
            "/api/rooms/lobby/messages/", {"message": "hi"}, content_type="application/json"
        )

    assert [post(client).status_code for _ in range(3)] == [201, 201, 429]
    refused = post(client)
    assert refused.json()["code"] == "rate_limited"
    assert not async_to_sync(socket.check)()  # the REST posts emptied the socket's bucket too
    other = Client()
    other.force_login(bob)
    assert post(other).status_code == 201  # per user
    clock.now += 1
    assert post(client).status_code == 201


async def test_a_dead_redis_lets_requests_through_and_says_so(settings, caplog):
    from kaiwa.chat.realtime import cluster_limits

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 1.0
    settings.KAIWA_RATE_BURST = 2
    settings.KAIWA_MAX_CONNECTIONS_PER_USER = 1
    cluster_limits._last_logged = 0.0
    cluster_limits._blocking_storage.cache_clear()
    cluster_limits._blocking_client.cache_clear()
    assert await limits.SenderLimit("user:1").check()
    assert await limits.SenderLimit("user:1").check()  # no window to count in: let through
    assert not await limits.SenderLimit("user:1").check()  # this process's bucket still counts
    assert await limits.connect_allowed("10.0.0.1")
    assert await limits.user_socket_acquire(1, "a")
    assert not await limits.user_socket_acquire(1, "b")  # this process still counts its own
    assert "Redis unavailable" in caplog.text


def test_the_batched_windows_are_the_limits_librarys_own(settings, redis_url):
    """kaiwa.chat.realtime.cluster_limits pipelines the library's moving-window script:
    the library's own limiter sees the same window, and a batch of hits
    answers as one hit after the other would."""
    import uuid

    from limits import RateLimitItemPerSecond
    from limits.strategies import MovingWindowRateLimiter

    from kaiwa.chat.realtime import cluster_limits

    settings.REDIS_URL = redis_url
    settings.KAIWA_REDIS_PREFIX = f"kaiwa-test-{uuid.uuid4().hex[:10]}"
    cluster_limits._blocking_storage.cache_clear()
    cluster_limits._blocking_client.cache_clear()
    try:
        item = RateLimitItemPerSecond(3, 10)
        batch = [("hit", (item, "user:1"))] * 4 + [("hit", (item, "user:2"))]
        assert cluster_limits._run_batch(batch) == [True, True, True, False, True]
        library = MovingWindowRateLimiter(cluster_limits._blocking_storage())
        assert library.get_window_stats(item, "user:1").remaining == 0
        assert not library.hit(item, "user:1")
        assert library.get_window_stats(item, "user:2").remaining == 2
    finally:
        cluster_limits._blocking_storage.cache_clear()
        cluster_limits._blocking_client.cache_clear()


def test_a_batch_of_socket_acquires_admits_up_to_the_cap_even_after_a_script_flush(
    settings, redis_url
):
    """The socket sets in one pipeline (kaiwa.chat.realtime.cluster_limits): a batch
    of acquires for one user admits exactly the cap, a release frees a slot
    for the next batch, a refresh keeps the set alive, and a Redis that lost
    its scripts (SCRIPT FLUSH, as after a restart) gets them again and answers
    the same batch."""
    import uuid

    from limits import RateLimitItemPerSecond

    from kaiwa.chat.realtime import cluster_limits

    settings.REDIS_URL = redis_url
    settings.KAIWA_REDIS_PREFIX = f"kaiwa-test-{uuid.uuid4().hex[:10]}"
    cluster_limits._blocking_storage.cache_clear()
    cluster_limits._blocking_client.cache_clear()
    client = cluster_limits._blocking_client()
    key = cluster_limits._socket_key("7")
    try:
        client.script_flush()
        item = RateLimitItemPerSecond(1, 10)
        batch = [("acquire", ("7", f"p:{n}", 2)) for n in range(4)]
        batch += [("hit", (item, "ip:10.0.0.9")), ("hit", (item, "ip:10.0.0.9"))]
        assert cluster_limits._run_batch(batch) == [True, True, False, False, True, False]
        assert client.zrange(key, 0, -1) == [b"p:0", b"p:1"]
        assert 0 < client.ttl(key) <= cluster_limits.SOCKET_TTL_SECONDS
        release_then_acquire = [("release", ("7", "p:0")), ("acquire", ("7", "p:4", 2))]
        assert cluster_limits._run_batch(release_then_acquire) == [True, True]
        assert sorted(client.zrange(key, 0, -1)) == [b"p:1", b"p:4"]
        client.expire(key, 5)
        assert cluster_limits._run_batch([("refresh", {"7": {"p:1", "p:4"}})]) == [True]
        assert client.ttl(key) > 5
        client.zadd(key, {"p:1": 1.0})  # lapsed long ago (its process died)
        assert cluster_limits._run_batch([("acquire", ("7", "p:5", 2))]) == [True]
        assert sorted(client.zrange(key, 0, -1)) == [b"p:4", b"p:5"]
    finally:
        client.delete(key)
        cluster_limits._blocking_storage.cache_clear()
        cluster_limits._blocking_client.cache_clear()


@pytest.mark.django_db
def test_a_rest_post_over_the_budget_says_when_to_retry(settings, clock):
    from django.test import Client

    from tests.factories import RoomFactory, UserFactory

    settings.KAIWA_RATE_MESSAGES_PER_SECOND = 0.25  # one token every 4 s
    settings.KAIWA_RATE_BURST = 1
    alice = UserFactory(username="alice")
    RoomFactory(slug="lobby")
    client = Client()
    client.force_login(alice)

    def post():
        return client.post(
            "/api/rooms/lobby/messages/", {"message": "hi"}, content_type="application/json"
        )

    assert post().status_code == 201
    refused = post()
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    assert refused["Retry-After"] == "4"

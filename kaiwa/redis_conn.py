"""Where Kaiwa's Redis is: one address (``REDIS_URL``) or a Redis Sentinel group.

Every Redis user in Kaiwa gets its connection here, so that one setting
moves them all behind Sentinel:

- ``REDIS_SENTINELS=host:port,host:port,...`` (the sentinels) and
  ``REDIS_SENTINEL_MASTER=<name>`` (the monitored master's name), with
  ``REDIS_SENTINEL_PASSWORD`` when the sentinels themselves ask for one
  (``requirepass`` in sentinel.conf). ``REDIS_URL`` then gives only the
  master's database number, username and password (``redis://:pw@any/0``:
  its host and port are ignored); unset, it stands as
  ``redis://<master name>/0``.
- Without ``REDIS_SENTINELS`` every client is ``from_url(REDIS_URL)`` as
  before.

Behind Sentinel each client asks a sentinel for the current master when it
connects (redis-py's ``SentinelConnectionPool``), so after a failover the
next connection goes to the promoted replica: the channel layer
(channels_redis's pub/sub layer, whose subscriptions redis-py renews on
reconnect), the cache (django-ratelimit's counters), the Celery broker
(kombu's ``sentinel://`` transport), presence, the cluster flood limits (the
``limits`` library's ``redis+sentinel://`` storage) and ``/readyz``.

The settings-time helpers (``sentinel_from_env``, ``channel_layer_host``,
``cache_options``, ``celery_broker``) take plain values, as config/settings.py
calls them before Django is set up; ``sync_client``, ``async_client`` and
``limits_storage`` read Django's settings.

TLS to the master through Sentinel (``rediss://`` with REDIS_SENTINELS) is
refused with ImproperlyConfigured: not supported yet.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:  # redis is imported when a client is made, not with the settings
    import redis
    import redis.asyncio
    import redis.sentinel

# Seconds a sentinel may take to connect and answer "who is the master?"
# before the client asks the next one.
SENTINEL_TIMEOUT_SECONDS = 1.0

# A sentinel's address: a host name, IPv4 address or [IPv6] address, and a port.
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d+)$")
_MASTER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class SentinelConfig:
    """A Sentinel group: ``sentinels`` as ``(host, port)`` pairs, the
    monitored ``master`` name, and the sentinels' own ``password`` ("" for
    none)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    password: str = ""


@dataclasses.dataclass(frozen=True)
class Target:
    """What ``REDIS_URL`` tells of the master behind Sentinel: its database
    number and credentials (None for none)."""

    db: int
    username: str | None
    password: str | None

    def kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for redis-py (``db``, and
        ``username``/``password`` when set)."""
        found: dict[str, Any] = {"db": self.db}
        if self.username:
            found["username"] = self.username
        if self.password:
            found["password"] = self.password
        return found


def parse_sentinels(value: str) -> tuple[tuple[str, int], ...]:
    """``"host:port,host:port"`` (``[v6]:port`` for IPv6; spaces around the
    commas allowed) as ``((host, port), ...)``, in order, duplicates dropped.
    Raises ImproperlyConfigured on an empty list, a missing or
    out-of-range port (1-65535) or a malformed host."""
    found: list[tuple[str, int]] = []
    for raw in value.split(","):
        item = raw.strip()
        match = _HOST_PORT.match(item)
        port = int(match["port"]) if match else 0
        if match is None or not 0 < port < 65536:
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS must be host:port[,host:port...], got {item!r} in {value!r}"
            )
        pair = (match["v6"] or match["host"], port)
        if pair not in found:
            found.append(pair)
    return tuple(found)


def sentinel_from_env(environ: Mapping[str, str]) -> SentinelConfig | None:
    """The Sentinel group of ``REDIS_SENTINELS``, ``REDIS_SENTINEL_MASTER``
    and ``REDIS_SENTINEL_PASSWORD`` in ``environ``; None when
    REDIS_SENTINELS is unset or empty. Raises ImproperlyConfigured when it
    is malformed, when the master name is missing or malformed, or when
    REDIS_SENTINEL_MASTER or REDIS_SENTINEL_PASSWORD is set without
    REDIS_SENTINELS."""
    value = environ.get("REDIS_SENTINELS", "").strip()
    master = environ.get("REDIS_SENTINEL_MASTER", "").strip()
    password = environ.get("REDIS_SENTINEL_PASSWORD", "")
    if not value:
        if master or password:
            raise ImproperlyConfigured(
                "REDIS_SENTINEL_MASTER and REDIS_SENTINEL_PASSWORD need REDIS_SENTINELS "
                "(host:port,host:port...)"
            )
        return None
    sentinels = parse_sentinels(value)
    if not master:
        raise ImproperlyConfigured(
            "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the master's name in sentinel.conf"
        )
    if not _MASTER_NAME.match(master):
        raise ImproperlyConfigured(
            f"REDIS_SENTINEL_MASTER must be letters, digits, '.', '_' or '-', got {master!r}"
        )
    return SentinelConfig(sentinels, master, password)


def target_of(url: str) -> Target:
    """The database and credentials of ``url`` (``redis://[user:pw@]host[:port][/db]``)
    for a master found through Sentinel. Raises ImproperlyConfigured on
    another scheme (``rediss://``: TLS through Sentinel is not supported;
    ``unix://``) or a database that is not a number."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ImproperlyConfigured(
            f"With REDIS_SENTINELS, REDIS_URL must be redis://[:password@]any[/db] "
            f"(TLS and unix sockets through Sentinel are not supported), got {parts.scheme}://"
        )
    path = parts.path.strip("/")
    if not (path == "" or path.isdigit()):
        raise ImproperlyConfigured(f"REDIS_URL: the database must be a number, got {path!r}")
    return Target(
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def sentinel_kwargs(config: SentinelConfig, **options: Any) -> dict[str, Any]:
    """Keyword arguments of the connections to the sentinels themselves: the
    ``socket_*`` of ``options`` (else SENTINEL_TIMEOUT_SECONDS to connect and
    answer) and the sentinels' password when there is one."""
    found: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
    }
    found.update({k: v for k, v in options.items() if k.startswith("socket_")})
    if config.password:
        found["password"] = config.password
    return found


# --- settings time (config/settings.py) ---------------------------------------------


def channel_layer_host(url: str, config: SentinelConfig | None) -> str | dict[str, Any]:
    """The entry of CHANNEL_LAYERS' ``hosts`` for channels_redis: ``url``
    itself without Sentinel, else the dict of its Sentinel form
    (``sentinels``, ``master_name``, ``sentinel_kwargs`` and the master's
    ``db``/credentials). Raises ImproperlyConfigured as ``target_of``."""
    if config is None:
        return url
    return {
        "sentinels": [list(pair) for pair in config.sentinels],
        "master_name": config.master,
        "sentinel_kwargs": sentinel_kwargs(config),
        "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        **target_of(url).kwargs(),
    }


def cache_options(config: SentinelConfig) -> dict[str, Any]:
    """Django RedisCache ``OPTIONS`` that find the master through Sentinel
    (LOCATION stays REDIS_URL, for its database and credentials)."""
    return {
        "pool_class": "kaiwa.redis_conn.SentinelCachePool",
        "sentinels": [list(pair) for pair in config.sentinels],
        "master_name": config.master,
        "sentinel_kwargs": sentinel_kwargs(config),
    }


def celery_broker(url: str, config: SentinelConfig) -> tuple[str, dict[str, Any]]:
    """Kombu's Sentinel broker for REDIS_URL ``url``: the URL
    ``sentinel://[:pw@]host:port/db;sentinel://...`` (the master's password
    in each) and the transport options it needs (``master_name``,
    ``sentinel_kwargs``). Raises ImproperlyConfigured as ``target_of``."""
    target = target_of(url)
    auth = ""
    if target.password is not None:
        user = quote(target.username or "", safe="")
        auth = f"{user}:{quote(target.password, safe='')}@"

    def bracket(host: str) -> str:
        return f"[{host}]" if ":" in host else host

    broker = ";".join(
        f"sentinel://{auth}{bracket(host)}:{port}/{target.db}" for host, port in config.sentinels
    )
    return broker, {"master_name": config.master, "sentinel_kwargs": sentinel_kwargs(config)}


# --- run time (Django's settings are set up) -------------------------------------


def configured() -> SentinelConfig | None:
    """The Sentinel group of Django's settings (REDIS_SENTINELS,
    REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD), None without one."""
    sentinels = getattr(settings, "REDIS_SENTINELS", None)
    if not sentinels:
        return None
    return SentinelConfig(
        tuple((str(h), int(p)) for h, p in sentinels),
        settings.REDIS_SENTINEL_MASTER,
        getattr(settings, "REDIS_SENTINEL_PASSWORD", ""),
    )


def sync_client(url: str, **options: Any) -> redis.Redis:
    """A blocking redis-py client of the Redis at ``url`` (``options``:
    redis-py connection keyword arguments, e.g. ``socket_timeout`` in
    seconds). Behind Sentinel, a client of the current master (``url`` then
    gives the database and credentials), which follows a failover on its
    next connection. Raises ImproperlyConfigured as ``target_of``."""
    import redis.sentinel

    config = configured()
    if config is None:
        return redis.Redis.from_url(url, **options)
    manager = redis.sentinel.Sentinel(
        list(config.sentinels), sentinel_kwargs=sentinel_kwargs(config, **options)
    )
    return manager.master_for(config.master, **target_of(url).kwargs(), **options)


@cache
def _owning_async_redis() -> type[redis.asyncio.Redis]:
    import redis.asyncio

    class OwningAsyncRedis(redis.asyncio.Redis):
        """An asyncio client of a Sentinel master whose ``aclose`` also closes
        the connections to the sentinels (``Sentinel.aclose`` leaves them to us)."""

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            manager = getattr(self.connection_pool, "sentinel_manager", None)
            if manager is not None:
                await manager.aclose()

    return OwningAsyncRedis


def async_client(url: str, **options: Any) -> redis.asyncio.Redis:
    """An asyncio redis-py client of the Redis at ``url``, as ``sync_client``
    (its ``aclose()`` closes everything it opened, sentinel connections
    included). Raises ImproperlyConfigured as ``target_of``."""
    import redis.asyncio
    import redis.asyncio.sentinel

    config = configured()
    if config is None:
        return redis.asyncio.Redis.from_url(url, **options)
    manager = redis.asyncio.sentinel.Sentinel(
        list(config.sentinels), sentinel_kwargs=sentinel_kwargs(config, **options)
    )
    client: redis.asyncio.Redis = manager.master_for(
        config.master, redis_class=_owning_async_redis(), **target_of(url).kwargs(), **options
    )
    return client


def limits_storage(url: str, **options: Any) -> Any:
    """The ``limits`` library's Redis storage of the Redis at ``url``
    (``options``: its keyword arguments, ``key_prefix`` and redis-py's);
    behind Sentinel its ``redis+sentinel://host:port,.../<master>``
    storage. Raises ImproperlyConfigured as ``target_of``."""
    from limits.storage import RedisSentinelStorage, RedisStorage

    config = configured()
    if config is None:
        return RedisStorage(url, **options)
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in config.sentinels)
    target = target_of(url)
    master = {k: v for k, v in target.kwargs().items() if k != "db"}
    # The limits library gives the URI's credentials to the sentinels too:
    # they take theirs from sentinel_kwargs instead (None: no password).
    quiet: Any = {"username": None, "password": None, **sentinel_kwargs(config, **options)}
    return RedisSentinelStorage(
        f"redis+sentinel://{hosts}/{config.master}",
        sentinel_kwargs=quiet,
        db=target.db,
        use_replicas=False,
        **master,
        **options,
    )


class SentinelCachePool:
    """Django RedisCache's ``pool_class`` behind Sentinel (``cache_options``):
    Django calls ``from_url(LOCATION, **OPTIONS)`` for its connection pool."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> redis.sentinel.SentinelConnectionPool:
        """A redis-py ``SentinelConnectionPool`` of the master named
        ``master_name`` among ``sentinels`` (``[host, port]`` pairs), asking
        them with ``sentinel_kwargs``; ``url`` gives the database and
        credentials, the other ``kwargs`` are redis-py connection arguments.
        Raises ImproperlyConfigured as ``target_of``."""
        import redis.sentinel

        sentinels = [(str(host), int(port)) for host, port in kwargs.pop("sentinels")]
        master = kwargs.pop("master_name")
        manager = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=kwargs.pop("sentinel_kwargs"))
        return redis.sentinel.SentinelConnectionPool(
            master, manager, **target_of(url).kwargs(), **kwargs
        )

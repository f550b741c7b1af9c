"""Where the Redis engine connects: a redis-py client from a URL, and its name for
messages.

* ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) and
  ``unix:///path/to/redis.sock?db=0``: one Redis (redis-py's own URL forms).
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/db]``: the
  master that the Sentinels at those addresses name ``MASTER``, asked again after a
  failover (redis-py's Sentinel client: a connection to a master that became a replica
  fails once, and the next one goes to the new master). ``sentinel_username`` and
  ``sentinel_password`` query options authenticate to the Sentinels; the URL's own
  credentials are the master's.
* ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://``
  for TLS): a Redis Cluster, found from any of those nodes (redis-py's
  ``RedisCluster``: it follows ``MOVED`` and ``ASK`` and reads the slot map again after
  a failover). Needs redis-py 8.0 or newer (sharded pub/sub in its asyncio client).

Every command waits for a free connection rather than failing when ``max_connections``
are busy, and redis-py never retries a command by itself: a publish whose answer was
lost may have happened, so retrying is the caller's decision (with its idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from ...backoff import full_jitter

__all__ = ["SCHEMES", "Client", "SentinelWatch", "close_client", "connect", "describe",
           "require_sharded_pubsub"]

#: A client of the Redis engine: one server (or a Sentinel master), or a cluster.
Client = aioredis.Redis | RedisCluster

logger = logging.getLogger("rtlink.backends.redis")

#: The URL schemes of the Redis engine.
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster")

#: Default port of a Sentinel.
_SENTINEL_PORT = 26379


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel-managed pool whose commands wait for a free connection, like the
    ``BlockingConnectionPool`` of a single Redis (redis-py has no such class)."""


def connect(url: str, *, max_connections: int, socket_timeout: float) -> Client:
    """A redis-py client for ``url`` (see the module docstring for the forms).

    Raises:
        ValueError: the URL is malformed or of an unknown scheme.
        RuntimeError: a cluster URL with a redis-py older than 8.0.
    """
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": socket_timeout,  # the wait for a free connection
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    scheme = urlsplit(url).scheme.lower()
    if scheme == "redis+sentinel":
        return _sentinel_master(url, options)
    if scheme.endswith("+cluster"):
        return _cluster(url, options)
    if scheme not in SCHEMES:
        raise ValueError(f"not a Redis URL scheme: {scheme!r} (known: {', '.join(SCHEMES)})")
    pool = aioredis.BlockingConnectionPool.from_url(url, **options)
    return aioredis.Redis(connection_pool=pool)


async def close_client(client: Client) -> None:
    """Close a client made by :func:`connect`: its pool, and for a Sentinel master the
    connections to the Sentinels too (redis-py leaves them open)."""
    if isinstance(client, RedisCluster):
        await client.aclose()
        return
    pool = client.connection_pool
    await client.aclose(close_connection_pool=True)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose(close_connection_pool=True)


def require_sharded_pubsub() -> None:
    """Refuse Redis Cluster with a redis-py whose asyncio client has no sharded pub/sub.

    Raises:
        RuntimeError: redis-py is older than 8.0.
    """
    if not hasattr(aioredis.client.PubSub, "ssubscribe"):
        import redis

        raise RuntimeError(f"Redis Cluster needs redis-py 8.0 or newer (sharded pub/sub in "
                           f"redis.asyncio); installed: {redis.__version__}")


def _cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    require_sharded_pubsub()
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = [_address(item, default_port=6379, kind="cluster node")
             for item in hosts.split(",") if item]
    if not nodes or parts.path.strip("/"):
        raise ValueError("a cluster URL is redis+cluster://host:port[,host:port...] "
                         "(a cluster has database 0 only)")
    scheme = "rediss" if parts.scheme.lower().startswith("rediss") else "redis"
    cluster_options: dict[str, Any] = dict(parse_url(f"{scheme}://localhost/?{parts.query}"))
    for name in ("host", "port", "path", "db"):
        cluster_options.pop(name, None)
    if cluster_options.pop("connection_class", None) is SSLConnection:
        cluster_options["ssl"] = True
    cluster_options.update(options)
    cluster_options.pop("timeout")  # a cluster node never waits for a free connection
    if username:
        cluster_options["username"] = unquote(username)
    if password:
        cluster_options["password"] = unquote(password)
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes],
                        **cluster_options)


def _sentinel_master(url: str, options: dict[str, Any]) -> aioredis.Redis:
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = [_address(item) for item in hosts.split(",") if item]
    path = [unquote(item) for item in parts.path.split("/") if item]
    if not sentinels or not 1 <= len(path) <= 2:
        raise ValueError("a Sentinel URL is redis+sentinel://host:port[,host:port...]"
                         "/MASTER[/db]")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    sentinel_options = {
        "username": query.pop("sentinel_username", None),
        "password": query.pop("sentinel_password", None),
        "socket_timeout": options["socket_timeout"],
        "socket_connect_timeout": options["socket_connect_timeout"],
    }
    # redis-py's own parser turns the rest of the query into typed connection options.
    master_options: dict[str, Any] = dict(parse_url(f"redis://localhost/?{urlencode(query)}"))
    for name in ("host", "port", "path"):
        master_options.pop(name, None)
    master_options.update(options)
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"invalid database {path[1]!r} in the Sentinel URL")
        master_options["db"] = int(path[1])
    if username:
        master_options["username"] = unquote(username)
    if password:
        master_options["password"] = unquote(password)
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_options)
    client: aioredis.Redis = sentinel.master_for(
        path[0], connection_pool_class=_BlockingSentinelPool, **master_options)
    return client


def _address(item: str, default_port: int = _SENTINEL_PORT, kind: str = "Sentinel"
             ) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon:
        return item, default_port
    if not port.isdigit():
        raise ValueError(f"invalid {kind} address {item!r}")
    return host.strip("[]"), int(port)


def describe(client: Client, key: str | None = None) -> str:
    """Where ``client`` connects, for messages: ``host:port/db``, ``unix:PATH``, the
    Sentinel master's name and its current address, or the cluster node that serves
    ``key`` (the cluster's known masters without one); never credentials."""
    if isinstance(client, RedisCluster):
        return _describe_cluster(client, key)
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if isinstance(pool, SentinelConnectionPool):
        sentinels = ",".join(
            f"{s.connection_pool.connection_kwargs.get('host')}:"
            f"{s.connection_pool.connection_kwargs.get('port')}"
            for s in pool.sentinel_manager.sentinels
        )
        master = getattr(pool, "master_address", None)
        where = f"{master[0]}:{master[1]}" if master else "not resolved yet"
        return f"master {pool.service_name!r} of Sentinels {sentinels} (at {where}, db {db})"
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{db}"


def _describe_cluster(client: RedisCluster, key: str | None) -> str:
    manager = client.nodes_manager
    if key is not None:
        try:
            node = manager.get_node_from_slot(client.keyslot(key))
        except Exception:  # the map is not read yet, or the slot has no master now
            pass
        else:
            return f"{node.name} (the cluster node of slot {client.keyslot(key)})"
    masters = [node.name for node in manager.nodes_cache.values()
               if node.server_type == "primary"]
    known = masters or [node.name for node in manager.startup_nodes.values()]
    return f"cluster {', '.join(sorted(known))}"


class SentinelWatch:
    """Follows a Sentinel master's switches as they happen.

    redis-py asks the Sentinels for the master only when it opens a connection, so
    after a failover that leaves the old master running (``SENTINEL FAILOVER``, a
    partition), pooled connections keep writing to it until Sentinel demotes it, about
    10 s later, and what it acknowledges meanwhile is lost. This task listens to the
    Sentinels' ``+switch-master`` events and, on a switch of its master, drops every
    connection of the pool (a command in flight fails with a temporary error and is
    retried by its caller) and calls ``on_switch`` (the pub/sub link reconnects).

    Args:
        client: a client made by :func:`connect` from a ``redis+sentinel://`` URL.
        on_switch: called after each switch, with no argument.
        address: names the master for log messages.
    """

    def __init__(self, client: aioredis.Redis, on_switch: Callable[[], Awaitable[None]],
                 address: Callable[[], str]) -> None:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        self._pool = pool
        self._on_switch = on_switch
        self._address = address
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name="rtlink-redis-sentinel-watch")

    async def close(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _listen(self) -> None:
        attempt = 0
        sentinels = self._pool.sentinel_manager.sentinels
        while True:
            sentinel = sentinels[attempt % len(sentinels)]
            pubsub = sentinel.pubsub()
            try:
                await pubsub.subscribe("+switch-master")
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=30)
                    if message is not None:
                        attempt = 0
                        await self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                logger.debug("Sentinel watch of %s: %s", self._address(), exc)
                attempt += 1
                await asyncio.sleep(full_jitter(attempt, base=0.1, cap=5.0))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _on_message(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        name, *_ = text.split(" ")
        if name != self._pool.service_name:
            return
        logger.warning("Redis Sentinel switched master %s: reconnecting", text)
        await self._pool.disconnect(inuse_connections=True)
        await self._pool.get_master_address()  # type: ignore[no-untyped-call]  # for messages
        await self._on_switch()

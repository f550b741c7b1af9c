"""The Redis engine as a :class:`~rtlink.backends.base.Backend`: positions, history,
idempotency and claims through the scripts; live publications through the node's
:class:`~.feed.ChannelFeeds`.

History reads are the commands a storm multiplies (every client that connects reads
its gap): the node answers what it knows without Redis (a subscribe without ``since``,
or from the position the node has delivered, on a channel that is live and caught up
here), and sends the rest in batches, bounded, shared while queued, refused when too
many wait (:mod:`.reads`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import NoScriptError

from ...errors import BackendUnavailable
from ...presence import Member
from ...protocol import Position, Publication
from ..base import (
    Backend,
    ControlListener,
    HistoryPolicy,
    HistoryResult,
    LostListener,
    PresenceListener,
    PublicationListener,
    PublishResult,
)
from .cluster import ClusterFeeds
from .control import ControlBus
from .errors import translated
from .feed import ChannelFeeds, unpack
from .reads import FORWARD, GAP_OR_LATEST, REVERSE, HistoryReads, Read
from .scripts import (
    HISTORY,
    PRESENCE_READ,
    PRESENCE_REMOVE,
    PRESENCE_UPDATE,
    PUBLISH,
    SHARDED_PUBLISH,
    TOPS,
    sharded,
)
from .topology import (
    Client,
    SentinelWatch,
    close_client,
    connect,
    describe,
    require_sharded_pubsub,
)

__all__ = ["RedisBackend"]

logger = logging.getLogger("rtlink.backends.redis")

#: Options of Redis URLs that belong to rtlink, not to redis-py.
_OWN_OPTIONS = {"prefix": str, "meta_ttl": float, "ping_interval": float,
                "max_connections": int, "sync_limit": int, "replica_acks": int,
                "replica_timeout": float, "linger": float}
#: Channels per HISTORY script.
_READ_BATCH = 100
#: Reads waiting for their batch, per batch allowed at once, before more are refused.
_WAITING_PER_BATCH = 1_000
#: TOPS scripts in flight at once on a cluster (one per slot of a batch).
_CLUSTER_TOPS = 8


class RedisBackend(Backend):
    """The Redis engine (see the module docstring for the design and key layout).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://`` for TLS,
            ``unix://`` for a socket, ``redis+sentinel://`` and ``redis+cluster://``:
            see :mod:`.topology`). redis-py options may be given as query parameters
            (``?socket_timeout=5``).
        prefix: the first part of every key and pub/sub channel name; nodes that
            share a prefix (and a database) are one cluster.
        meta_ttl: seconds a channel's epoch and offset are kept after its last use
            (at least the channel's history and key TTLs). When they expire, the
            channel starts a new epoch: clients that were away get
            ``recovered = false``.
        ping_interval: seconds of silence on the pub/sub connection after which it is
            pinged; with no answer within another interval it is presumed dead and
            reconnected.
        max_connections: command connections to Redis at most (commands wait for a
            free one; the pub/sub connection is another, of its own); on a cluster, to
            each node (a command finding none free fails as temporary). History reads
            use half of them at most.
        socket_timeout: seconds a command may take before it fails.
        sync_limit: publications read at most to fill one channel's gap after a
            reconnection; a larger gap counts as lost.
        replica_acks: replicas that must have a publication before :meth:`publish`
            returns (Redis ``WAIT``). With 0 (the default) a publication the master
            acknowledged but had not yet sent to a replica is lost if that replica is
            promoted (the channel then starts a new epoch, so subscribers are told);
            with 1 or more, a publication is acknowledged only once it survives the
            master's loss, and otherwise fails with :class:`BackendUnavailable`, to be
            retried with its idempotency key.
        replica_timeout: seconds to wait for ``replica_acks`` replicas.
        linger: seconds a channel stays subscribed in Redis after the node's last
            local subscriber left, so that one coming back (a long poll polling again)
            costs no command; 0 unsubscribes at once.
        client: a ready ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` to
            use instead of ``url`` (not closed by :meth:`close`); it must return bytes
            (``decode_responses=False``, redis-py's default).

    Raises:
        ValueError: an argument is out of range, the prefix contains a brace, or
            ``client`` decodes responses.
        TypeError: ``client`` is not a redis-py asyncio client.
        RuntimeError: a cluster with a redis-py older than 8.0.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "rtlink",
        meta_ttl: float = 86400.0,
        ping_interval: float = 5.0,
        max_connections: int = 64,
        socket_timeout: float = 5.0,
        sync_limit: int = 10_000,
        replica_acks: int = 0,
        replica_timeout: float = 1.0,
        linger: float = 5.0,
        client: Client | None = None,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be non-empty and contain no braces")
        if not meta_ttl > 0 or not ping_interval > 0 or not socket_timeout > 0:
            raise ValueError("meta_ttl, ping_interval and socket_timeout must be > 0")
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if sync_limit < 1:
            raise ValueError("sync_limit must be >= 1")
        if replica_acks < 0 or not replica_timeout > 0:
            raise ValueError("replica_acks must be >= 0 and replica_timeout > 0")
        if not linger >= 0:
            raise ValueError("linger must be >= 0")
        self.prefix = prefix
        self.meta_ttl = meta_ttl
        self.replica_acks = replica_acks
        self.replica_timeout = replica_timeout
        self._owns_client = client is None
        if client is not None:
            _check_client(client)
        else:
            client = connect(url, max_connections=max_connections,
                             socket_timeout=socket_timeout)
        self._redis = client
        self._cluster = isinstance(client, RedisCluster)
        self._publish_script = client.register_script(
            SHARDED_PUBLISH if self._cluster else PUBLISH)
        self._history_script = client.register_script(HISTORY)
        self._tops_script = client.register_script(TOPS)
        self._presence_scripts = {
            name: client.register_script(sharded(script) if self._cluster else script)
            for name, script in (("update", PRESENCE_UPDATE), ("remove", PRESENCE_REMOVE),
                                 ("read", PRESENCE_READ))}
        self._presence_listener: PresenceListener | None = None
        batches = max(1, max_connections // 2)
        self._reads = HistoryReads(
            self._read_batch, group=self._slot if self._cluster else None,
            batch=_READ_BATCH, concurrency=batches,
            max_waiting=batches * _WAITING_PER_BATCH, timeout=socket_timeout,
            address=self.address)
        feed_options: dict[str, Any] = {
            "pub_channel": self._pub_channel,
            "read": self._catch_up,
            "tops": self._tops,
            "ping_interval": ping_interval,
            "sync_limit": sync_limit,
            "timeout": socket_timeout,
            "linger": linger,
            "on_presence": self._on_presence,
        }
        self._control_bus = ControlBus(client, prefix, address=self.address,
                                       timeout=socket_timeout, ping_interval=ping_interval)
        self._feeds: ChannelFeeds | ClusterFeeds
        self._watch: SentinelWatch | None = None
        if isinstance(client, RedisCluster):
            self._feeds = ClusterFeeds(client, **feed_options)
        else:
            pool = client.connection_pool

            def connection() -> AbstractConnection:
                # The pool's class and options (TLS, credentials, a Sentinel's master),
                # but a connection of its own: never one of the pool's.
                made: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
                return made

            self._feeds = ChannelFeeds(connection, address=self.address, **feed_options)
            if isinstance(pool, SentinelConnectionPool):
                self._watch = SentinelWatch(client, self._feeds.reconnect, self.address)

    def address(self, channel: str | None = None) -> str:
        """Where this backend's Redis is, for messages (no credentials); on a cluster,
        the node that serves ``channel``."""
        return describe(self._redis, None if channel is None else self._key(channel, "meta"))

    @classmethod
    def from_url(cls, url: str) -> RedisBackend:
        """Build a backend from a URL; rtlink's own options may ride in its query.

        ``redis://host:6379/0?prefix=myapp&meta_ttl=3600`` sets ``prefix`` and
        ``meta_ttl``; other query parameters go to redis-py.

        Raises:
            ValueError: an option of rtlink has an invalid value.
        """
        parts = urlsplit(url)
        own: dict[str, Any] = {}
        rest = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            kind = _OWN_OPTIONS.get(name)
            if kind is None:
                rest.append((name, value))
                continue
            try:
                own[name] = kind(value)
            except ValueError:
                raise ValueError(f"invalid {name}={value!r} in the redis:// backend URL") from None
        # Not urlunsplit: it turns unix:///path into unix:/path.
        base = url.partition("?")[0].partition("#")[0]
        return cls(f"{base}?{urlencode(rest)}" if rest else base, **own)

    # --- keys ----------------------------------------------------------------------------

    def _key(self, channel: str, part: str) -> str:
        return f"{self.prefix}:{{{channel}}}:{part}"

    def _pub_channel(self, channel: str) -> str:
        return self._key(channel, "pub")

    # --- Backend -------------------------------------------------------------------------

    async def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Remember the listeners. The pub/sub connection opens on the first subscribe,
        so a process that only publishes (:class:`rtlink.Publisher`) never opens one.
        With Sentinel, start following the master's switches."""
        self._feeds.start(listener, on_lost)
        if self._watch is not None:
            self._watch.start()

    async def close(self) -> None:
        """Stop reading, close the pub/sub connection and (if owned) the pool."""
        if self._watch is not None:
            await self._watch.close()
        await self._control_bus.close()
        await self._feeds.close()
        await self._reads.close()
        if self._owns_client:
            await close_client(self._redis)

    async def publish(
        self, channel: str, data: object, *, key: str | None, policy: HistoryPolicy
    ) -> PublishResult:
        """Run the publish script: position, history, de-duplication and fan-out at once.

        Raises:
            BackendUnavailable: Redis cannot be reached or is not serving; the
                publication may have happened only if the connection broke after the
                script ran (retry with an idempotency key to be sure of once).
            BackendError: Redis refused the script for another reason.
        """
        keys = [self._key(channel, "meta"), self._key(channel, "log")]
        if key is not None:
            keys.append(self._key(channel, "key:" + key))
        payload = msgpack.packb(data, use_bin_type=True)
        args = [
            secrets.token_hex(4),
            payload,
            max(policy.size, 0),
            _ms(policy.ttl),
            _ms(policy.key_ttl),
            self._meta_ttl_ms(policy),
            self._pub_channel(channel),
        ]
        with self._translated("publish", self._key(channel, "meta")):
            if not self.replica_acks:
                epoch, offset, duplicate = await self._publish_script(keys=keys, args=args)
            else:
                (epoch, offset, duplicate), acks = await self._publish_and_wait(keys, args)
                if acks < self.replica_acks:
                    raise BackendUnavailable(
                        f"Redis at {self.address(channel)}: publication "
                        f"{epoch.decode()}:{offset} "
                        f"reached {acks} of {self.replica_acks} replicas in "
                        f"{self.replica_timeout} s; it may be lost in a failover, retry "
                        "with its idempotency key")
        return PublishResult(Position(epoch.decode(), int(offset)), duplicate=bool(duplicate))

    async def _publish_and_wait(self, keys: list[str], args: list[Any]) -> list[Any]:
        """The publish script, then ``WAIT`` for ``replica_acks`` replicas.

        WAIT counts the replicas that have every write of its connection so far: it
        must follow the script on the same connection (a pipeline; on a cluster, sent
        to the node of the channel's slot). A repeated key refreshes the meta hash's
        TTL, a write: a retry waits too.
        """
        wait: list[str | int] = ["WAIT", self.replica_acks, _ms(self.replica_timeout)]
        if not isinstance(self._redis, RedisCluster):
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._publish_script(keys=keys, args=args, client=pipe)
                pipe.execute_command(*wait)
                return list(await pipe.execute())
        for attempt in (1, 2):
            node = self._redis.get_node_from_key(keys[0])
            async with self._redis.pipeline(transaction=False) as pipe:
                # redis-py's annotations omit the cluster pipeline, which works here.
                await self._publish_script(keys=keys, args=args,
                                           client=pipe)  # type: ignore[arg-type]
                pipe.execute_command(*wait, target_nodes=node)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    # redis-py loads scripts for a cluster pipeline only when called
                    # outside one: a promoted replica does not have it yet.
                    if attempt == 2:
                        raise
                    await self._redis.script_load(self._publish_script.script)
        raise AssertionError("unreachable")

    async def history(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy
    ) -> HistoryResult:
        """The publications after ``since`` (see :meth:`Backend.history`).

        Answered without Redis when the channel is live and caught up on this node and
        ``since`` is None or the position the node delivered last: every publication
        after it reaches the node's subscribers live. Otherwise the history script
        runs, once for all who ask for the same read at the same time.

        Raises:
            BackendUnavailable: Redis cannot be reached, or too many reads wait already
                (retry later).
        """
        known = self._feeds.known(channel)
        if known is not None and (since is None or since == known):
            return HistoryResult([], known, True)
        return await self._read(channel, since, policy)

    async def page(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy, limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        """A window of the kept history (see :meth:`Backend.page`): the history script
        again, shared and batched like every read.

        Raises:
            BackendUnavailable: as :meth:`history`.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        return await self._read(channel, since, policy, limit, REVERSE if reverse else FORWARD)

    async def replay(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy,
        last: int | None = None,
    ) -> HistoryResult:
        """What a subscription replays (see :meth:`Backend.replay`): with ``since``,
        one history script reads the gap, or else the latest kept (a storm of clients
        resuming after Redis lost their history costs one read each, as before)."""
        if since is None or policy.size <= 0 or policy.ttl <= 0:
            return await super().replay(channel, since, policy=policy, last=last)
        known = self._feeds.known(channel)
        if known is not None and since == known:
            return HistoryResult([], known, True)
        return await self._read(channel, since, policy, min(last or 2**53 - 1, policy.size),
                                GAP_OR_LATEST)

    async def _read(self, channel: str, since: Position | None, policy: HistoryPolicy,
                    limit: int = 0, mode: int = FORWARD) -> HistoryResult:
        if policy.size <= 0 or policy.ttl <= 0:
            size, ttl_ms = 0, 0
        else:
            size, ttl_ms = policy.size, _ms(policy.ttl)
        return await self._reads.read(
            Read(channel, since, size, ttl_ms, self._meta_ttl_ms(policy), limit, mode),
            self._feeds.delivered(channel))

    async def subscribe(self, channel: str) -> None:
        """Subscribe the node to ``channel`` in Redis; returns once Redis confirmed it.

        Raises:
            BackendUnavailable: the pub/sub connection is down or did not confirm in
                time.
        """
        await self._feeds.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe the node from ``channel`` (errors are logged, not raised: a node
        that is reconnecting subscribes only what is still wanted anyway)."""
        await self._feeds.unsubscribe(channel)

    async def start_control(self, node: str, listener: ControlListener) -> None:
        """Subscribe this node's control channels (see :mod:`.control`), on a pub/sub
        connection of their own; waits ``socket_timeout`` at most for Redis."""
        await self._control_bus.start(node, listener)

    async def send_control(self, message: bytes, node: str | None = None) -> int | None:
        """Publish a control message to every node, or to ``node``; how many got it.

        Raises:
            BackendUnavailable: Redis cannot be reached or is not serving.
        """
        return await self._control_bus.send(message, node)

    async def claim(self, key: str, ttl: float) -> bool:
        """Claim ``key`` for every node at once: ``SET {prefix}:claim:<key> 1 NX PX <ttl>``.

        Raises:
            BackendUnavailable: Redis cannot be reached or is not serving.
            BackendError: Redis refused the command for another reason.
        """
        name = f"{self.prefix}:claim:{key}"
        with self._translated("claim", name):
            claimed = await self._redis.set(name, b"1", nx=True, px=max(_ms(ttl), 1))
        return bool(claimed)

    # --- presence ------------------------------------------------------------------------

    def set_presence_listener(self, listener: PresenceListener) -> None:
        """Hand the presence changes announced on subscribed channels to ``listener``."""
        self._presence_listener = listener

    async def presence_update(self, channel: str, members: Sequence[Member],
                              ttl: float) -> None:
        """Add or refresh ``members`` for ``ttl`` seconds, sweeping the expired ones
        (the ``PRESENCE_UPDATE`` script; see :meth:`Backend.presence_update`).

        Raises:
            BackendUnavailable: Redis cannot be reached or is not serving.
        """
        args: list[str | int] = [_ms(ttl), self._pub_channel(channel),
                                 _ms(max(ttl, self.meta_ttl))]
        for member in members:
            args += (member.key, member.encode())
        await self._presence_script("update", channel, args)

    async def presence_remove(self, channel: str, members: Sequence[Member]) -> None:
        """Remove ``members`` (the ``PRESENCE_REMOVE`` script).

        Raises:
            BackendUnavailable: Redis cannot be reached or is not serving.
        """
        await self._presence_script("remove", channel, [self._pub_channel(channel),
                                                        *(m.key for m in members)])

    async def presence_read(self, channel: str, limit: int) -> tuple[int, list[Member]]:
        """The members of ``channel`` (the ``PRESENCE_READ`` script: at most ``limit``,
        any ``limit`` of them when there are more).

        Raises:
            BackendUnavailable: Redis cannot be reached or is not serving.
        """
        reply = await self._presence_script("read", channel,
                                            [self._pub_channel(channel), limit])
        return int(reply[0]), [Member.decode(raw) for raw in reply[1:]]

    async def _presence_script(self, name: str, channel: str, args: list[Any]) -> Any:
        keys = [self._key(channel, "presence"), self._key(channel, "presence:expiry")]
        with self._translated("presence", keys[0]):
            return await self._presence_scripts[name](keys=keys, args=args)

    def _on_presence(self, channel: str, payload: bytes) -> None:
        """A presence event from the channel's pub/sub channel (see the scripts)."""
        listener = self._presence_listener
        if listener is None:
            return
        try:
            head, *lines = payload.split(b"\n")
            count = int(head[1:])
            joins = [Member.decode(line[1:]) for line in lines if line[:1] == b"+"]
            leaves = [Member.decode(line[1:]) for line in lines if line[:1] == b"-"]
        except Exception:
            logger.exception("undecodable presence event on %r", channel)
            return
        listener(channel, joins, leaves, count)

    # --- reading -------------------------------------------------------------------------

    async def _read_batch(self, reads: list[Read]) -> list[HistoryResult]:
        """One HISTORY script for ``reads`` (on a cluster, all of one slot)."""
        keys: list[str] = []
        args: list[str | int] = [secrets.token_hex(8)]
        for read in reads:
            since = read.since
            keys += (self._key(read.channel, "meta"), self._key(read.channel, "log"))
            args += ("" if since is None else since.epoch,
                     0 if since is None else since.offset,
                     read.size, read.ttl_ms, read.meta_ttl_ms,
                     # "All" is 2**53-1: any count above the most a log keeps is that.
                     min(read.limit, 2**31), read.mode)
        with self._translated("history", keys[0]):
            reply = await self._history_script(keys=keys, args=args)
        results = []
        at = 0
        for read in reads:
            epoch, top = reply[at].decode(), int(reply[at + 1])
            recovered, count = bool(reply[at + 2]), int(reply[at + 3])
            entries = reply[at + 4:at + 4 + 2 * count]
            at += 4 + 2 * count
            results.append(HistoryResult(
                [Publication(read.channel, unpack(entries[i + 1]),
                             Position(epoch, int(entries[i])))
                 for i in range(0, len(entries), 2)], Position(epoch, top), recovered))
        return results

    def _slot(self, channel: str) -> int:
        cluster = self._redis
        assert isinstance(cluster, RedisCluster)
        return int(cluster.keyslot(self._key(channel, "meta")))

    async def _tops(self, channels: list[str]) -> list[Position | None]:
        """The latest positions of ``channels``: one TOPS script (on a cluster, one per
        slot: a script's keys must share one)."""
        cluster = self._redis
        if not isinstance(cluster, RedisCluster):
            return await self._tops_of(channels)
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(cluster.keyslot(self._key(channel, "meta")),
                               []).append(channel)
        slots = asyncio.Semaphore(_CLUSTER_TOPS)

        async def one(group: list[str]) -> list[Position | None]:
            async with slots:
                return await self._tops_of(group)

        groups = list(by_slot.values())
        answers = await asyncio.gather(*(one(group) for group in groups))
        found = {channel: top for group, tops in zip(groups, answers, strict=True)
                 for channel, top in zip(group, tops, strict=True)}
        return [found[channel] for channel in channels]

    async def _tops_of(self, channels: list[str]) -> list[Position | None]:
        keys: list[str] = []
        for channel in channels:
            keys += (self._key(channel, "meta"), self._key(channel, "log"))
        with self._translated("subscribe", keys[0]):
            reply = await self._tops_script(keys=keys,
                                            args=[_ms(self.meta_ttl), secrets.token_hex(8)])
        # A null epoch: a read-only replica, and a channel it has no meta hash of.
        return [None if reply[i] is None else Position(reply[i].decode(), int(reply[i + 1]))
                for i in range(0, len(reply), 2)]

    @contextlib.contextmanager
    def _translated(self, operation: str, key: str) -> Iterator[None]:
        """redis-py's errors as rtlink's, naming the server of ``key``; on a cluster, a
        temporary one has the slot map read again (its master may have changed)."""
        try:
            with translated(lambda: describe(self._redis, key), operation):
                yield
        except BackendUnavailable:
            if isinstance(self._feeds, ClusterFeeds):
                self._feeds.read_map_soon()
            raise

    def _meta_ttl_ms(self, policy: HistoryPolicy) -> int:
        return _ms(max(self.meta_ttl, policy.ttl, policy.key_ttl))

    async def _catch_up(self, channel: str, since: Position, size: int) -> HistoryResult:
        # Not shared with a read sent before: the feed needs everything after ``since``
        # up to now, and its own position says nothing of a read's age.
        return await self._reads.read(Read(channel, since, size, 0, _ms(self.meta_ttl)))


def _check_client(client: object) -> None:
    if isinstance(client, RedisCluster):
        require_sharded_pubsub()
        decodes = client.get_connection_kwargs().get("decode_responses")
    elif isinstance(client, aioredis.Redis):
        decodes = client.connection_pool.connection_kwargs.get("decode_responses")
    else:
        raise TypeError(f"client must be a redis.asyncio.Redis or RedisCluster, not "
                        f"{type(client).__name__}")
    if decodes:
        raise ValueError("the Redis client must return bytes (decode_responses=False): "
                         "data is stored as msgpack")


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds for Redis (at least 1 for any positive value)."""
    if seconds <= 0:
        return 0
    if math.isinf(seconds):
        return 2**62
    return max(1, round(seconds * 1000))


"""The Redis engine: several server processes (or machines) act as one.

``redis://host:port/db`` (needs the ``redis`` extra: ``pip install 'rtlink[redis]'``).

* **History** lives in a Redis Stream per channel, bounded by the channel's size (exact
  ``MAXLEN``) and TTL (``MINID`` trimming plus a key expiry, and a TTL check on read).
* **Positions** come from a hash per channel holding the epoch and the latest offset.
  One Lua script assigns the offset, appends to the stream, de-duplicates by
  idempotency key and publishes, atomically: two nodes can never hand out the same
  position, and a publication is in history before any node delivers it.
* **Fan-out** goes through Redis pub/sub. A node subscribes a channel in Redis only
  while it has local subscribers (the hub reference-counts; this backend subscribes
  once per channel) and all of a node's subscriptions share one pub/sub connection.
* **A broker blip loses nothing**: when that connection drops, the node reconnects with
  full-jitter backoff, subscribes again, and reads every live channel's history from
  the last position it delivered, buffering live messages meanwhile. When the gap
  cannot be filled (Redis restarted without persistence, history trimmed), it calls
  the ``on_lost`` listener: the hub then asks the channel's clients to reconnect, and
  they learn ``recovered = false``.

Key layout (``prefix`` defaults to ``rtlink``; ``{channel}`` is a Redis Cluster hash
tag, so all keys of one channel share a slot — channel names cannot contain braces)::

    rtlink:{chat:lobby}:meta        hash   e = epoch, o = latest offset
    rtlink:{chat:lobby}:history     stream entries (auto IDs) with o = offset, d = data
    rtlink:{chat:lobby}:key:<key>   string "<epoch> <offset>" of an idempotency key
    rtlink:{chat:lobby}:pub         pub/sub channel: "<epoch> <offset> <data>"
    rtlink:claim:<key>              string "1" while <key> is claimed (single-use tickets)

Data is stored and published as msgpack. Requires Redis 6.2 or newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgpack
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..backoff import full_jitter
from ..errors import BackendError, BackendUnavailable
from ..protocol import Position, Publication
from .base import (
    Backend,
    HistoryPolicy,
    HistoryResult,
    LostListener,
    PublicationListener,
    PublishResult,
)

__all__ = ["RedisBackend"]

logger = logging.getLogger(__name__)

# KEYS: meta, history, idempotency key (absent without a key)
# ARGV: new epoch, data, size, ttl ms, key ttl ms, meta ttl ms, pub/sub channel
# Returns {epoch, offset, duplicate 0/1}.
_PUBLISH = """
local meta, history = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', history)
  redis.call('HSET', meta, 'e', epoch, 'o', 0)
end
local meta_ttl = ARGV[6]
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local space = string.find(seen, ' ', 1, true)
    redis.call('PEXPIRE', meta, meta_ttl)
    return {string.sub(seen, 1, space - 1), tonumber(string.sub(seen, space + 1)), 1}
  end
end
local offset = redis.call('HINCRBY', meta, 'o', 1)
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if size > 0 and ttl > 0 then
  local id = redis.call('XADD', history, 'MAXLEN', size, '*', 'o', offset, 'd', ARGV[2])
  local ms = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
  redis.call('XTRIM', history, 'MINID', ms - ttl + 1)
  redis.call('PEXPIRE', history, ttl)
end
local key_ttl = tonumber(ARGV[5])
if KEYS[3] and key_ttl > 0 then
  redis.call('SET', KEYS[3], epoch .. ' ' .. offset, 'PX', key_ttl)
end
redis.call('PEXPIRE', meta, meta_ttl)
redis.call('PUBLISH', ARGV[7], epoch .. ' ' .. offset .. ' ' .. ARGV[2])
return {epoch, offset, 0}
"""

# KEYS: meta, history
# ARGV: new epoch, since epoch ('' for none), since offset, size, ttl ms (0: no TTL
#       check), meta ttl ms
# Returns {epoch, top offset, recovered 0/1, data...}: the data of offsets
# since+1 .. top, oldest first, when recovered.
_HISTORY = """
local meta, history = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'e')
local top = 0
if epoch then
  top = tonumber(redis.call('HGET', meta, 'o'))
else
  epoch = ARGV[1]
  redis.call('DEL', history)
  redis.call('HSET', meta, 'e', epoch, 'o', 0)
end
redis.call('PEXPIRE', meta, ARGV[6])
local since_epoch, since = ARGV[2], tonumber(ARGV[3])
if since_epoch == '' or (since_epoch == epoch and since == top) then
  return {epoch, top, 1}
end
local wanted = top - since
if since_epoch ~= epoch or wanted < 0 or wanted > tonumber(ARGV[4]) then
  return {epoch, top, 0}
end
local entries = redis.call('XREVRANGE', history, '+', '-', 'COUNT', wanted)
if #entries < wanted then
  return {epoch, top, 0}
end
local oldest = entries[wanted]
local fields = oldest[2]
local oldest_offset
for i = 1, #fields, 2 do
  if fields[i] == 'o' then oldest_offset = tonumber(fields[i + 1]) end
end
if oldest_offset ~= since + 1 then
  return {epoch, top, 0}
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  local id = oldest[1]
  local ms = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
  local now = redis.call('TIME')
  if ms <= tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl then
    return {epoch, top, 0}
  end
end
local result = {epoch, top, 1}
for i = wanted, 1, -1 do
  local f = entries[i][2]
  for j = 1, #f, 2 do
    if f[j] == 'd' then result[#result + 1] = f[j + 1] end
  end
end
return result
"""

#: Errors that mean "Redis cannot be reached or cannot serve right now".
_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    OSError,
    TimeoutError,
)
#: Reply prefixes of ``ResponseError`` that are temporary conditions of the server.
_TEMPORARY_REPLIES = ("OOM", "BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN",
                      "CLUSTERDOWN", "NOREPLICAS")

#: Options of ``redis://`` URLs that belong to rtlink, not to redis-py.
_OWN_OPTIONS = {"prefix": str, "meta_ttl": float, "ping_interval": float,
                "max_connections": int, "sync_limit": int}

_SUBSCRIBING, _LIVE, _RESUBSCRIBING = "subscribing", "live", "resubscribing"


class _Feed:
    """What this node knows about one channel it subscribes to in Redis."""

    __slots__ = ("state", "confirmed", "last", "baseline", "syncing", "buffer", "sync")

    def __init__(self, confirmed: asyncio.Future[None]) -> None:
        self.state = _SUBSCRIBING
        self.confirmed = confirmed
        #: The position of the last publication handed to the listener.
        self.last: Position | None = None
        #: The channel's position just before the node subscribed (None: no stream),
        #: where catching up starts if nothing was delivered yet.
        self.baseline: Position | None = None
        #: True while history is read to fill a gap; live messages wait in ``buffer``.
        self.syncing = False
        self.buffer: list[Publication] = []
        #: The task filling the gap, while one runs.
        self.sync: asyncio.Task[None] | None = None


class RedisBackend(Backend):
    """The Redis engine (see the module docstring for the design and key layout).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://`` for TLS,
            ``unix://`` for a socket). redis-py options may be given as query
            parameters (``?socket_timeout=5``).
        prefix: the first part of every key and pub/sub channel name; nodes that
            share a prefix (and a database) are one cluster.
        meta_ttl: seconds a channel's epoch and offset are kept after its last use
            (at least the channel's history and key TTLs). When they expire, the
            channel starts a new epoch: clients that were away get
            ``recovered = false``.
        ping_interval: seconds of silence on the pub/sub connection after which it is
            pinged; with no answer within another interval it is presumed dead and
            reconnected.
        max_connections: connections to Redis at most (commands wait for a free one).
        socket_timeout: seconds a command may take before it fails.
        sync_limit: publications read at most to fill one channel's gap after a
            reconnection; a larger gap counts as lost.
        client: a ready ``redis.asyncio.Redis`` to use instead of ``url`` (its
            connection pool is not closed by :meth:`close`); it must return bytes
            (``decode_responses=False``, redis-py's default).

    Raises:
        ValueError: an argument is out of range, the prefix contains a brace, or
            ``client`` decodes responses.
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
        client: aioredis.Redis | None = None,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be non-empty and contain no braces")
        if not meta_ttl > 0 or not ping_interval > 0 or not socket_timeout > 0:
            raise ValueError("meta_ttl, ping_interval and socket_timeout must be > 0")
        if max_connections < 2:
            raise ValueError("max_connections must be >= 2 (one is the pub/sub connection)")
        if sync_limit < 1:
            raise ValueError("sync_limit must be >= 1")
        self.prefix = prefix
        self.meta_ttl = meta_ttl
        self.ping_interval = ping_interval
        self.sync_limit = sync_limit
        self._owns_client = client is None
        if client is not None and client.connection_pool.connection_kwargs.get(
                "decode_responses"):
            raise ValueError("the Redis client must return bytes (decode_responses=False): "
                             "data is stored as msgpack")
        if client is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=socket_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                # A command is never retried by redis-py: a publish whose answer was
                # lost may have happened; retrying is the caller's call (with a key).
                retry=Retry(NoBackoff(), 0),
            )
            client = aioredis.Redis(connection_pool=pool)
        self._redis = client
        self._address = _describe(client)
        self._publish_script = client.register_script(_PUBLISH)
        self._history_script = client.register_script(_HISTORY)
        self._listener: PublicationListener | None = None
        self._on_lost: LostListener | None = None
        self._feeds: dict[str, _Feed] = {}
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._syncs: set[asyncio.Task[None]] = set()
        self._closed = False

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
        return cls(urlunsplit(parts._replace(query=urlencode(rest))), **own)

    # --- keys ----------------------------------------------------------------------------

    def _key(self, channel: str, part: str) -> str:
        return f"{self.prefix}:{{{channel}}}:{part}"

    def _pub_channel(self, channel: str) -> str:
        return self._key(channel, "pub")

    def _channel_of(self, pub_channel: bytes) -> str:
        name = pub_channel.decode()
        # "<prefix>:{<channel>}:pub"
        return name[len(self.prefix) + 2 : -5]

    # --- Backend -------------------------------------------------------------------------

    async def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Remember the listeners. The pub/sub connection opens on the first subscribe,
        so a process that only publishes (:class:`rtlink.Publisher`) never opens one."""
        self._listener = listener
        self._on_lost = on_lost

    async def close(self) -> None:
        """Stop reading, close the pub/sub connection and (if owned) the pool."""
        self._closed = True
        tasks = [t for t in (self._reader, *self._syncs) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._reader = None
        await self._drop_pubsub()
        for feed in self._feeds.values():
            if not feed.confirmed.done():
                feed.confirmed.set_exception(BackendUnavailable("backend closed"))
                feed.confirmed.exception()  # retrieved: nobody may wait any more
        self._feeds.clear()
        self._listener = self._on_lost = None
        if self._owns_client:
            await self._redis.aclose(close_connection_pool=True)

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
        keys = [self._key(channel, "meta"), self._key(channel, "history")]
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
        async with self._errors("publish"):
            epoch, offset, duplicate = await self._publish_script(keys=keys, args=args)
        return PublishResult(Position(epoch.decode(), int(offset)), duplicate=bool(duplicate))

    async def history(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy
    ) -> HistoryResult:
        """Run the history script (see :meth:`Backend.history`)."""
        if policy.size <= 0 or policy.ttl <= 0:
            size, ttl_ms = 0, 0
        else:
            size, ttl_ms = policy.size, _ms(policy.ttl)
        return await self._read(channel, since, size, ttl_ms, self._meta_ttl_ms(policy))

    async def subscribe(self, channel: str) -> None:
        """Subscribe the node to ``channel`` in Redis; returns once Redis confirmed it.

        Raises:
            BackendUnavailable: the pub/sub connection is down or did not confirm in
                time.
        """
        if self._closed:
            raise BackendUnavailable("backend closed")
        if channel in self._feeds:
            return
        loop = asyncio.get_running_loop()
        feed = self._feeds[channel] = _Feed(loop.create_future())
        try:
            feed.baseline = await self._top(channel)
            self._ensure_reader()
            async with asyncio.timeout(self._redis_timeout()):
                await self._connected.wait()
                pubsub = self._pubsub
                if pubsub is None:  # dropped again between the wake-up and now
                    raise BackendUnavailable(f"Redis at {self._address}: pub/sub reconnecting")
                if self._feeds.get(channel) is feed and feed.state == _SUBSCRIBING:
                    async with self._errors("subscribe"):
                        await pubsub.subscribe(self._pub_channel(channel))
                await asyncio.shield(feed.confirmed)
        except BaseException as exc:
            if self._feeds.get(channel) is feed:
                del self._feeds[channel]
                await self._unsubscribe_quietly(channel)
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable(
                    f"Redis at {self._address} did not confirm the subscription in time"
                ) from None
            raise

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe the node from ``channel`` (errors are logged, not raised: a node
        that is reconnecting subscribes only what is still wanted anyway)."""
        feed = self._feeds.pop(channel, None)
        if feed is None:
            return
        if not feed.confirmed.done():
            feed.confirmed.cancel()
        await self._unsubscribe_quietly(channel)

    async def claim(self, key: str, ttl: float) -> bool:
        """Claim ``key`` for every node at once: ``SET {prefix}:claim:<key> 1 NX PX <ttl>``.

        Raises:
            BackendUnavailable: Redis cannot be reached or is not serving.
            BackendError: Redis refused the command for another reason.
        """
        async with self._errors("claim"):
            claimed = await self._redis.set(f"{self.prefix}:claim:{key}", b"1", nx=True,
                                            px=max(_ms(ttl), 1))
        return bool(claimed)

    # --- reading -------------------------------------------------------------------------

    async def _read(self, channel: str, since: Position | None, size: int, ttl_ms: int,
                    meta_ttl_ms: int) -> HistoryResult:
        keys = [self._key(channel, "meta"), self._key(channel, "history")]
        args: list[str | int] = [
            secrets.token_hex(4),
            "" if since is None else since.epoch,
            0 if since is None else since.offset,
            size,
            ttl_ms,
            meta_ttl_ms,
        ]
        async with self._errors("history"):
            reply = await self._history_script(keys=keys, args=args)
        epoch, top, recovered = reply[0].decode(), int(reply[1]), bool(reply[2])
        position = Position(epoch, top)
        if not recovered:
            return HistoryResult([], position, False)
        first = top - len(reply) + 4
        publications = [
            Publication(channel, _unpack(raw), Position(epoch, first + i))
            for i, raw in enumerate(reply[3:])
        ]
        return HistoryResult(publications, position, True)

    async def _top(self, channel: str) -> Position | None:
        async with self._errors("subscribe"):
            epoch, offset = await self._redis.hmget(self._key(channel, "meta"), ["e", "o"])
        if epoch is None or offset is None:
            return None
        assert isinstance(epoch, bytes)  # the client returns bytes (checked in __init__)
        return Position(epoch.decode(), int(offset))

    def _meta_ttl_ms(self, policy: HistoryPolicy) -> int:
        return _ms(max(self.meta_ttl, policy.ttl, policy.key_ttl))

    def _redis_timeout(self) -> float:
        timeout = self._redis.connection_pool.connection_kwargs.get("socket_timeout")
        return float(timeout) if timeout else 5.0

    @contextlib.asynccontextmanager
    async def _errors(self, operation: str) -> AsyncIterator[None]:
        """Translate redis-py errors into rtlink's, naming the server but not secrets."""
        try:
            yield
        except _UNAVAILABLE as exc:
            detail = str(exc) or type(exc).__name__
            raise BackendUnavailable(
                f"Redis at {self._address} is unavailable ({operation}): {detail}"
            ) from exc
        except redis_errors.ResponseError as exc:
            if str(exc).startswith(_TEMPORARY_REPLIES):
                raise BackendUnavailable(
                    f"Redis at {self._address} cannot serve {operation} now: {exc}"
                ) from exc
            raise BackendError(f"Redis at {self._address} refused {operation}: {exc}") from exc

    # --- the pub/sub connection ----------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(
                self._read_forever(), name="rtlink-redis-pubsub"
            )

    async def _read_forever(self) -> None:
        """Own the pub/sub connection: (re)connect, read, and ping when silent."""
        attempt = 0
        while not self._closed:
            try:
                if self._pubsub is None:
                    await self._open_pubsub()
                    attempt = 0
                await self._read_until_broken()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                delay = full_jitter(attempt, base=0.1, cap=5.0)
                logger.warning("Redis at %s: pub/sub connection lost (%s); reconnecting in "
                               "%.2f s", self._address, exc or type(exc).__name__, delay)
                await self._drop_pubsub()
                await asyncio.sleep(delay)
                attempt += 1

    async def _open_pubsub(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]
            names = [self._pub_channel(channel) for channel in self._feeds]
            for i in range(0, len(names), 1000):
                await pubsub.subscribe(*names[i : i + 1000])
        except BaseException:
            await pubsub.aclose()
            raise
        self._pubsub = pubsub
        self._connected.set()
        if not names:
            # Nothing to read until a first subscription; an empty pub/sub connection
            # makes redis-py return at once, so ping to keep the read blocking.
            await pubsub.ping()

    async def _read_until_broken(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.ping_interval)
            if message is None:
                if pinged:
                    raise TimeoutError(f"no answer to a ping within {self.ping_interval} s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind = message["type"]
            if kind == "message":
                self._on_message(message["channel"], message["data"])
            elif kind == "subscribe":
                self._on_confirmed(self._channel_of(message["channel"]))

    async def _drop_pubsub(self) -> None:
        """Forget the pub/sub connection; every live channel must catch up later."""
        self._connected.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        for feed in self._feeds.values():
            if feed.state == _LIVE:
                feed.state = _RESUBSCRIBING
                feed.syncing = True  # hold live messages until the gap is filled
            elif feed.state == _SUBSCRIBING and not feed.confirmed.done():
                feed.confirmed.set_exception(BackendUnavailable(
                    f"Redis at {self._address}: pub/sub connection lost while subscribing"))

    async def _unsubscribe_quietly(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            await pubsub.unsubscribe(self._pub_channel(channel))
        except Exception as exc:
            logger.debug("unsubscribe of %r failed: %s", channel, exc)

    def _on_confirmed(self, channel: str) -> None:
        feed = self._feeds.get(channel)
        if feed is None:
            return
        if feed.state == _SUBSCRIBING:
            feed.state = _LIVE
            if not feed.confirmed.done():
                feed.confirmed.set_result(None)
        elif feed.state == _RESUBSCRIBING:
            feed.state = _LIVE
            self._start_sync(channel, feed, feed.last or feed.baseline)

    def _on_message(self, pub_channel: bytes, payload: bytes) -> None:
        channel = self._channel_of(pub_channel)
        feed = self._feeds.get(channel)
        if feed is None or feed.state == _SUBSCRIBING:
            return  # published before subscribe() returned: not ours to deliver
        try:
            epoch, offset, raw = payload.split(b" ", 2)
            publication = Publication(channel, _unpack(raw),
                                      Position(epoch.decode(), int(offset)))
        except Exception:
            logger.exception("undecodable message on %r", pub_channel)
            return
        if feed.syncing:
            feed.buffer.append(publication)
        else:
            self._offer(channel, feed, publication)

    def _offer(self, channel: str, feed: _Feed, publication: Publication) -> bool:
        """Deliver ``publication`` if it is the next one; start catching up on a gap.

        Returns False when a catch-up started (the publication waits in the buffer).
        """
        last, position = feed.last, publication.position
        if last is not None and position.epoch == last.epoch:
            if position.offset <= last.offset:
                return True  # already delivered (read from history while catching up)
            if position.offset > last.offset + 1:
                feed.buffer.insert(0, publication)
                self._start_sync(channel, feed, last)
                return False
        elif last is not None and position.offset > 1:
            # A new epoch whose beginning this node did not see.
            feed.buffer.insert(0, publication)
            self._start_sync(channel, feed, Position(position.epoch, 0))
            return False
        self._deliver(feed, publication)
        return True

    def _deliver(self, feed: _Feed, publication: Publication) -> None:
        feed.last = publication.position
        if self._listener is not None:
            try:
                self._listener(publication)
            except Exception:
                logger.exception("publication listener failed for channel %r",
                                 publication.channel)

    def _start_sync(self, channel: str, feed: _Feed, since: Position | None) -> None:
        feed.syncing = True
        if feed.sync is not None:
            feed.sync.cancel()  # a sync from before the latest reconnection
        task = feed.sync = asyncio.get_running_loop().create_task(
            self._sync(channel, feed, since), name=f"rtlink-redis-sync:{channel}"
        )
        self._syncs.add(task)
        task.add_done_callback(self._syncs.discard)

    async def _sync(self, channel: str, feed: _Feed, since: Position | None) -> None:
        """Fill a channel's gap after ``since`` from history, then drain the buffer."""
        attempt = 0
        while self._feeds.get(channel) is feed and feed.state == _LIVE:
            try:
                if since is None:  # no stream when subscribed: everything of the epoch
                    top = await self._read(channel, None, 0, 0, _ms(self.meta_ttl))
                    since = Position(top.position.epoch, 0)
                result = await self._read(channel, since, self.sync_limit, 0,
                                          _ms(self.meta_ttl))
            except BackendError as exc:
                delay = full_jitter(attempt, base=0.1, cap=5.0)
                logger.warning("catching up %r failed (%s); retrying in %.2f s",
                               channel, exc, delay)
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if self._feeds.get(channel) is not feed or feed.state != _LIVE:
                return  # unsubscribed, or the connection dropped again (a new sync follows)
            feed.sync = None
            if result.recovered:
                for publication in result.publications:
                    last = feed.last
                    if (last is None or last.epoch != publication.position.epoch
                            or publication.position.offset > last.offset):
                        self._deliver(feed, publication)
                if feed.last is None or feed.last.epoch != result.position.epoch:
                    feed.last = result.position
            else:
                logger.warning("channel %r: publications after %s are gone from Redis; "
                               "its subscribers must resubscribe", channel, since)
                feed.last = result.position
                if self._on_lost is not None:
                    try:
                        self._on_lost(channel)
                    except Exception:
                        logger.exception("on_lost listener failed for channel %r", channel)
            buffer, feed.buffer = feed.buffer, []
            feed.syncing = False
            for i, publication in enumerate(buffer):
                if not self._offer(channel, feed, publication):
                    feed.buffer.extend(buffer[i + 1 :])  # another gap: a new sync runs
                    return
            return


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds for Redis (at least 1 for any positive value)."""
    if seconds <= 0:
        return 0
    if math.isinf(seconds):
        return 2**62
    return max(1, round(seconds * 1000))


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def _describe(client: aioredis.Redis) -> str:
    """Where the client connects, for messages: ``host:port/db``, never credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

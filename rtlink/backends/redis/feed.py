"""The node's pub/sub link to Redis: one connection for every channel the node has
local subscribers for, and the catch-up that makes a broker blip lose nothing.

Each subscribed channel has a :class:`_Feed`: the last position handed to the hub, and
while a gap is being filled from history, the live messages that wait for it. When the
connection drops, the link reconnects with full-jitter backoff, subscribes again in
batches, and reads every live channel's history from its last position. A message whose
offset skips ahead starts the same catch-up for its channel; a new epoch, or a gap that
history cannot fill, is reported lost (the hub then asks the channel's subscribers to
resubscribe, and they learn ``recovered = false``).

On Redis Cluster (``sharded=True``) the link is one master's: it uses sharded pub/sub
(``SSUBSCRIBE``, one command per channel since a command's channels must share a slot),
and a channel whose slot left the node (Redis says ``sunsubscribe``, or ``MOVED`` to a
subscribe) is handed to ``on_moved``; :mod:`.cluster` then moves it, with its position,
to the link of its new owner (:meth:`ChannelFeeds.release`, :meth:`ChannelFeeds.adopt`),
where it catches up like after any reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from ...backoff import full_jitter
from ...errors import BackendError, BackendUnavailable
from ...positions import Position, is_after
from ...protocol import Publication
from ..base import HistoryResult, LostListener, PublicationListener
from .errors import translated

__all__ = ["ChannelFeeds", "ChannelMoved", "unpack"]

logger = logging.getLogger("rtlink.backends.redis")

#: Reads a channel's history after a position, at most so many publications.
HistoryReader = Callable[[str, "Position | None", int], Awaitable[HistoryResult]]
#: The channel's latest position in Redis, or None when it has none.
TopReader = Callable[[str], Awaitable["Position | None"]]

_SUBSCRIBING, _LIVE, _RESUBSCRIBING = "subscribing", "live", "resubscribing"


class ChannelMoved(BackendUnavailable):
    """The channel's slot left this link's node while it was being subscribed (Redis
    Cluster): subscribe again on its new owner."""


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



class ChannelFeeds:
    """The pub/sub connection of one node and a feed per subscribed channel.

    Args:
        client: the node's redis-py client (the link takes one connection of it).
        address: names the server for messages (called when one is written).
        pub_channel: the Redis pub/sub channel of an rtlink channel, and
        channel_of: back.
        read: reads history (the engine's history script).
        top: reads a channel's latest position.
        ping_interval: seconds of silence before a ping; as long again without an
            answer, and the connection is presumed dead.
        sync_limit: publications read at most to fill one gap.
        timeout: seconds a subscribe waits for the connection and the confirmation.
        sharded: use sharded pub/sub (Redis Cluster: this link is one node's).
        on_moved: called with channels whose slot left this node (sharded only).
        on_link_lost: called each time the connection failed (sharded only: the node
            may have failed over, and the cluster's map should be read again).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        address: Callable[[], str],
        pub_channel: Callable[[str], str],
        channel_of: Callable[[bytes], str],
        read: HistoryReader,
        top: TopReader,
        ping_interval: float,
        sync_limit: int,
        timeout: float,
        sharded: bool = False,
        on_moved: Callable[[list[str]], None] | None = None,
        on_link_lost: Callable[[], None] | None = None,
    ) -> None:
        self.ping_interval = ping_interval
        self.sync_limit = sync_limit
        self._client = client
        self._address = address
        self._pub_channel = pub_channel
        self._channel_of = channel_of
        self._read = read
        self._top = top
        self._timeout = timeout
        self._listener: PublicationListener | None = None
        self._on_lost: LostListener | None = None
        self._feeds: dict[str, _Feed] = {}
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._syncs: set[asyncio.Task[None]] = set()
        self._closed = False
        self._sharded = sharded
        self._on_moved = on_moved
        self._on_link_lost = on_link_lost
        kinds = ("smessage", "ssubscribe") if sharded else ("message", "subscribe")
        self._message_kind, self._confirm_kind = kinds

    def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Hand publications to ``listener`` and lost channels to ``on_lost``."""
        self._listener = listener
        self._on_lost = on_lost

    async def reconnect(self) -> None:
        """Drop the pub/sub connection (the master moved): the reader reconnects and
        catches every channel up, as after any loss."""
        pubsub = self._pubsub
        if pubsub is not None and pubsub.connection is not None:
            await pubsub.connection.disconnect()

    @property
    def connected(self) -> bool:
        """Whether the pub/sub connection is up."""
        return self._connected.is_set()

    @property
    def channels(self) -> list[str]:
        """The channels subscribed (or being subscribed) in Redis."""
        return list(self._feeds)

    async def close(self) -> None:
        """Stop reading and close the pub/sub connection; waiting subscribes fail."""
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
            async with asyncio.timeout(self._timeout):
                await self._connected.wait()
                pubsub = self._pubsub
                if pubsub is None:  # dropped again between the wake-up and now
                    raise BackendUnavailable(f"Redis at {self._address()}: pub/sub reconnecting")
                if self._feeds.get(channel) is feed and feed.state == _SUBSCRIBING:
                    with translated(self._address, "subscribe"):
                        await self._send_subscribe(pubsub, [channel])
                await asyncio.shield(feed.confirmed)
        except BaseException as exc:
            if self._feeds.get(channel) is feed:
                del self._feeds[channel]
                await self._unsubscribe_quietly(channel)
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable(
                    f"Redis at {self._address()} did not confirm the subscription in time"
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

    def release(self, channel: str) -> _Feed | None:
        """Give up ``channel`` without a word to Redis (its slot left this node): the
        feed, with the position it reached, goes to another link's :meth:`adopt`. A
        subscribe still waiting fails with :class:`ChannelMoved`."""
        feed = self._feeds.pop(channel, None)
        if feed is None:
            return None
        if feed.sync is not None:
            feed.sync.cancel()
            feed.sync = None
        if feed.state == _SUBSCRIBING:
            if not feed.confirmed.done():
                feed.confirmed.set_exception(ChannelMoved(
                    f"channel {channel!r} moved away from {self._address()}"))
            return None
        feed.state = _RESUBSCRIBING
        feed.syncing = True  # hold live messages until the gap is filled
        return feed

    async def adopt(self, channel: str, feed: _Feed) -> None:
        """Take over a live channel released by another link: subscribe it here; once
        confirmed it catches up from the position it reached (see :meth:`release`)."""
        if self._closed or channel in self._feeds:
            return
        self._feeds[channel] = feed
        self._ensure_reader()
        await self.resubscribe([channel])

    async def resubscribe(self, channels: list[str]) -> None:
        """Subscribe ``channels`` again on this link (the cluster moved their slot and
        back, or a subscription was dropped): each catches up once confirmed."""
        for channel in channels:
            feed = self._feeds.get(channel)
            if feed is not None and feed.state == _LIVE:
                feed.state = _RESUBSCRIBING
                feed.syncing = True
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reader subscribes every feed when it connects
        try:
            await self._send_subscribe(pubsub, channels)
        except Exception as exc:
            # The reader sees the broken connection too, and resubscribes all.
            logger.debug("resubscribing %d channels failed: %s", len(channels), exc)

    async def _send_subscribe(self, pubsub: PubSub, channels: list[str]) -> None:
        names = [self._pub_channel(channel) for channel in channels]
        if self._sharded:
            # One command per channel: the channels of one SSUBSCRIBE must share a slot.
            for name in names:
                await pubsub.ssubscribe(name)
            return
        for i in range(0, len(names), 1000):
            await pubsub.subscribe(*names[i : i + 1000])

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
                _raise_if_cancelled()
                if self._on_link_lost is not None:
                    self._on_link_lost()
                delay = full_jitter(attempt, base=0.1, cap=5.0)
                logger.warning("Redis at %s: pub/sub connection lost (%s); reconnecting in "
                               "%.2f s", self._address(), exc or type(exc).__name__, delay)
                await self._drop_pubsub()
                await asyncio.sleep(delay)
                attempt += 1

    async def _open_pubsub(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]
            channels = list(self._feeds)
            await self._send_subscribe(pubsub, channels)
        except BaseException:
            await pubsub.aclose()
            raise
        self._pubsub = pubsub
        self._connected.set()
        if not channels:
            # Nothing to read until a first subscription; an empty pub/sub connection
            # makes redis-py return at once, so ping to keep the read blocking.
            await pubsub.ping()

    async def _read_until_broken(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        pinged = False
        while True:
            try:
                message = await pubsub.get_message(timeout=self.ping_interval)
            except (MovedError, AskError) as exc:
                if not self._sharded:
                    raise
                # A subscribe answered MOVED: the slot is another node's now.
                self._moved([channel for channel in self._feeds
                             if key_slot(self._pub_channel(channel).encode()) == exc.slot_id])
                continue
            if message is None:
                if pinged:
                    raise TimeoutError(f"no answer to a ping within {self.ping_interval} s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind = message["type"]
            if kind == self._message_kind:
                self._on_message(message["channel"], message["data"])
            elif kind == self._confirm_kind:
                self._on_confirmed(self._channel_of(message["channel"]))
            elif kind == "sunsubscribe":
                # Ours come after the feed is gone; one for a channel still here is
                # Redis dropping it because its slot left the node (failover, resharding).
                channel = self._channel_of(message["channel"])
                if channel in self._feeds:
                    self._moved([channel])

    def _moved(self, channels: list[str]) -> None:
        if channels and self._on_moved is not None:
            self._on_moved(channels)

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
                    f"Redis at {self._address()}: pub/sub connection lost while subscribing"))

    async def _unsubscribe_quietly(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            if self._sharded:
                await pubsub.sunsubscribe(self._pub_channel(channel))
            else:
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
            publication = Publication(channel, unpack(raw),
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
        if not is_after(position, last):
            return True  # already delivered (read from history while catching up)
        if last is not None and position.epoch == last.epoch:
            if position.offset > last.offset + 1:
                feed.buffer.insert(0, publication)
                self._start_sync(channel, feed, last)
                return False
        elif last is not None:
            # A new epoch: Redis restarted or failed over, and what this node's
            # subscribers were owed from the old one may be gone. Never cross it
            # silently: they resubscribe from their positions and learn recovered=false.
            self._report_lost(channel, last)
        self._deliver(feed, publication)
        return True

    def _report_lost(self, channel: str, since: Position | None) -> None:
        logger.warning("channel %r: publications after %s are gone from Redis; "
                       "its subscribers must resubscribe", channel, since)
        if self._on_lost is not None:
            try:
                self._on_lost(channel)
            except Exception:
                logger.exception("on_lost listener failed for channel %r", channel)

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
                    top = await self._read(channel, None, 0)
                    since = Position(top.position.epoch, 0)
                result = await self._read(channel, since, self.sync_limit)
            except BackendError as exc:
                _raise_if_cancelled()
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
                    if is_after(publication.position, feed.last):
                        self._deliver(feed, publication)
                if feed.last is None or feed.last.epoch != result.position.epoch:
                    feed.last = result.position
            else:
                feed.last = result.position
                self._report_lost(channel, since)
            buffer, feed.buffer = feed.buffer, []
            feed.syncing = False
            for i, publication in enumerate(buffer):
                if not self._offer(channel, feed, publication):
                    feed.buffer.extend(buffer[i + 1 :])  # another gap: a new sync runs
                    return
            return



def _raise_if_cancelled() -> None:
    """End a retry loop whose task is being cancelled. redis-py can lose a cancellation
    that arrives as a connection fails (the call raises ConnectionError instead, seen
    about 1 in 20 times during a failover), and a loop that retries on errors would
    then never end, nor :meth:`ChannelFeeds.close` that waits for it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def unpack(raw: bytes) -> object:
    """Data as stored and published: msgpack."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)

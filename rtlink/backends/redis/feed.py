"""The node's pub/sub link to Redis: one connection of its own for every channel the node
has local subscribers for, and the catch-up that makes a broker blip lose nothing.

Each subscribed channel has a :class:`_Feed`: the last position handed to the hub (or,
before any, the channel's top when it was subscribed), and while the feed is being
(re)subscribed or a gap is being filled from history, the live messages that wait.

* **Subscribing** is batched: the subscribes of one turn of the event loop go out as
  one ``SUBSCRIBE`` of up to 1,000 channels (pipelined; on a cluster one ``SSUBSCRIBE``
  per slot); once Redis confirmed them, one ``TOPS`` script reads up to 500 channels'
  latest positions (4 scripts in flight at most). A channel's top read *after* its
  subscription took effect is where the node starts: every later publication reaches
  it live, and it knows the channel's top from then on — so the backend answers a
  subscribe without ``since`` from memory (:meth:`ChannelFeeds.known`).
* **After a reconnection** every channel is subscribed again the same way, and its top
  compared with the last position delivered: history is read only where they differ
  (a gap), through the backend's bounded history reads. A new epoch, or a gap that
  history cannot fill, is reported lost (the hub then asks the channel's subscribers to
  resubscribe, and they learn ``recovered = false``). One summary line is logged per
  reconnection, not one per channel.
* **Unsubscribing lingers** (``linger`` seconds): the channel stays subscribed in Redis,
  its position tracked but nothing delivered, so a long poll that comes back at once,
  or a client hopping between channels, costs no Redis command.

On Redis Cluster (``sharded=True``) the link is one master's: a channel whose slot left
the node (Redis says ``sunsubscribe``, or ``MOVED`` to a subscribe) is handed to
``on_moved``; :mod:`.cluster` then moves it, with its position, to the link of its new
owner (:meth:`ChannelFeeds.release`, :meth:`ChannelFeeds.adopt`), where it catches up
like after any reconnection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable

import msgpack
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from ...backoff import full_jitter
from ...errors import BackendError, BackendUnavailable
from ...positions import Position, is_after
from ...protocol import Publication
from ..base import HistoryResult, LostListener, PublicationListener
from .link import PubSubLink, ReplyError, open_link

__all__ = ["ChannelFeeds", "ChannelMoved", "HistoryReader", "TopsReader", "unpack"]

logger = logging.getLogger("rtlink.backends.redis")

#: Reads a channel's history after a position, at most so many publications.
HistoryReader = Callable[[str, Position, int], Awaitable[HistoryResult]]
#: The latest positions of channels, in their order (a new channel is created at 0;
#: None where it cannot be: a read-only replica).
TopsReader = Callable[[list[str]], Awaitable[list["Position | None"]]]

#: Channels per TOPS script, and such scripts in flight per link.
_TOPS_BATCH = 500
_TOPS_CONCURRENCY = 4
#: Channels named in a summary line at most.
_NAMED = 5
#: A subscribe waits this many ``timeout``s at most while Redis keeps answering.
_PATIENCE = 6


class ChannelMoved(BackendUnavailable):
    """The channel's slot left this link's node while it was being subscribed (Redis
    Cluster): subscribe again on its new owner."""


class _Feed:
    """What this node knows about one channel it subscribes to in Redis."""

    __slots__ = ("channel", "name", "ready", "confirmed", "sent", "syncing", "last",
                 "buffer", "sync", "quiet", "linger", "epoch_bytes", "epoch")

    def __init__(self, channel: str, name: bytes, ready: asyncio.Future[None]) -> None:
        self.channel = channel
        #: The Redis pub/sub channel.
        self.name = name
        #: Done once the channel is first live (what subscribe() waits for).
        self.ready = ready
        #: Redis confirmed the last subscribe sent for it on the current connection.
        self.confirmed = False
        #: The generation of the link a subscribe for it was last sent on (-1: none).
        self.sent = -1
        #: Live messages wait in ``buffer``: the top is not read yet, or a gap is filled.
        self.syncing = True
        #: The position of the last publication handed over (at first, the top).
        self.last: Position | None = None
        self.buffer: list[Publication] = []
        #: The task filling a gap, while one runs.
        self.sync: asyncio.Task[None] | None = None
        #: Unsubscribed, still tracked for ``linger`` seconds: nothing is delivered.
        self.quiet = False
        self.linger: asyncio.TimerHandle | None = None
        # The epoch of the last message, as received and as text: decoded once per
        # epoch instead of once per message.
        self.epoch_bytes = b""
        self.epoch = ""


class _Round:
    """The catch-up after one (re)connection: what one summary line says."""

    def __init__(self, channels: set[str]) -> None:
        self.started = time.monotonic()
        self.pending = channels
        self.total = len(channels)
        self.gaps = 0
        self.read = 0
        self.lost: list[str] = []
        self.failures = 0


class _Budget:
    """Log lines of one kind: at most ``per_minute`` a minute, the rest counted and
    mentioned in the next line that is written (a storm must not become a log flood)."""

    def __init__(self, per_minute: int = 10) -> None:
        self.per_minute = per_minute
        self._window = 0.0
        self._written = 0
        self._skipped = 0

    def log(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window >= 60:
            self._window, self._written = now, 0
        if self._written >= self.per_minute:
            self._skipped += 1
            return
        self._written += 1
        if self._skipped:
            message += " (%d similar lines skipped)"
            args = (*args, self._skipped)
            self._skipped = 0
        logger.log(level, message, *args)


class ChannelFeeds:
    """The pub/sub connection of one node and a feed per subscribed channel.

    Args:
        connection: makes a new, unconnected redis-py connection to the server (the
            link's own: never one of the command pool).
        address: names the server for messages (called when one is written).
        pub_channel: the Redis pub/sub channel of an rtlink channel.
        read: reads a channel's history after a position (bounded by the backend).
        tops: reads many channels' latest positions at once.
        ping_interval: seconds of silence before a ping; as long again without an
            answer, and the connection is presumed dead.
        sync_limit: publications read at most to fill one gap.
        timeout: seconds a subscribe waits for the connection and the confirmation.
        linger: seconds a channel stays subscribed in Redis after the node's last
            subscriber left (0: unsubscribe at once).
        sharded: use sharded pub/sub (Redis Cluster: this link is one node's).
        on_moved: called with channels whose slot left this node (sharded only).
        on_link_lost: called each time the connection failed (sharded only: the node
            may have failed over, and the cluster's map should be read again).
        on_forget: called with a channel once the link dropped it (after its linger).
        on_presence: called with a channel and the payload of each presence event
            published on its pub/sub channel (a payload that begins with ``!``,
            which no publication does: theirs begin with the epoch).
    """

    def __init__(
        self,
        connection: Callable[[], AbstractConnection],
        *,
        address: Callable[[], str],
        pub_channel: Callable[[str], str],
        read: HistoryReader,
        tops: TopsReader,
        ping_interval: float,
        sync_limit: int,
        timeout: float,
        linger: float = 0.0,
        sharded: bool = False,
        on_moved: Callable[[list[str]], None] | None = None,
        on_link_lost: Callable[[], None] | None = None,
        on_forget: Callable[[str], None] | None = None,
        on_presence: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.ping_interval = ping_interval
        self.sync_limit = sync_limit
        self._connection = connection
        self._address = address
        self._pub_channel = pub_channel
        self._read = read
        self._tops = tops
        self._timeout = timeout
        self._linger = linger
        self._sharded = sharded
        self._on_moved = on_moved
        self._on_link_lost = on_link_lost
        self._on_forget = on_forget
        self._on_presence = on_presence
        self._listener: PublicationListener | None = None
        self._on_lost: LostListener | None = None
        self._feeds: dict[str, _Feed] = {}
        self._by_name: dict[bytes, _Feed] = {}
        self._link: PubSubLink | None = None
        #: Counts links made: work begun for one link is dropped when it has gone.
        self._generation = 0
        self._connected = asyncio.Event()
        self._lost: asyncio.Future[Exception] | None = None
        self._reader: asyncio.Task[None] | None = None
        # Subscribes and unsubscribes sent on the current link and not yet answered,
        # per pub/sub channel: a confirmation counts only once the last subscribe sent
        # is answered (an unsubscribe then a subscribe may both be in flight).
        self._subscribing: collections.Counter[bytes] = collections.Counter()
        self._unsubscribing: collections.Counter[bytes] = collections.Counter()
        # What the current turn of the event loop asked for, sent at its end.
        self._to_subscribe: dict[bytes, None] = {}
        self._to_unsubscribe: dict[bytes, None] = {}
        self._send_handle: asyncio.Handle | None = None
        self._to_check: collections.deque[_Feed] = collections.deque()
        self._checker: asyncio.Task[None] | None = None
        self._syncs: set[asyncio.Task[None]] = set()
        self._round: _Round | None = None
        self._lost_lines = _Budget()
        self._failure_lines = _Budget()
        self._closed = False

    def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Hand publications to ``listener`` and lost channels to ``on_lost``."""
        self._listener = listener
        self._on_lost = on_lost

    async def reconnect(self) -> None:
        """Drop the pub/sub connection (the master moved): the reader reconnects and
        catches every channel up, as after any loss."""
        link = self._link
        if link is not None:
            link.abort(ConnectionError("reconnecting to the new master"))

    @property
    def connected(self) -> bool:
        """Whether the pub/sub connection is up."""
        return self._connected.is_set()

    @property
    def channels(self) -> list[str]:
        """The channels subscribed (or being subscribed, or lingering) in Redis."""
        return list(self._feeds)

    def known(self, channel: str) -> Position | None:
        """The channel's latest position as far as this node knows for sure, or None.

        Known when the channel is subscribed, confirmed, and caught up: every
        publication after this position reaches the node live, in order (a subscriber
        that joined the channel on this node gets them). None while (re)subscribing,
        filling a gap, or without a connection: then ask Redis.
        """
        feed = self._feeds.get(channel)
        if feed is None or feed.syncing or not feed.confirmed or self._link is None:
            return None
        return feed.last

    def delivered(self, channel: str) -> Position | None:
        """The position of the channel's last publication handed to the listener (at
        first, its top when subscribed), or None when not subscribed here."""
        feed = self._feeds.get(channel)
        return None if feed is None else feed.last

    async def close(self) -> None:
        """Stop reading and close the pub/sub connection; waiting subscribes fail."""
        self._closed = True
        tasks = [t for t in (self._reader, self._checker, *self._syncs) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._reader = self._checker = None
        if self._send_handle is not None:
            self._send_handle.cancel()
            self._send_handle = None
        if self._link is not None:
            self._link.close()
            self._link = None
        self._connected.clear()
        for feed in self._feeds.values():
            if feed.linger is not None:
                feed.linger.cancel()
            self._fail(feed, BackendUnavailable("backend closed"))
        self._feeds.clear()
        self._by_name.clear()
        self._listener = self._on_lost = None

    # --- subscribing -----------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe the node to ``channel`` in Redis; returns once Redis confirmed it
        and the node knows where the channel is.

        Raises:
            BackendUnavailable: the pub/sub connection is down or Redis did not confirm
                in time (``ChannelMoved`` on a cluster: the slot moved meanwhile).
        """
        if self._closed:
            raise BackendUnavailable("backend closed")
        feed = self._feeds.get(channel)
        if feed is None:
            feed = self._add(channel)
        elif feed.quiet:  # lingering: it is live again, for free
            feed.quiet = False
            if feed.linger is not None:
                feed.linger.cancel()
                feed.linger = None
        if feed.ready.done() and feed.ready.exception() is None:
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._timeout):
                        await asyncio.shield(feed.ready)
                    return
                except TimeoutError:
                    # Slow is not down: while Redis answers, the node is only busy (a
                    # storm of connections, each turn of its loop long), and failing
                    # would make the client come back and add to the storm.
                    if (not self._answering()
                            or loop.time() - began >= _PATIENCE * self._timeout):
                        raise
        except BaseException as exc:
            if self._feeds.get(channel) is feed and not feed.ready.done():
                self._drop(channel, feed)
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable(
                    f"Redis at {self._address()}: the subscription was not confirmed "
                    f"in {loop.time() - began:.1f} s") from None
            raise

    def _answering(self) -> bool:
        """Whether Redis said something on the link within the last ``timeout``."""
        link = self._link
        return (link is not None
                and asyncio.get_running_loop().time() - link.last_read < self._timeout)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe the node from ``channel``: after ``linger`` seconds, unless it is
        subscribed again meanwhile; nothing is delivered from now on."""
        feed = self._feeds.get(channel)
        if feed is None or feed.quiet:
            return
        if self._linger > 0 and feed.ready.done() and self._link is not None:
            feed.quiet = True
            feed.linger = asyncio.get_running_loop().call_later(
                self._linger, self._end_linger, channel, feed)
            return
        self._drop(channel, feed)

    def release(self, channel: str) -> _Feed | None:
        """Give up ``channel`` without a word to Redis (its slot left this node): the
        feed, with the position it reached, goes to another link's :meth:`adopt`. A
        subscribe still waiting fails with :class:`ChannelMoved`."""
        feed = self._feeds.pop(channel, None)
        if feed is None:
            return None
        self._by_name.pop(feed.name, None)
        self._subscribing.pop(feed.name, None)
        self._to_subscribe.pop(feed.name, None)
        self._stop_sync(feed)
        self._settled(channel)
        if not feed.ready.done():
            self._fail(feed, ChannelMoved(
                f"channel {channel!r} moved away from {self._address()}"))
            return None
        if feed.quiet:
            if feed.linger is not None:
                feed.linger.cancel()
            return None
        feed.confirmed = False
        feed.syncing = True  # hold live messages until the gap is filled
        return feed

    async def adopt(self, channel: str, feed: _Feed) -> None:
        """Take over a live channel released by another link: subscribe it here; once
        confirmed it catches up from the position it reached (see :meth:`release`)."""
        if self._closed or channel in self._feeds:
            return
        self._feeds[channel] = feed
        self._by_name[feed.name] = feed
        self._ensure_reader()
        self._queue_subscribe(feed)

    async def resubscribe(self, channels: list[str]) -> None:
        """Subscribe ``channels`` again on this link (the cluster moved their slot and
        back, or a subscription was dropped): each catches up once confirmed."""
        for channel in channels:
            feed = self._feeds.get(channel)
            if feed is not None:
                self._stop_sync(feed)
                self._queue_subscribe(feed)

    def _add(self, channel: str) -> _Feed:
        feed = _Feed(channel, self._pub_channel(channel).encode(),
                     asyncio.get_running_loop().create_future())
        self._feeds[channel] = feed
        self._by_name[feed.name] = feed
        self._ensure_reader()
        self._queue_subscribe(feed)
        return feed

    def _queue_subscribe(self, feed: _Feed) -> None:
        """Subscribe ``feed`` at the end of this turn of the loop, with the others of
        the turn (without a link, the reader subscribes every feed when it connects)."""
        feed.confirmed = False
        feed.syncing = True
        if self._link is None:
            return
        self._to_subscribe[feed.name] = None
        self._to_unsubscribe.pop(feed.name, None)
        self._schedule_send()

    def _end_linger(self, channel: str, feed: _Feed) -> None:
        if self._feeds.get(channel) is feed and feed.quiet:
            self._drop(channel, feed)

    def _drop(self, channel: str, feed: _Feed) -> None:
        """Forget ``channel`` and unsubscribe it in Redis (with the others of the turn)."""
        del self._feeds[channel]
        if self._by_name.get(feed.name) is feed:
            del self._by_name[feed.name]
        if feed.linger is not None:
            feed.linger.cancel()
        self._stop_sync(feed)
        self._fail(feed, BackendUnavailable(f"channel {channel!r} unsubscribed meanwhile"))
        self._to_subscribe.pop(feed.name, None)
        if self._link is not None and feed.sent == self._generation:
            self._to_unsubscribe[feed.name] = None
            self._schedule_send()
        self._settled(channel)
        if self._on_forget is not None:
            self._on_forget(channel)

    def _schedule_send(self) -> None:
        if self._send_handle is None:
            self._send_handle = asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        """Send the subscribes and unsubscribes asked for during this turn of the loop."""
        self._send_handle = None
        link = self._link
        subscribe, self._to_subscribe = list(self._to_subscribe), {}
        unsubscribe, self._to_unsubscribe = list(self._to_unsubscribe), {}
        if link is None:
            return
        if unsubscribe:
            self._unsubscribing.update(unsubscribe)
            link.unsubscribe(unsubscribe)
        if subscribe:
            self._subscribing.update(subscribe)
            for name in subscribe:
                feed = self._by_name.get(name)
                if feed is not None:
                    feed.sent = self._generation
            link.subscribe(subscribe)

    @staticmethod
    def _fail(feed: _Feed, error: Exception) -> None:
        if not feed.ready.done():
            feed.ready.set_exception(error)
            feed.ready.exception()  # retrieved: the waiter may have gone

    # --- the connection --------------------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(
                self._read_forever(), name="rtlink-redis-pubsub")

    async def _read_forever(self) -> None:
        """Own the pub/sub connection: (re)connect, subscribe everything, and wait for
        the link to fail."""
        attempt = 0
        while not self._closed:
            lost = self._lost = asyncio.get_running_loop().create_future()
            try:
                link = await open_link(self._connection(), self,
                                       ping_interval=self.ping_interval,
                                       sharded=self._sharded)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _raise_if_cancelled()
                error: Exception = exc
            else:
                attempt = 0
                self._up(link)
                error = await lost
            if self._closed:
                return
            if self._on_link_lost is not None:
                self._on_link_lost()
            delay = full_jitter(attempt, base=0.1, cap=5.0)
            logger.warning("Redis at %s: pub/sub connection %s (%s); reconnecting in "
                           "%.2f s", self._address(),
                           "lost" if self._link is not None else "failed",
                           error or type(error).__name__, delay)
            self._down()
            await asyncio.sleep(delay)
            attempt += 1

    def _up(self, link: PubSubLink) -> None:
        """A new link: subscribe every feed, in batches, all pipelined."""
        self._link = link
        self._generation += 1
        self._connected.set()
        names = []
        for feed in self._feeds.values():
            feed.confirmed = False
            feed.syncing = True
            feed.sent = self._generation
            names.append(feed.name)
        if names:
            self._subscribing.update(names)
            link.subscribe(names)

    def _down(self) -> None:
        """The link is gone: every feed must be subscribed again and caught up."""
        self._connected.clear()
        link, self._link = self._link, None
        if link is not None:
            link.close()
        self._generation += 1
        self._subscribing.clear()
        self._unsubscribing.clear()
        self._to_subscribe.clear()
        self._to_unsubscribe.clear()
        self._to_check.clear()
        for channel, feed in list(self._feeds.items()):
            if feed.quiet:  # lingering: not worth catching up
                self._drop(channel, feed)
                continue
            # A gap being read goes on: what it reads is still the channel's history
            # after the feed's last position, and delivering it shortens the next gap
            # (links that keep failing before a catch-up ends must not fall further
            # behind, past the history's size).
            feed.confirmed = False
            feed.syncing = True  # hold live messages until the gap is filled
        live = {channel for channel, feed in self._feeds.items() if feed.ready.done()}
        if self._round is not None:  # lost again before the catch-up ended: one line
            self._round.pending |= live
            self._round.total = max(self._round.total, len(self._round.pending))
        elif live:
            self._round = _Round(live)

    # --- LinkHandler: called from the link's data_received ---------------------------------

    def link_message(self, name: bytes, payload: bytes) -> None:
        """A publication: deliver it, or hold it while the feed catches up."""
        feed = self._by_name.get(name)
        if feed is None:
            return  # unsubscribed meanwhile
        if payload[:1] == b"!":
            # Presence rides on the channel's pub/sub channel: every node with a
            # subscriber gets it, in order, with no subscription of its own. It has no
            # position: a catch-up neither holds nor reorders it.
            if self._on_presence is not None:
                self._on_presence(feed.channel, payload)
            return
        try:
            epoch, offset, raw = payload.split(b" ", 2)
            if epoch != feed.epoch_bytes:
                feed.epoch_bytes, feed.epoch = epoch, epoch.decode()
            publication = Publication(feed.channel, unpack(raw),
                                      Position(feed.epoch, int(offset)))
        except Exception:
            logger.exception("undecodable message on %r", name)
            return
        if feed.syncing:
            feed.buffer.append(publication)
            return
        last = feed.last
        # The usual case, first: the next offset of the same epoch.
        if (last is not None and publication.position.offset == last.offset + 1
                and feed.epoch == last.epoch):
            self._deliver(feed, publication)
        else:
            self._offer(feed, publication)

    def link_subscribed(self, name: bytes) -> None:
        """Redis confirmed a subscribe: once the last one sent is, read the top."""
        count = self._subscribing.get(name, 0)
        if count > 1:
            self._subscribing[name] = count - 1
            return
        if count == 0:
            return  # not an answer to this link's subscribes
        del self._subscribing[name]
        feed = self._by_name.get(name)
        if feed is None or feed.confirmed:
            return
        feed.confirmed = True
        self._queue_check(feed)

    def _queue_check(self, feed: _Feed) -> None:
        """Have the feed's top read with the others of the moment (a sync still
        running from before the last reconnection checks it again when it ends)."""
        self._to_check.append(feed)
        if self._checker is None or self._checker.done():
            self._checker = asyncio.get_running_loop().create_task(
                self._check_forever(), name="rtlink-redis-tops")

    def link_unsubscribed(self, name: bytes) -> None:
        """Redis unsubscribed ``name``: as asked, or (cluster) because its slot moved."""
        count = self._unsubscribing.get(name, 0)
        if count:
            if count > 1:
                self._unsubscribing[name] = count - 1
            else:
                del self._unsubscribing[name]
            return
        feed = self._by_name.get(name)
        if feed is not None and self._sharded:
            self._moved([feed.channel])

    def link_error(self, error: ReplyError) -> None:
        """A refused (S)SUBSCRIBE: MOVED/ASK on a cluster moves the slot's channels;
        anything else drops the link (it reconnects and subscribes again)."""
        code, _, rest = error.partition(" ")
        if self._sharded and code in ("MOVED", "ASK"):
            slot = int(rest.split(" ", 1)[0])
            moved = []
            for name in list(self._subscribing):
                if key_slot(name) == slot:
                    del self._subscribing[name]
                    feed = self._by_name.get(name)
                    if feed is not None:
                        moved.append(feed.channel)
            self._moved(moved)
            return
        link = self._link
        if link is not None:
            link.abort(ConnectionError(f"Redis refused a pub/sub command: {error}"))

    def link_lost(self, error: Exception) -> None:
        """The link failed: the reader reconnects."""
        lost = self._lost
        if lost is not None and not lost.done():
            lost.set_result(error)

    def _moved(self, channels: list[str]) -> None:
        if channels and self._on_moved is not None:
            self._on_moved(channels)

    # --- catching up -----------------------------------------------------------------------

    async def _check_forever(self) -> None:
        """Read the tops of confirmed feeds, ``_TOPS_BATCH`` channels per script and
        ``_TOPS_CONCURRENCY`` scripts at once, and compare."""
        queue = self._to_check
        while queue:
            batches: list[list[_Feed]] = []
            while queue and len(batches) < _TOPS_CONCURRENCY:
                batch: list[_Feed] = []
                while queue and len(batch) < _TOPS_BATCH:
                    batch.append(queue.popleft())
                batches.append(batch)
            await asyncio.gather(*(self._check(batch, self._generation)
                                   for batch in batches))

    async def _check(self, batch: list[_Feed], generation: int) -> None:
        attempt = 0
        while generation == self._generation:
            feeds = [feed for feed in batch if self._feeds.get(feed.channel) is feed
                     and feed.confirmed and feed.syncing and feed.sync is None]
            if not feeds:
                return
            try:
                tops = await self._tops([feed.channel for feed in feeds])
            except BackendError as exc:
                _raise_if_cancelled()
                # First subscribes fail now (503: their clients retry later); channels
                # that were live are retried until Redis answers.
                for feed in feeds:
                    if not feed.ready.done():
                        self._fail(feed, exc)
                        self._drop(feed.channel, feed)
                delay = full_jitter(attempt, base=0.1, cap=5.0)
                self._failed(f"reading the tops of {len(feeds)} channels", exc, delay)
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if generation != self._generation:
                return
            for feed, top in zip(feeds, tops, strict=True):
                if self._feeds.get(feed.channel) is feed and feed.confirmed:
                    self._checked(feed, top)
            return

    def _checked(self, feed: _Feed, top: Position | None) -> None:
        """Compare a (re)subscribed feed's last position with the channel's top."""
        last = feed.last
        if top is None:
            # No meta hash, and none could be made (a read-only replica): deliver what
            # comes. If something was delivered, its history is gone.
            if last is not None and last.offset:
                self._report_lost(feed, last)
            feed.last = None
        elif last is None:  # first subscribed: it starts at the top
            feed.last = top
        elif last.epoch == top.epoch and last.offset < top.offset:
            self._start_sync(feed, last)  # a gap: read it
            return
        elif last.epoch != top.epoch and last.offset == 0:
            # Nothing of the old epoch was delivered: nothing to lose. Publications of
            # the new one are read from its start.
            feed.last = Position(top.epoch, 0)
            if top.offset:
                self._start_sync(feed, feed.last)
                return
        elif last != top:
            # A new epoch (Redis restarted or failed over) or a top below what was
            # delivered: what this node's subscribers were owed may be gone. Never
            # cross it silently: they resubscribe from their positions and learn
            # recovered=false.
            self._report_lost(feed, last)
            feed.last = top
        self._go_live(feed)

    def _start_sync(self, feed: _Feed, since: Position) -> None:
        if feed.quiet:  # lingering: not worth a history read, let it go now
            self._drop(feed.channel, feed)
            return
        feed.syncing = True
        self._stop_sync(feed)
        if self._round is not None and feed.channel in self._round.pending:
            self._round.gaps += 1
        task = feed.sync = asyncio.get_running_loop().create_task(
            self._sync(feed, since, self._generation), name="rtlink-redis-sync")
        self._syncs.add(task)
        task.add_done_callback(self._syncs.discard)

    def _stop_sync(self, feed: _Feed) -> None:
        if feed.sync is not None:
            feed.sync.cancel()
            feed.sync = None

    async def _sync(self, feed: _Feed, since: Position, generation: int) -> None:
        """Fill a feed's gap after ``since`` from history, then drain its buffer.

        A read that ends after the link failed again still delivers what it read (the
        history after the feed's last position); the new link's check does the rest.
        """
        attempt = 0
        while self._feeds.get(feed.channel) is feed:
            try:
                result = await self._read(feed.channel, since, self.sync_limit)
            except BackendError as exc:
                _raise_if_cancelled()
                if generation != self._generation:
                    break  # the new link's check reads again
                delay = full_jitter(attempt, base=0.1, cap=5.0)
                self._failed(f"catching up {feed.channel!r}", exc, delay)
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if self._feeds.get(feed.channel) is not feed:
                return  # unsubscribed meanwhile
            current = generation == self._generation
            if result.recovered:
                for publication in result.publications:
                    if is_after(publication.position, feed.last):
                        self._deliver(feed, publication)
                        if self._round is not None and feed.channel in self._round.pending:
                            self._round.read += 1
                if current and (feed.last is None
                                or feed.last.epoch != result.position.epoch):
                    feed.last = result.position
            elif current:
                self._report_lost(feed, since)
                feed.last = result.position
            feed.sync = None
            if current:
                self._go_live(feed)
                return
            break
        if self._feeds.get(feed.channel) is feed:
            feed.sync = None
            if feed.confirmed and generation != self._generation:
                self._queue_check(feed)

    def _go_live(self, feed: _Feed) -> None:
        """The feed caught up: deliver what waited, and tell its first subscribe."""
        buffer, feed.buffer = feed.buffer, []
        feed.syncing = False
        for i, publication in enumerate(buffer):
            if not self._offer(feed, publication):
                feed.buffer.extend(buffer[i + 1:])  # another gap: a new sync runs
                return
        if not feed.ready.done():
            feed.ready.set_result(None)
        self._settled(feed.channel)

    def _settled(self, channel: str) -> None:
        """``channel`` is caught up (or gone): the summary line is due after the last."""
        summary = self._round
        if summary is not None:
            summary.pending.discard(channel)
            if not summary.pending:
                self._round = None
                self._summarize(summary)

    def _offer(self, feed: _Feed, publication: Publication) -> bool:
        """Deliver ``publication`` if it is the next one; start catching up on a gap.

        Returns False when a catch-up started (the publication waits in the buffer).
        """
        last, position = feed.last, publication.position
        if last is not None and position.epoch != last.epoch and last.offset == 0:
            last = feed.last = Position(position.epoch, 0)  # nothing of the old epoch
        if last is not None and position.epoch == last.epoch:
            if position.offset <= last.offset:
                return True  # already delivered (read from history while catching up)
            if position.offset > last.offset + 1:
                feed.buffer.insert(0, publication)
                self._start_sync(feed, last)
                return False
        elif last is not None:
            # A new epoch: Redis restarted or failed over (see _checked).
            self._report_lost(feed, last)
        self._deliver(feed, publication)
        return True

    def _deliver(self, feed: _Feed, publication: Publication) -> None:
        feed.last = publication.position
        if self._listener is not None and not feed.quiet:
            try:
                self._listener(publication)
            except Exception:
                logger.exception("publication listener failed for channel %r",
                                 publication.channel)

    def _report_lost(self, feed: _Feed, since: Position | None) -> None:
        if feed.quiet:
            return  # lingering: nobody to tell
        summary = self._round
        if summary is not None and feed.channel in summary.pending:
            summary.lost.append(feed.channel)
        else:
            self._lost_lines.log(logging.WARNING, "channel %r: publications after %s are "
                                 "gone from Redis; its subscribers must resubscribe",
                                 feed.channel, since)
        if self._on_lost is not None:
            try:
                self._on_lost(feed.channel)
            except Exception:
                logger.exception("on_lost listener failed for channel %r", feed.channel)

    def _failed(self, what: str, error: Exception, delay: float) -> None:
        if self._round is not None:
            self._round.failures += 1
        self._failure_lines.log(logging.WARNING, "Redis at %s: %s failed (%s); retrying "
                                "in %.2f s", self._address(), what, error, delay)

    def _summarize(self, summary: _Round) -> None:
        """One line for a whole catch-up, however many channels it took."""
        took = time.monotonic() - summary.started
        lost = summary.lost
        named = ", ".join(repr(channel) for channel in lost[:_NAMED])
        more = f" and {len(lost) - _NAMED} more" if len(lost) > _NAMED else ""
        logger.log(logging.WARNING if lost or summary.failures else logging.INFO,
                   "Redis at %s: pub/sub connection back, %d channels subscribed again "
                   "and caught up in %.2f s: %d read a gap from history (%d publications), "
                   "%d lost%s%s", self._address(), summary.total, took, summary.gaps,
                   summary.read, len(lost),
                   f" ({named}{more}: their subscribers resubscribe)" if lost else "",
                   f", {summary.failures} reads retried" if summary.failures else "")


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


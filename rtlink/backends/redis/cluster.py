"""The node's pub/sub links to a Redis Cluster: one per master that owns a subscribed
channel's slot, with sharded pub/sub.

The publish script ends in ``SPUBLISH``, which Redis delivers only within the shard that
owns the channel's slot (its master and replicas), where a classic ``PUBLISH`` would be
broadcast over the cluster bus to every node. So a node subscribes each channel on the
master that owns it (``SSUBSCRIBE``): one :class:`~.feed.ChannelFeeds` link per such
master, each with the same catch-up as on a single Redis.

When a slot changes hands — a failover (the old master, if alive, says
``sunsubscribe``; if dead, its link fails), resharding (``MOVED``) — the links report
the channels concerned; this module reads the cluster's slot map again (redis-py's
``NodesManager``) and moves each channel, with the position it reached, to the link of
its new owner, where it subscribes again and reads the gap from history. The new
master has another run id, so the channel gets a new epoch there (see
:mod:`.scripts`): subscribers are told ``recovered = false`` rather than risk a silent
gap. redis-py 8's ``ClusterPubSub`` re-routes shard channels too, but silently: the
node could not tell when a subscription lapsed, and a lapse without a catch-up is a
gap. So the routing is here, and redis-py supplies the slot map and the connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ...errors import BackendUnavailable
from ...protocol import Position
from ..base import LostListener, PublicationListener
from .feed import ChannelFeeds, ChannelMoved, HistoryReader, TopsReader

__all__ = ["ClusterFeeds"]

logger = logging.getLogger("rtlink.backends.redis")

#: Seconds between two readings of the slot map while links keep failing (a dead
#: master is replaced after ``cluster-node-timeout`` plus an election).
_MAP_INTERVAL = 0.25
#: Readings of the slot map (one per _MAP_INTERVAL) that may still name the node a
#: channel was dropped from, before the node is believed: the nodes of a cluster learn
#: of a failover one after the other.
_RECHECKS = 8
#: Attempts of one subscribe whose channel moves while it is being subscribed.
_SUBSCRIBE_ATTEMPTS = 3


class ClusterFeeds:
    """The pub/sub links of one node to a Redis Cluster (see the module docstring).

    The same interface as :class:`~.feed.ChannelFeeds`, which it is made of.

    Args:
        cluster: the node's redis-py cluster client (its slot map and connection
            options are used; commands go through it).
        pub_channel, read, tops, ping_interval, sync_limit, timeout, linger,
            on_presence: as for :class:`~.feed.ChannelFeeds` (``tops`` groups its
            channels by slot).
    """

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        pub_channel: Callable[[str], str],
        read: HistoryReader,
        tops: TopsReader,
        ping_interval: float,
        sync_limit: int,
        timeout: float,
        linger: float = 0.0,
        on_presence: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._cluster = cluster
        self._link_options: dict[str, Any] = {
            "pub_channel": pub_channel, "read": read, "tops": tops,
            "ping_interval": ping_interval, "sync_limit": sync_limit, "timeout": timeout,
            "linger": linger, "on_presence": on_presence,
        }
        self._links: dict[str, ChannelFeeds] = {}
        self._idle_checks: set[asyncio.Task[None]] = set()
        self._owner: dict[str, str] = {}  # channel -> name of the node subscribed on
        self._listener: PublicationListener | None = None
        self._on_lost: LostListener | None = None
        self._moved: set[str] = set()  # channels to route again
        self._rechecks: dict[str, int] = {}  # moved, yet still mapped to their node
        self._check_all = False  # a link failed: check every channel's owner
        self._failing: set[str] = set()  # links that failed and have not reconnected
        self._unroutable = False  # the last reading of the map failed (logged once)
        self._router: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def channels(self) -> list[str]:
        """The channels subscribed (or being subscribed, or lingering) in Redis."""
        return list(self._owner)

    def known(self, channel: str) -> Position | None:
        """The channel's latest position if this node knows it (see
        :meth:`ChannelFeeds.known`)."""
        name = self._owner.get(channel)
        link = self._links.get(name) if name is not None else None
        return link.known(channel) if link is not None else None

    def delivered(self, channel: str) -> Position | None:
        """See :meth:`ChannelFeeds.delivered`."""
        name = self._owner.get(channel)
        link = self._links.get(name) if name is not None else None
        return link.delivered(channel) if link is not None else None

    def node_of(self, channel: str) -> str | None:
        """The node (``host:port``) this node subscribes ``channel`` on, if any."""
        return self._owner.get(channel)

    def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Hand publications to ``listener`` and lost channels to ``on_lost``."""
        self._listener = listener
        self._on_lost = on_lost
        for link in self._links.values():
            link.start(listener, on_lost)

    async def subscribe(self, channel: str) -> None:
        """Subscribe ``channel`` on the master that owns its slot.

        Raises:
            BackendUnavailable: the master cannot be reached, or the channel kept
                moving while it was subscribed.
        """
        if self._closed:
            raise BackendUnavailable("backend closed")
        name = self._owner.get(channel)
        link = self._links.get(name) if name is not None else None
        if link is not None:  # subscribed, lingering, or being subscribed there
            await link.subscribe(channel)
            return
        for attempt in range(_SUBSCRIBE_ATTEMPTS):
            node = await self._master_of(channel, refresh=attempt > 0)
            self._owner[channel] = node.name
            try:
                await self._link(node).subscribe(channel)
                return
            except ChannelMoved:
                if self._owner.get(channel) == node.name:
                    del self._owner[channel]
                continue
            except BaseException:
                if self._owner.get(channel) == node.name:
                    del self._owner[channel]
                raise
        raise BackendUnavailable(f"channel {channel!r} kept moving between cluster nodes "
                                 f"while it was subscribed")

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe ``channel`` (after the link's linger)."""
        name = self._owner.get(channel)
        link = self._links.get(name) if name is not None else None
        if name is None or link is None:
            self._owner.pop(channel, None)
            self._rechecks.pop(channel, None)
            return
        await link.unsubscribe(channel)
        await self._drop_if_idle(name)

    def read_map_soon(self) -> None:
        """Read the slot map again shortly (a command failed: its master may have been
        replaced). redis-py does so itself only when it retries, and the engine does
        not let it retry (see :mod:`.topology`)."""
        self._wake_router()

    async def reconnect(self) -> None:
        """Drop every link's connection: each reconnects and catches up."""
        for link in list(self._links.values()):
            await link.reconnect()

    async def close(self) -> None:
        """Stop routing and close every link; waiting subscribes fail."""
        self._closed = True
        if self._router is not None:
            self._router.cancel()
            await asyncio.gather(self._router, return_exceptions=True)
            self._router = None
        for task in list(self._idle_checks):
            task.cancel()
        for name in list(self._links):
            await self._close_link(name)
        self._owner.clear()

    # --- links ---------------------------------------------------------------------------

    async def _master_of(self, channel: str, *, refresh: bool) -> ClusterNode:
        cluster = self._cluster
        await self._read_map(again=refresh)
        slot = cluster.keyslot(self._link_options["pub_channel"](channel))
        try:
            return cluster.nodes_manager.get_node_from_slot(slot)
        except Exception as exc:  # SlotNotCoveredError: the cluster is not ok
            raise BackendUnavailable(f"Redis Cluster: no master serves slot {slot} "
                                     f"({exc})") from exc

    async def _read_map(self, *, again: bool) -> None:
        """Read the slot map the first time, or ``again`` (redis-py asks the nodes it
        knows in turn)."""
        try:
            await self._cluster.initialize()  # once
            if again:
                await self._cluster.nodes_manager.initialize()
        except Exception as exc:
            raise BackendUnavailable(f"Redis Cluster: cannot read the slot map ({exc})"
                                     ) from exc

    def _link(self, node: ClusterNode) -> ChannelFeeds:
        link = self._links.get(node.name)
        if link is not None:
            return link
        # The node's own connection options (credentials, TLS, timeouts), without
        # redis-py's retries: a lapse must reach the link, which catches up.
        options = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
        connection_class = node.connection_class

        def connection() -> AbstractConnection:
            made: AbstractConnection = connection_class(**options)
            return made

        name = node.name
        link = self._links[name] = ChannelFeeds(
            connection,
            address=lambda: f"{name} (a cluster node)",
            sharded=True,
            on_moved=self._on_moved,
            on_link_lost=lambda: self._on_link_lost(name),
            on_forget=lambda channel: self._forget(name, channel),
            **self._link_options,
        )
        if self._listener is not None and self._on_lost is not None:
            link.start(self._listener, self._on_lost)
        return link

    def _forget(self, name: str, channel: str) -> None:
        """Link ``name`` dropped ``channel`` (unsubscribed, after its linger)."""
        if self._owner.get(channel) == name:
            del self._owner[channel]
            self._rechecks.pop(channel, None)
        link = self._links.get(name)
        if link is not None and not link.channels and not self._closed:
            task = asyncio.get_running_loop().create_task(self._drop_if_idle(name))
            self._idle_checks.add(task)
            task.add_done_callback(self._idle_checks.discard)

    async def _drop_if_idle(self, name: str) -> None:
        link = self._links.get(name)
        if link is not None and not link.channels:
            await self._close_link(name)

    async def _close_link(self, name: str) -> None:
        link = self._links.pop(name, None)
        if link is not None:
            await link.close()

    # --- routing -------------------------------------------------------------------------

    def _on_moved(self, channels: list[str]) -> None:
        self._moved.update(channels)
        self._wake_router()

    def _on_link_lost(self, name: str) -> None:
        self._failing.add(name)
        self._check_all = True
        self._wake_router()

    def _wake_router(self) -> None:
        if self._closed:
            return
        self._wake.set()
        if self._router is None or self._router.done():
            self._router = asyncio.get_running_loop().create_task(
                self._route_forever(), name="rtlink-redis-cluster-router")

    async def _route_forever(self) -> None:
        """Move channels to the links of their owners, whenever links report trouble."""
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            started = time.monotonic()
            moved, self._moved = self._moved, set()
            check_all, self._check_all = self._check_all, False
            try:
                await self._read_map(again=True)
                await self._route(moved, set(self._owner) if check_all else set())
                self._unroutable = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log = logger.debug if self._unroutable else logger.warning
                log("Redis Cluster: cannot read the slot map now (%s); retrying", exc)
                self._unroutable = True
                self._moved |= moved
                self._check_all |= check_all
                self._wake.set()
            # While a link is down, its master may be replaced: read the map at this
            # pace until the link is back or its channels have moved away.
            self._failing = {name for name in self._failing
                             if name in self._links and not self._links[name].connected}
            if self._failing:
                self._check_all = True
                self._wake.set()
            await asyncio.sleep(max(0.0, _MAP_INTERVAL - (time.monotonic() - started)))

    async def _route(self, moved: set[str], check: set[str]) -> None:
        """Move the channels whose owner changed; subscribe the ``moved`` ones whose
        owner did not change once more on their node (``check`` ones are fine there:
        their link reconnects by itself).

        A node dropped a ``moved`` channel because its slot left it, but the map read
        may come from a node that has not heard yet. Subscribed again on the old node
        (a replica now takes shard subscriptions too, and gets the publications by
        replication) it still receives; and the map is read again for a while, until
        it names the new owner, where the channel then moves."""
        by_slot = self._cluster.nodes_manager
        again: dict[str, list[str]] = {}
        for channel in moved | check:
            current = self._owner.get(channel)
            if current is None:
                continue  # unsubscribed meanwhile
            slot = self._cluster.keyslot(self._link_options["pub_channel"](channel))
            owner = by_slot.get_node_from_slot(slot)
            old = self._links.get(current)
            if owner.name == current:
                if channel in moved and old is not None:
                    checks = self._rechecks.get(channel, 0)
                    if checks == 0:
                        again.setdefault(current, []).append(channel)
                    if checks < _RECHECKS:
                        self._rechecks[channel] = checks + 1
                        self._moved.add(channel)
                        self._wake.set()
                    else:
                        del self._rechecks[channel]
                continue
            self._rechecks.pop(channel, None)
            feed = old.release(channel) if old is not None else None
            self._owner[channel] = owner.name
            logger.info("channel %r moved from Redis Cluster node %s to %s",
                        channel, current, owner.name)
            if feed is not None:
                await self._link(owner).adopt(channel, feed)
            elif old is not None:
                # It was still being subscribed there: that subscribe retries itself.
                del self._owner[channel]
            if old is not None:
                await self._drop_if_idle(current)
        for name, names in again.items():
            link = self._links.get(name)
            if link is not None and names:
                await link.resubscribe([c for c in names if c in self._owner])

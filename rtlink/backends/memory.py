"""The embedded single-process backend: positions, history and fan-in kept in memory.

This is the default engine (``memory://``). It is exact — positions, history bounds
and de-duplication follow :mod:`rtlink.backends.base` to the letter — but it is not
shared: every process has its own, so it serves one node only. Use the Redis backend
to run several nodes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

from ..positions import Position
from ..presence import Member
from ..protocol import Publication
from .base import (
    Backend,
    HistoryPolicy,
    HistoryResult,
    LocalClaims,
    LostListener,
    PresenceListener,
    PublicationListener,
    PublishResult,
    page_bounds,
)

__all__ = ["MemoryBackend", "Clock"]

logger = logging.getLogger(__name__)

#: A source of monotonic time in seconds (``time.monotonic`` or a fake for tests).
Clock = Callable[[], float]

#: The background sweep yields to the event loop after this many channels.
_SWEEP_BATCH = 1000


# Shared by every channel with no history (no keys): an empty deque costs ~620 bytes,
# and a per-user channel that was only subscribed has none. Never appended to: a
# channel gets its own on its first publication (see MemoryBackend.publish).
_NO_HISTORY: deque[tuple[Publication, float]] = deque()
_NO_KEYS: OrderedDict[str, tuple[Position, float]] = OrderedDict()


class _Channel:
    """The state of one channel stream."""

    __slots__ = ("epoch", "offset", "history", "keys", "keys_expire_at", "last_used", "policy")

    def __init__(self, now: float, policy: HistoryPolicy) -> None:
        self.epoch = secrets.token_hex(4)
        self.offset = 0
        #: (publication, time it was published), oldest first; offsets are consecutive.
        self.history = _NO_HISTORY
        #: idempotency key -> (position, expiry time), in insertion order.
        self.keys = _NO_KEYS
        #: The latest expiry of any key in ``keys``: all are expired from then on.
        self.keys_expire_at = now
        #: When the channel was last published to, read, subscribed or unsubscribed.
        self.last_used = now
        #: The policy of the latest call, used by the idle sweep to prune.
        self.policy = policy

    def prune(self, now: float, policy: HistoryPolicy) -> None:
        """Drop publications beyond ``policy.size`` or older than ``policy.ttl``,
        and expired idempotency keys."""
        history = self.history
        if history:
            size = policy.size
            # Not max(size, 0): this runs on every publish, and max() costs more than
            # the rest of this block.
            for _ in range(len(history) - (size if size > 0 else 0)):
                history.popleft()
            cutoff = now - policy.ttl
            while history and history[0][1] <= cutoff:
                history.popleft()
        keys = self.keys
        if not keys:
            return
        if self.keys_expire_at <= now:
            keys.clear()
        else:
            # Keys are mostly in expiry order; one that expired behind a live one is
            # still ignored on lookup and goes when the whole table has expired.
            while keys:
                _, (_, expiry) = next(iter(keys.items()))
                if expiry > now:
                    break
                keys.popitem(last=False)

    def is_empty(self, now: float) -> bool:
        """Whether nothing in this state is worth keeping (after :meth:`prune`)."""
        self.prune(now, self.policy)
        return not self.history and self.keys_expire_at <= now


class MemoryBackend(Backend):
    """The embedded engine: everything in this process's memory.

    Each channel's state is created on first use (publish or history) with a random
    epoch (``secrets.token_hex(4)``) and offset 0. History keeps at most
    ``policy.size`` publications, none older than ``policy.ttl`` seconds; idempotency
    keys are remembered for ``policy.key_ttl`` seconds, and at most
    ``max_keys_per_channel`` per channel (oldest evicted first), so memory stays
    bounded however many distinct keys are used. An evicted key is forgotten early:
    a retry with it after eviction publishes again.

    **Idle sweep.** A channel's state is deleted when nobody on this node subscribes
    to it, its history is empty (after size/TTL pruning), all its keys have expired,
    and it has not been used (publish, history, subscribe or unsubscribe) for more
    than ``idle_ttl`` seconds. The sweep runs every ``sweep_interval`` seconds in a
    task started by :meth:`start`. When a swept channel is used again it starts a
    fresh stream with a **new epoch**, offsets from 1. That is deliberate: reusing the
    old epoch would restart offsets at 1 and make a client's old position (say
    ``e:5``) look like a position in the new stream, so publications 1–5 of the new
    stream would be silently skipped. With a new epoch an old position can never be
    confused with a new one. The cost: a client that was away for longer than
    ``idle_ttl`` from a channel that stayed silent meanwhile gets a spurious
    ``recovered=False`` (there was nothing to miss, but the backend can no longer
    prove it), and re-syncs.

    Claims (:meth:`~rtlink.backends.base.Backend.claim`, for single-use tickets) are
    kept by the base class's :class:`~rtlink.backends.base.LocalClaims`, on this
    backend's clock: like everything here, they are seen by this process only.

    Publications' ``data`` is stored by reference, not copied: it must not be mutated
    after it is published.

    The listener is called synchronously from :meth:`publish`. An exception raised by
    the listener is logged and does not fail the publish: the publication is stored
    by then, and reporting failure would make the caller retry something that
    succeeded.

    Args:
        sweep_interval: seconds between idle sweeps; None disables the background
            sweep (:meth:`sweep` can still be called).
        idle_ttl: seconds a channel must be unused before the sweep may delete it.
        max_keys_per_channel: idempotency keys kept per channel at most; None means
            ``max(10_000, 10 * policy.size)``.
        clock: monotonic time in seconds; inject a fake one to drive TTLs in tests.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        *,
        sweep_interval: float | None = 60.0,
        idle_ttl: float = 3600.0,
        max_keys_per_channel: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if sweep_interval is not None and not sweep_interval > 0:
            raise ValueError("sweep_interval must be > 0 (or None to disable the sweep)")
        if not idle_ttl >= 0:
            raise ValueError("idle_ttl must be >= 0")
        if max_keys_per_channel is not None and max_keys_per_channel < 1:
            raise ValueError("max_keys_per_channel must be >= 1 (or None for the default)")
        self._sweep_interval = sweep_interval
        self._idle_ttl = idle_ttl
        self._max_keys = max_keys_per_channel
        self._clock = clock
        self._local_claims = LocalClaims(clock=clock)
        self._channels: dict[str, _Channel] = {}
        self._subscribed: set[str] = set()
        self._listener: PublicationListener | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # Unless a subclass overrides publish() (to watch or change it): that must see
        # every publication, so the hub then awaits it.
        self.publish_now = (self._publish_now if type(self).publish is MemoryBackend.publish
                            else None)
        # Presence: channel -> member key -> (member, expiry time), and per channel the
        # expiries in a heap (entries of refreshed members go stale and are skipped):
        # a sweep costs what expired, not a scan of every member.
        self._presence: dict[str, dict[str, tuple[Member, float]]] = {}
        self._expiries: dict[str, list[tuple[float, str]]] = {}
        self._presence_listener: PresenceListener | None = None

    @property
    def clock(self) -> Clock:
        """The clock this backend measures TTLs and idleness with."""
        return self._clock

    @property
    def channel_count(self) -> int:
        """How many channels currently have state in memory (for metrics and tests)."""
        return len(self._channels)

    async def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Hand publications of subscribed channels to ``listener``; start the idle sweep.

        Args:
            listener: called synchronously for each publication of a subscribed channel.
            on_lost: never called: a publication is handed over as it is stored.
        """
        self._listener = listener
        if self._sweep_interval is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(
                self._sweep_forever(self._sweep_interval), name="rtlink-memory-sweep"
            )

    async def close(self) -> None:
        """Stop the idle sweep and drop all state."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            # asyncio.wait does not raise the task's CancelledError, but a cancellation
            # of close() itself still propagates.
            await asyncio.wait([sweeper])
        self._listener = None
        self._subscribed.clear()
        self._channels.clear()
        self._presence.clear()
        self._expiries.clear()

    async def publish(
        self, channel: str, data: object, *, key: str | None, policy: HistoryPolicy
    ) -> PublishResult:
        """Assign the next position, store in history, and call the listener.

        Args:
            channel: the channel to publish to.
            data: the publication's payload (stored by reference).
            key: idempotency key; a key used on this channel within
                ``policy.key_ttl`` makes this a duplicate.
            policy: the channel's history policy.

        Returns:
            The new position, or the original one with ``duplicate=True``.
        """
        position, duplicate = self._publish_now(channel, data, key, policy)
        return PublishResult(position, duplicate)

    def _publish_now(self, channel: str, data: object, key: str | None,
                     policy: HistoryPolicy) -> tuple[Position, bool]:
        """:meth:`publish`, synchronously: ``(position, duplicate)`` (this backend's
        :attr:`~rtlink.backends.base.Backend.publish_now`)."""
        now = self._clock()
        state = self._use(channel, now, policy)
        if key is not None:
            seen = state.keys.get(key)
            if seen is not None and seen[1] > now:
                return seen[0], True
        state.offset += 1
        position = Position(state.epoch, state.offset)
        publication = Publication(channel, data, position)
        if policy.size > 0 and policy.ttl > 0:
            history = state.history
            if history is _NO_HISTORY:
                history = state.history = deque()
            history.append((publication, now))
            if len(history) > policy.size:
                history.popleft()
        if key is not None:
            self._remember_key(state, key, position, now, policy)
        if channel in self._subscribed and self._listener is not None:
            try:
                self._listener(publication)
            except Exception:
                logger.exception("publication listener failed for channel %r", channel)
        return position, False

    async def history(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy
    ) -> HistoryResult:
        """Return the publications after ``since`` and the channel's current position.

        A channel never published to gets its state (and epoch) here, so the position
        ``(epoch, 0)`` reported now stays valid for the first publication.

        Args:
            channel: the channel to read.
            since: the position the caller has; None asks only for the current one.
            policy: the channel's history policy (history is pruned by it first).

        Returns:
            The gap after ``since`` with ``recovered=True``, or no publications and
            ``recovered=False`` when the gap cannot be filled.
        """
        state = self._use(channel, self._clock(), policy)
        top = Position(state.epoch, state.offset)
        if since is None or (since.epoch == state.epoch and since.offset == state.offset):
            return HistoryResult([], top, True)
        history = state.history
        if (
            since.epoch != state.epoch
            or since.offset > state.offset
            or not history
            or history[0][0].position.offset > since.offset + 1
        ):
            return HistoryResult([], top, False)
        # Offsets in history are consecutive, so the gap starts at a known index.
        start = since.offset + 1 - history[0][0].position.offset
        publications = [pub for pub, _ in itertools.islice(history, start, None)]
        return HistoryResult(publications, top, True)

    async def page(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy, limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        """A window of the kept history (see :meth:`Backend.page`)."""
        state = self._use(channel, self._clock(), policy)
        history = state.history
        top = state.offset
        oldest = history[0][0].position.offset if history else top + 1
        newest = history[-1][0].position.offset if history else top
        first, last, recovered = page_bounds(since, state.epoch, top, oldest, newest, limit,
                                             reverse)
        # Offsets in history are consecutive.
        publications = ([pub for pub, _ in itertools.islice(history, first - oldest,
                                                             last - oldest + 1)]
                        if last >= first else [])
        return HistoryResult(publications, Position(state.epoch, top), recovered)

    async def subscribe(self, channel: str) -> None:
        """Start handing ``channel``'s publications to the listener.

        Args:
            channel: the channel (the hub reference-counts; this is a plain set).
        """
        self._subscribed.add(channel)
        self._touch(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop handing ``channel``'s publications to the listener.

        Args:
            channel: the channel; unknown channels are ignored.
        """
        self._subscribed.discard(channel)
        self._touch(channel)

    def sweep(self) -> int:
        """Delete the state of idle channels now (see the class docstring).

        Returns:
            How many channels were deleted.
        """
        return self._sweep_names(list(self._channels))

    # --- internals --------------------------------------------------------------------

    def _use(self, channel: str, now: float, policy: HistoryPolicy) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(now, policy)
        else:
            state.prune(now, policy)
        state.last_used = now
        state.policy = policy
        return state

    def _touch(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None:
            state.last_used = self._clock()

    def _remember_key(
        self, state: _Channel, key: str, position: Position, now: float, policy: HistoryPolicy
    ) -> None:
        keys = state.keys
        if keys is _NO_KEYS:
            keys = state.keys = OrderedDict()
        keys.pop(key, None)  # an expired entry: re-insert at the end
        if policy.key_ttl <= 0:
            return
        expiry = now + policy.key_ttl
        keys[key] = (position, expiry)
        state.keys_expire_at = max(state.keys_expire_at, expiry)
        cap = self._max_keys if self._max_keys is not None else max(10_000, 10 * policy.size)
        for _ in range(len(keys) - cap):
            keys.popitem(last=False)

    def _sweep_names(self, names: Iterable[str]) -> int:
        now = self._clock()
        deleted = 0
        for name in names:
            state = self._channels.get(name)
            if (
                state is not None
                and name not in self._subscribed
                and now - state.last_used > self._idle_ttl
                and state.is_empty(now)
            ):
                del self._channels[name]
                deleted += 1
        return deleted

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                names = list(self._channels)
                deleted = 0
                for i in range(0, len(names), _SWEEP_BATCH):
                    if i:
                        await asyncio.sleep(0)  # let the loop breathe between batches
                    deleted += self._sweep_names(names[i : i + _SWEEP_BATCH])
                if deleted:
                    logger.debug("idle sweep deleted %d channel(s)", deleted)
            except Exception:
                logger.exception("idle sweep failed; retrying in %s s", interval)

    # --- presence ----------------------------------------------------------------------

    def set_presence_listener(self, listener: PresenceListener) -> None:
        """Hand presence changes to ``listener`` (synchronously, as they are made)."""
        self._presence_listener = listener

    async def presence_update(self, channel: str, members: Sequence[Member],
                              ttl: float) -> None:
        """Add or refresh ``members`` until ``ttl`` seconds from now; sweep the expired
        (see :meth:`Backend.presence_update`)."""
        now = self._clock()
        entries = self._presence.setdefault(channel, {})
        heap = self._expiries.setdefault(channel, [])
        leaves = self._expire(entries, heap, now)
        joins = []
        expires = now + ttl
        for member in members:
            if member.key not in entries:
                joins.append(member)
            entries[member.key] = (member, expires)
            heapq.heappush(heap, (expires, member.key))
        self._announce(channel, entries, joins, leaves)

    async def presence_remove(self, channel: str, members: Sequence[Member]) -> None:
        """Remove ``members``; announce those that were present."""
        entries = self._presence.get(channel)
        if entries is None:
            return
        leaves = [entries.pop(member.key)[0] for member in members if member.key in entries]
        self._announce(channel, entries, [], leaves)

    async def presence_read(self, channel: str, limit: int) -> tuple[int, list[Member]]:
        """The members of ``channel``, the expired ones removed (and announced) first."""
        entries = self._presence.get(channel)
        if entries is None:
            return 0, []
        leaves = self._expire(entries, self._expiries.setdefault(channel, []), self._clock())
        self._announce(channel, entries, [], leaves)
        return len(entries), [member for member, _ in itertools.islice(entries.values(), limit)]

    @staticmethod
    def _expire(entries: dict[str, tuple[Member, float]], heap: list[tuple[float, str]],
                now: float) -> list[Member]:
        gone = []
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and entry[1] == expires:  # not refreshed since
                gone.append(entries.pop(key)[0])
        return gone

    def _announce(self, channel: str, entries: dict[str, tuple[Member, float]],
                  joins: list[Member], leaves: list[Member]) -> None:
        if not entries:
            self._presence.pop(channel, None)
            self._expiries.pop(channel, None)
        if (joins or leaves) and self._presence_listener is not None:
            self._presence_listener(channel, joins, leaves, len(entries))

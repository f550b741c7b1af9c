"""This node's side of presence: its members in the backend, and the diffs it sends.

The hub holds one :class:`Roster`. For each presence channel it knows the members
connected to this node (a client counted once however many of its requests are
open) and keeps them in the backend with a TTL, refreshed every
:attr:`Roster.refresh_interval`; a node that dies stops refreshing, and its members
expire. Every node that has members or event subscribers in a channel sweeps it
with each refresh, so a dead node's members are announced as leaves within
``ttl + refresh_interval`` of its last refresh (docs/operations.md, "Presence").

A client leaves at once when its WebSocket closes. An HTTP transport's requests
come and go (a long poll lasts one poll, a stream is reopened when its
subscriptions change), so there its member is left with ``grace`` seconds to come
back — on any node, under the same session id — before it expires.

Backend calls go through one queue, per channel in order, batched: a storm of
joins costs one script per channel per round, not one per client. Changes announced
by the backend are gathered per channel for ``interval`` seconds and handed to
``send`` as one :class:`~rtlink.presence.Diff` (truncated past ``max_diff`` members).
While a channel's diffs come out truncated (a storm), its interval doubles, up to
:data:`~rtlink.presence.MAX_DIFF_INTERVAL`: each diff is a write to every event
subscriber here, and a storm of 10,000 members who all watch would otherwise cost
40,000 writes a second for nothing but a count.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .auth import Identity, subject_of
from .backends import Backend
from .errors import BackendError, FrameError
from .presence import (
    DIFF_INTERVAL,
    MAX_DIFF,
    MAX_DIFF_INTERVAL,
    MAX_INFO_BYTES,
    Diff,
    DiffBuffer,
    Member,
)
from .protocol import validate_data

__all__ = ["Roster", "info_of", "member_of"]

logger = logging.getLogger("rtlink.presence")

#: Channels whose backend calls run at once in one round.
_CONCURRENT_CHANNELS = 16


def info_of(identity: Any) -> Any:
    """The ``info`` of an identity: the ``info`` claim of an :class:`~rtlink.auth.Identity`
    (or the ``"info"`` of a mapping, or an ``info`` attribute), if both codecs carry it
    and its compact JSON is at most :data:`~rtlink.presence.MAX_INFO_BYTES` bytes;
    else None."""
    if isinstance(identity, Identity):
        info = identity.claims.get("info")
    elif isinstance(identity, Mapping):
        info = identity.get("info")
    elif identity is None or isinstance(identity, str):
        return None
    else:
        info = getattr(identity, "info", None)
    if info is None:
        return None
    try:
        validate_data(info)
        size = len(json.dumps(info, separators=(",", ":"), ensure_ascii=False).encode())
    except (FrameError, TypeError, ValueError):
        return None  # nothing every client could read
    return info if size <= MAX_INFO_BYTES else None


def member_of(client: str, identity: Any) -> Member:
    """The member a connection with session id ``client`` and ``identity`` is."""
    return Member(client, subject_of(identity), info_of(identity))


class _Ops:
    """Backend calls waiting for the next round, for one channel: the last call per
    member wins (an update after a removal of the same member replaces it)."""

    __slots__ = ("updates", "removes", "sweep", "waiters")

    def __init__(self) -> None:
        self.updates: dict[str, tuple[Member, float]] = {}
        self.removes: dict[str, Member] = {}
        self.sweep = False
        self.waiters: list[asyncio.Future[None]] = []


class Roster:
    """The presence of this node's clients (see the module docstring).

    Args:
        backend: where members are kept (it announces the changes).
        send: called with each diff to send to this node's event subscribers.
        ttl: seconds a member stays in the backend without a refresh.
        grace: seconds a client of an HTTP transport stays a member after its
            request ended.
        interval: seconds changes of a channel are gathered into one diff.
        max_diff: members a diff names at most (a larger one is truncated).
    """

    def __init__(self, backend: Backend, send: Callable[[Diff], None], *, ttl: float,
                 grace: float, interval: float = DIFF_INTERVAL,
                 max_diff: int = MAX_DIFF) -> None:
        if not ttl > 0 or not grace > 0 or not interval > 0:
            raise ValueError("presence ttl, grace and interval must be > 0")
        self.backend = backend
        self.ttl = ttl
        self.grace = grace
        self.interval = interval
        self.max_diff = max_diff
        #: Seconds between refreshes: a third of the TTL (two refreshes may fail
        #: before a member expires), and at most half the grace (see leave()).
        self.refresh_interval = min(ttl / 3, grace / 2)
        self._send = send
        # channel -> member key -> [member, how many of its requests are open here]
        self._members: dict[str, dict[str, list[Any]]] = {}
        self._watchers: collections.Counter[str] = collections.Counter()
        self._buffers: dict[str, DiffBuffer] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Channels whose last diff was truncated: (their interval now, when it was sent).
        self._slowed: dict[str, tuple[float, float]] = {}
        self._ops: dict[str, _Ops] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False
        self._lock = asyncio.Lock()
        # channel -> session id -> the diffs kept for an HTTP client between requests
        self._parked: dict[str, dict[str, list[Diff]]] = {}
        self._parked_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the queue and the refresh loop; announcements reach :meth:`announced`."""
        self.backend.set_presence_listener(self.announced)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name="rtlink-presence"),
                       loop.create_task(self._refresh_forever(), name="rtlink-presence-refresh")]

    async def close(self) -> None:
        """Stop (members are not removed: the node's clients were closed, and their
        removals queued, before; what could not be sent expires)."""
        await self._flush_queue()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in [*self._timers.values(), *self._parked_timers.values()]:
            timer.cancel()
        self._timers.clear()
        self._slowed.clear()
        self._parked_timers.clear()
        self._parked.clear()

    # --- members -----------------------------------------------------------------------

    def join(self, channel: str, member: Member) -> asyncio.Future[None]:
        """``member`` is subscribed here: keep it in the backend. The future is done
        once the backend has it (or failed to: then it is logged, and the next
        refresh tries again)."""
        members = self._members.setdefault(channel, {})
        entry = members.get(member.key)
        if entry is None:
            members[member.key] = [member, 1]
        else:
            entry[0] = member
            entry[1] += 1
        ops = self._queue(channel)
        ops.removes.pop(member.key, None)
        ops.updates[member.key] = (member, self.ttl)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ops.waiters.append(waiter)
        return waiter

    def leave(self, channel: str, member: Member, grace: bool) -> None:
        """One of ``member``'s subscriptions here ended. When it was the last, the
        member leaves: at once, or with ``grace`` after ``self.grace`` seconds unless
        it is updated again meanwhile (by this node or another)."""
        members = self._members.get(channel)
        entry = members.get(member.key) if members is not None else None
        if members is None or entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del members[member.key]
        if not members:
            del self._members[channel]
        ops = self._queue(channel)
        if grace:
            # Another node may have this client already (its next poll went there): the
            # shorter expiry written here is raised again by that node's refresh, which
            # comes within refresh_interval <= grace / 2.
            ops.removes.pop(member.key, None)
            ops.updates[member.key] = (member, self.grace)
        else:
            ops.updates.pop(member.key, None)
            ops.removes[member.key] = member

    def watch(self, channel: str) -> None:
        """A subscriber here wants the channel's events: sweep it with the refreshes."""
        self._watchers[channel] += 1

    def unwatch(self, channel: str) -> None:
        """One subscriber less wants the channel's events."""
        self._watchers[channel] -= 1
        if self._watchers[channel] <= 0:
            del self._watchers[channel]

    def park(self, session: str, channel: str) -> None:
        """The request of an HTTP client watching ``channel`` ended (a poll answered, a
        stream reopened): keep watching for it for the grace period, and keep the
        diffs of that time for its next request here (:meth:`unpark`)."""
        key = (session, channel)
        parked = self._parked.setdefault(channel, {})
        if session in parked:
            self.unwatch(channel)  # parked already: one watch for it is enough
            return
        parked[session] = []
        self._parked_timers[key] = asyncio.get_running_loop().call_later(
            self.grace, self._unpark_expired, key)

    def unpark(self, session: str, channel: str) -> list[Diff]:
        """The client came back (watching again already): the diffs kept for it."""
        diffs = self._take_parked(session, channel)
        if diffs is None:
            return []
        self._parked_timers.pop((session, channel)).cancel()
        self.unwatch(channel)
        return diffs

    def _take_parked(self, session: str, channel: str) -> list[Diff] | None:
        parked = self._parked.get(channel)
        diffs = parked.pop(session, None) if parked is not None else None
        if parked is not None and not parked:
            del self._parked[channel]
        return diffs

    def _unpark_expired(self, key: tuple[str, str]) -> None:
        self._parked_timers.pop(key, None)
        if self._take_parked(*key) is not None:
            self.unwatch(key[1])

    async def read(self, channel: str, limit: int) -> tuple[int, list[Member]]:
        """The channel's member count and at most ``limit`` members (see
        :meth:`~rtlink.backends.Backend.presence_read`)."""
        return await self.backend.presence_read(channel, limit)

    # --- announcements -----------------------------------------------------------------

    def announced(self, channel: str, joins: Sequence[Member], leaves: Sequence[Member],
                  count: int) -> None:
        """Backend listener: changes of ``channel``; sent with the others of the interval
        to the channel's event subscribers here."""
        if channel not in self._watchers:
            return
        buffer = self._buffers.get(channel)
        if buffer is None:
            buffer = self._buffers[channel] = DiffBuffer(channel)
        buffer.add(joins, leaves, count)
        if channel not in self._timers:
            loop = asyncio.get_running_loop()
            delay, sent = self._slowed.get(channel, (self.interval, 0.0))
            if loop.time() - sent > 2 * delay:  # quiet since: the storm is over
                delay = self.interval
                self._slowed.pop(channel, None)
            self._timers[channel] = loop.call_later(delay, self._flush_diff, channel, delay)

    def _flush_diff(self, channel: str, delay: float) -> None:
        self._timers.pop(channel, None)
        buffer = self._buffers.pop(channel, None)
        if not buffer or channel not in self._watchers:
            self._slowed.pop(channel, None)
            return
        diff = buffer.take(self.max_diff)
        if diff.truncated:
            self._slowed[channel] = (min(2 * delay, MAX_DIFF_INTERVAL),
                                     asyncio.get_running_loop().time())
        else:
            self._slowed.pop(channel, None)
        self._deliver(diff)

    def _deliver(self, diff: Diff) -> None:
        self._send(diff)
        for diffs in self._parked.get(diff.channel, {}).values():
            diffs.append(diff)

    # --- the backend queue -------------------------------------------------------------

    def _queue(self, channel: str) -> _Ops:
        ops = self._ops.get(channel)
        if ops is None:
            ops = self._ops[channel] = _Ops()
        self._wake.set()
        return ops

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not await self._flush_queue():
                self._failing = True

    async def _flush_queue(self) -> bool:
        """Run every queued call, in one round (rounds one after another, so that a
        channel's calls keep their order); whether all of them worked."""
        async with self._lock:
            self._wake.clear()
            rounds, self._ops = self._ops, {}
            if not rounds:
                return True
            slots = asyncio.Semaphore(_CONCURRENT_CHANNELS)

            failed: list[tuple[str, BackendError]] = []

            async def run(channel: str, ops: _Ops) -> None:
                async with slots:
                    try:
                        await self._apply(channel, ops)
                    except BackendError as exc:
                        failed.append((channel, exc))
                    finally:
                        for waiter in ops.waiters:
                            if not waiter.done():
                                waiter.set_result(None)

            await asyncio.gather(*(run(c, ops) for c, ops in rounds.items()))
            if failed:
                # One line per outage, not one per channel and round: the refreshes
                # go on failing every few seconds while the backend is away.
                channel, error = failed[0]
                logger.log(logging.DEBUG if self._failing else logging.WARNING,
                           "presence of %d channels (%r, ...) not updated: %s; the next "
                           "refresh tries again", len(failed), channel, error)
            return not failed

    async def _apply(self, channel: str, ops: _Ops) -> None:
        by_ttl: dict[float, list[Member]] = {}
        for member, ttl in ops.updates.values():
            by_ttl.setdefault(ttl, []).append(member)
        for ttl, members in by_ttl.items():
            await self.backend.presence_update(channel, members, ttl)
        if ops.removes:
            await self.backend.presence_remove(channel, list(ops.removes.values()))
        elif ops.sweep and not by_ttl:
            await self.backend.presence_update(channel, [], self.ttl)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            self.refresh()
            if not await self._flush_queue():
                self._failing = True
            elif self._failing:
                self._failing = False
                logger.warning("presence: the backend works again; %d channels' members "
                               "registered again", len(self._members))
                await self._resync()

    async def _resync(self) -> None:
        """The backend works again (a Redis blip) and the refresh just re-registered
        every member here; announcements made meanwhile may have been lost, so each
        watched channel gets a truncated diff: its subscribers read the list again."""
        for channel in list(self._watchers):
            try:
                count, _ = await self.backend.presence_read(channel, 0)
            except BackendError:
                self._failing = True
                return
            if channel in self._watchers:
                self._deliver(Diff(channel, (), (), count, truncated=True))

    def refresh(self) -> None:
        """Queue the refresh of every member here and the sweep of every channel with
        members or event subscribers here."""
        for channel, members in self._members.items():
            ops = self._queue(channel)
            for key, (member, _) in members.items():
                if key not in ops.removes:
                    ops.updates[key] = (member, self.ttl)
        for channel in self._watchers:
            self._queue(channel).sweep = True

"""The backend contract suite: what every :class:`~rtlink.backends.base.Backend` must do.

Run it against a backend by subclassing :class:`BackendContract` in a ``test_*.py``
module, with a class name starting with ``Test``::

    class TestMyBackend(BackendContract):
        async def make_backend(self) -> Backend:
            return MyBackend()

Only the public interface of ``rtlink.backends.base`` is used, so the suite holds for
network backends too:

* channel names are unique per test, so a shared engine (one Redis database) needs no
  flushing between tests;
* deliveries may be asynchronous: tests wait for them, and prove that nothing *else*
  arrived with a barrier (a publication on a subscribed marker channel, assumed to be
  delivered after everything published before it);
* TTLs are driven by :meth:`BackendContract.advance`, which sleeps for real by default
  (short TTLs: :attr:`BackendContract.ttl`) and can be overridden by a backend with an
  injectable clock to run without sleeping.

One property the hub relies on is asserted throughout: once ``subscribe()`` has
returned, a publication made afterwards is delivered.
"""

from __future__ import annotations

import abc
import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import pytest

from rtlink.backends.base import Backend, HistoryPolicy, PublishResult
from rtlink.errors import BackendError
from rtlink.presence import Member
from rtlink.protocol import MAX_EPOCH_LENGTH, Position, Publication

__all__ = ["BackendContract", "Harness"]

#: Generous defaults: nothing expires during a test unless the test says so.
POLICY = HistoryPolicy(size=100, ttl=300.0, key_ttl=600.0)

#: How long a test waits for an asynchronous delivery before failing.
DELIVERY_TIMEOUT = 5.0


@attrs.define
class Harness:
    """A started backend, the publications its listener received, and helpers."""

    backend: Backend
    prefix: str = attrs.field(factory=lambda: f"contract-{secrets.token_hex(4)}")
    received: list[Publication] = attrs.field(factory=list)
    #: Channels the backend reported lost (``on_lost``); never any in the contract.
    lost: list[str] = attrs.field(factory=list)
    _marker_subscribed: bool = False

    def channel(self, name: str) -> str:
        """A channel name unique to this test."""
        return f"{self.prefix}:{name}"

    @property
    def marker(self) -> str:
        """The barrier channel (see :meth:`settle`)."""
        return self.channel("marker")

    def listener(self, publication: Publication) -> None:
        """The listener given to ``backend.start``."""
        self.received.append(publication)

    async def publish(
        self,
        channel: str,
        data: Any = None,
        *,
        key: str | None = None,
        policy: HistoryPolicy = POLICY,
    ) -> PublishResult:
        """Publish with a default policy."""
        return await self.backend.publish(channel, data, key=key, policy=policy)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait (without blocking the loop) until ``condition()`` holds."""
        async with asyncio.timeout(DELIVERY_TIMEOUT):
            while not condition():
                await asyncio.sleep(0.001)

    async def settle(self) -> None:
        """Wait until everything published so far has been delivered.

        Publishes on a subscribed marker channel and waits for that publication.
        """
        if not self._marker_subscribed:
            await self.backend.subscribe(self.marker)
            self._marker_subscribed = True
        result = await self.publish(self.marker, "barrier")
        await self.wait_until(
            lambda: any(
                p.channel == self.marker and p.position == result.position for p in self.received
            )
        )

    def deliveries(self) -> list[Publication]:
        """What the listener received, without the barrier publications."""
        return [p for p in self.received if p.channel != self.marker]


class PresenceEvents:
    """What a backend's presence listener received: ``(joins, leaves, count)``."""

    def __init__(self) -> None:
        self.channel = ""
        self.events: list[tuple[list[Member], list[Member], int]] = []

    def listener(self, channel: str, joins: Sequence[Member], leaves: Sequence[Member],
                 count: int) -> None:
        if channel == self.channel:
            self.events.append((list(joins), list(leaves), count))


class BackendContract(abc.ABC):
    """The contract suite. Subclass it as ``Test...`` and implement :meth:`make_backend`."""

    #: A short publication/key TTL used by the expiry tests (seconds).
    ttl: float = 0.1
    #: Whether the backend keeps presence (the optional part of the contract).
    has_presence: bool = True

    @abc.abstractmethod
    async def make_backend(self) -> Backend:
        """Return a new, not yet started backend."""

    async def advance(self, backend: Backend, seconds: float) -> None:
        """Let ``seconds`` pass for the backend. Sleeps by default; override with a fake
        clock when the backend has one."""
        await asyncio.sleep(seconds)

    async def expire(self, backend: Backend) -> None:
        """Let more than :attr:`ttl` pass."""
        await self.advance(backend, self.ttl * 1.5)

    @pytest.fixture
    async def h(self) -> AsyncIterator[Harness]:
        backend = await self.make_backend()
        harness = Harness(backend)
        await backend.start(harness.listener, harness.lost.append)
        try:
            yield harness
            assert harness.lost == [], "the backend reported channels lost"
        finally:
            await backend.close()

    # --- positions --------------------------------------------------------------------

    async def test_offsets_start_at_one_and_grow_by_one(self, h: Harness) -> None:
        channel = h.channel("a")
        results = [await h.publish(channel, i) for i in range(5)]
        assert [r.position.offset for r in results] == [1, 2, 3, 4, 5]
        assert not any(r.duplicate for r in results)

    async def test_offsets_are_independent_per_channel(self, h: Harness) -> None:
        a, b = h.channel("a"), h.channel("b")
        assert (await h.publish(a)).position.offset == 1
        assert (await h.publish(a)).position.offset == 2
        assert (await h.publish(b)).position.offset == 1
        assert (await h.publish(a)).position.offset == 3
        assert (await h.publish(b)).position.offset == 2

    async def test_epoch_is_stable_while_the_channel_has_history(self, h: Harness) -> None:
        channel = h.channel("a")
        epochs = {(await h.publish(channel, i)).position.epoch for i in range(5)}
        assert len(epochs) == 1
        (epoch,) = epochs
        assert (await h.backend.history(channel, None, policy=POLICY)).position.epoch == epoch

    async def test_epoch_is_a_valid_wire_value(self, h: Harness) -> None:
        position = (await h.publish(h.channel("a"))).position
        assert isinstance(position.epoch, str)
        assert 0 < len(position.epoch) <= MAX_EPOCH_LENGTH
        assert Position.from_wire(position.to_wire()) == position

    async def test_history_of_an_unknown_channel_is_at_offset_zero(self, h: Harness) -> None:
        channel = h.channel("new")
        first = await h.backend.history(channel, None, policy=POLICY)
        assert first.publications == []
        assert first.recovered is True
        assert first.position.offset == 0
        again = await h.backend.history(channel, None, policy=POLICY)
        assert again.position == first.position

    async def test_position_before_the_first_publication_recovers_it(self, h: Harness) -> None:
        # A client that subscribed to an empty channel holds (epoch, 0); the first
        # publication must be in the same epoch, or it would be lost for that client.
        channel = h.channel("new")
        empty = await h.backend.history(channel, None, policy=POLICY)
        published = await h.publish(channel, "first")
        assert published.position == Position(empty.position.epoch, 1)
        result = await h.backend.history(channel, empty.position, policy=POLICY)
        assert result.recovered is True
        assert [p.data for p in result.publications] == ["first"]

    # --- history ----------------------------------------------------------------------

    async def _publish_five(self, h: Harness, channel: str) -> list[PublishResult]:
        return [await h.publish(channel, f"m{i}") for i in range(1, 6)]

    async def test_history_since_none_gives_only_the_top(self, h: Harness) -> None:
        channel = h.channel("a")
        results = await self._publish_five(h, channel)
        result = await h.backend.history(channel, None, policy=POLICY)
        assert result.publications == []
        assert result.position == results[-1].position
        assert result.recovered is True

    async def test_history_since_the_top_is_recovered_and_empty(self, h: Harness) -> None:
        channel = h.channel("a")
        results = await self._publish_five(h, channel)
        top = results[-1].position
        result = await h.backend.history(channel, top, policy=POLICY)
        assert result.publications == []
        assert result.position == top
        assert result.recovered is True

    async def test_history_since_the_middle_returns_the_gap_in_order(self, h: Harness) -> None:
        channel = h.channel("a")
        results = await self._publish_five(h, channel)
        result = await h.backend.history(channel, results[1].position, policy=POLICY)
        assert result.recovered is True
        assert result.position == results[-1].position
        assert result.publications == [
            Publication(channel, f"m{i}", results[i - 1].position) for i in (3, 4, 5)
        ]

    async def test_history_since_offset_zero_returns_everything(self, h: Harness) -> None:
        channel = h.channel("a")
        results = await self._publish_five(h, channel)
        since = Position(results[0].position.epoch, 0)
        result = await h.backend.history(channel, since, policy=POLICY)
        assert result.recovered is True
        assert [p.position.offset for p in result.publications] == [1, 2, 3, 4, 5]

    async def test_history_since_a_future_offset_is_not_recovered(self, h: Harness) -> None:
        channel = h.channel("a")
        results = await self._publish_five(h, channel)
        future = Position(results[-1].position.epoch, 6)
        result = await h.backend.history(channel, future, policy=POLICY)
        assert result.publications == []
        assert result.position == results[-1].position
        assert result.recovered is False

    async def test_history_since_another_epoch_is_not_recovered(self, h: Harness) -> None:
        channel = h.channel("a")
        results = await self._publish_five(h, channel)
        epoch = results[-1].position.epoch
        for since in (Position(epoch + "x", 2), Position(epoch + "x", 0), Position("other", 5)):
            result = await h.backend.history(channel, since, policy=POLICY)
            assert result.publications == []
            assert result.position == results[-1].position
            assert result.recovered is False

    async def test_history_on_a_never_published_channel_with_a_position(
        self, h: Harness
    ) -> None:
        result = await h.backend.history(h.channel("new"), Position("stale", 3), policy=POLICY)
        assert result.publications == []
        assert result.position.offset == 0
        assert result.recovered is False

    async def test_publishing_without_subscribers_still_stores_history(self, h: Harness) -> None:
        channel = h.channel("a")
        await self._publish_five(h, channel)
        top = (await h.backend.history(channel, None, policy=POLICY)).position
        assert top.offset == 5
        result = await h.backend.history(channel, Position(top.epoch, 0), policy=POLICY)
        assert result.recovered is True
        assert [p.data for p in result.publications] == ["m1", "m2", "m3", "m4", "m5"]
        await h.settle()
        assert h.deliveries() == []

    # --- size and TTL bounds ----------------------------------------------------------

    async def test_size_bound_keeps_the_last_publications(self, h: Harness) -> None:
        channel = h.channel("a")
        policy = HistoryPolicy(size=3, ttl=300, key_ttl=600)
        results = [await h.publish(channel, i, policy=policy) for i in range(1, 6)]
        epoch = results[0].position.epoch

        kept = await h.backend.history(channel, Position(epoch, 2), policy=policy)
        assert kept.recovered is True
        assert [p.data for p in kept.publications] == [3, 4, 5]

        for offset in (0, 1):
            lost = await h.backend.history(channel, Position(epoch, offset), policy=policy)
            assert lost.recovered is False
            assert lost.publications == []
            assert lost.position == results[-1].position

        at_top = await h.backend.history(channel, results[-1].position, policy=policy)
        assert at_top.recovered is True
        assert at_top.publications == []

    # --- pages (Backend.page) -----------------------------------------------------------

    async def _five(self, h: Harness, size: int = 100) -> tuple[str, HistoryPolicy, str]:
        channel = h.channel("paged")
        policy = HistoryPolicy(size=size, ttl=300, key_ttl=600)
        results = [await h.publish(channel, i, policy=policy) for i in range(1, 6)]
        return channel, policy, results[0].position.epoch

    async def test_page_forward_from_the_oldest_and_after_a_position(self, h: Harness) -> None:
        channel, policy, epoch = await self._five(h)
        first = await h.backend.page(channel, None, policy=policy, limit=2)
        assert [p.data for p in first.publications] == [1, 2]
        assert first.recovered is True
        assert first.position == Position(epoch, 5)
        assert [p.position for p in first.publications] == [Position(epoch, 1),
                                                            Position(epoch, 2)]
        rest = await h.backend.page(channel, Position(epoch, 2), policy=policy, limit=10)
        assert [p.data for p in rest.publications] == [3, 4, 5]
        assert rest.recovered is True
        end = await h.backend.page(channel, Position(epoch, 5), policy=policy, limit=10)
        assert (end.publications, end.recovered) == ([], True)

    async def test_page_reverse_from_the_latest_and_before_a_position(self, h: Harness) -> None:
        channel, policy, epoch = await self._five(h)
        latest = await h.backend.page(channel, None, policy=policy, limit=2, reverse=True)
        assert [p.data for p in latest.publications] == [4, 5]  # oldest first
        assert latest.recovered is True
        before = await h.backend.page(channel, Position(epoch, 4), policy=policy, limit=2,
                                      reverse=True)
        assert [p.data for p in before.publications] == [2, 3]
        start = await h.backend.page(channel, Position(epoch, 1), policy=policy, limit=2,
                                     reverse=True)
        assert (start.publications, start.recovered) == ([], True)

    async def test_page_of_a_trimmed_or_foreign_position_starts_from_what_is_kept(
            self, h: Harness) -> None:
        channel, policy, epoch = await self._five(h, size=3)
        trimmed = await h.backend.page(channel, Position(epoch, 1), policy=policy, limit=10)
        assert [p.data for p in trimmed.publications] == [3, 4, 5]
        assert trimmed.recovered is False
        for since in (Position("other", 2), Position(epoch, 9)):
            forward = await h.backend.page(channel, since, policy=policy, limit=2)
            assert [p.data for p in forward.publications] == [3, 4]
            assert forward.recovered is False
            backward = await h.backend.page(channel, since, policy=policy, limit=2,
                                            reverse=True)
            assert [p.data for p in backward.publications] == [4, 5]
            assert backward.recovered is False
        # The whole kept history, bounded by what is kept.
        every = await h.backend.page(channel, None, policy=policy, limit=2**53 - 1,
                                     reverse=True)
        assert [p.data for p in every.publications] == [3, 4, 5]

    async def test_replay_is_the_gap_or_else_the_latest_kept(self, h: Harness) -> None:
        channel, policy, epoch = await self._five(h, size=3)  # 3, 4, 5 kept
        gap = await h.backend.replay(channel, Position(epoch, 3), policy=policy, last=1)
        assert ([p.data for p in gap.publications], gap.recovered) == ([4, 5], True)
        for since in (Position(epoch, 1), Position("other", 2), Position(epoch, 9)):
            kept = await h.backend.replay(channel, since, policy=policy)
            assert ([p.data for p in kept.publications], kept.recovered) == ([3, 4, 5], False)
            assert kept.position == Position(epoch, 5)
            bounded = await h.backend.replay(channel, since, policy=policy, last=2)
            assert [p.data for p in bounded.publications] == [4, 5]
        latest = await h.backend.replay(channel, None, policy=policy, last=2)
        assert ([p.data for p in latest.publications], latest.recovered) == ([4, 5], True)
        top = await h.backend.replay(channel, None, policy=policy)
        assert (top.publications, top.recovered, top.position) == ([], True,
                                                                    Position(epoch, 5))

    async def test_page_of_an_empty_channel(self, h: Harness) -> None:
        channel = h.channel("empty")
        page = await h.backend.page(channel, None, policy=POLICY, limit=10)
        assert (page.publications, page.recovered, page.position.offset) == ([], True, 0)
        top = await h.backend.page(channel, page.position, policy=POLICY, limit=10)
        assert (top.publications, top.recovered) == ([], True)

    async def test_size_zero_keeps_nothing_but_positions_go_on(self, h: Harness) -> None:
        channel = h.channel("a")
        policy = HistoryPolicy(size=0, ttl=300, key_ttl=600)
        first = await h.publish(channel, 1, policy=policy)
        second = await h.publish(channel, 2, policy=policy)
        assert second.position == Position(first.position.epoch, 2)

        gap = await h.backend.history(channel, first.position, policy=policy)
        assert gap.recovered is False
        assert gap.publications == []
        assert gap.position == second.position

        at_top = await h.backend.history(channel, second.position, policy=policy)
        assert at_top.recovered is True
        assert at_top.publications == []

        top = await h.backend.history(channel, None, policy=policy)
        assert top.position == second.position
        assert top.recovered is True

    async def test_ttl_drops_old_publications(self, h: Harness) -> None:
        channel = h.channel("a")
        policy = HistoryPolicy(size=100, ttl=self.ttl, key_ttl=600)
        old = await h.publish(channel, "old", policy=policy)
        await self.expire(h.backend)
        fresh = await h.publish(channel, "fresh", policy=policy)
        # The epoch may change only when the whole history was lost; it was empty here,
        # so a backend may start a new stream (then offsets restart at 1).
        if fresh.position.epoch == old.position.epoch:
            assert fresh.position.offset == 2
            gap = await h.backend.history(
                channel, Position(old.position.epoch, 0), policy=policy
            )
            assert gap.recovered is False
            assert gap.publications == []
            kept = await h.backend.history(channel, old.position, policy=policy)
            assert kept.recovered is True
            assert [p.data for p in kept.publications] == ["fresh"]
        else:
            assert fresh.position.offset == 1
            lost = await h.backend.history(channel, old.position, policy=policy)
            assert lost.recovered is False

    async def test_ttl_expiry_of_all_history(self, h: Harness) -> None:
        channel = h.channel("a")
        policy = HistoryPolicy(size=100, ttl=self.ttl, key_ttl=600)
        results = [await h.publish(channel, i, policy=policy) for i in range(3)]
        await self.expire(h.backend)
        top = await h.backend.history(channel, None, policy=policy)
        since = Position(results[0].position.epoch, 1)
        gap = await h.backend.history(channel, since, policy=policy)
        assert gap.recovered is False
        assert gap.publications == []
        if top.position.epoch == results[0].position.epoch:
            assert top.position.offset == 3
            # Nothing was missed by a client at the top: still recovered.
            at_top = await h.backend.history(channel, results[-1].position, policy=policy)
            assert at_top.recovered is True
            assert at_top.publications == []

    # --- de-duplication ---------------------------------------------------------------

    async def test_same_key_is_published_once(self, h: Harness) -> None:
        channel = h.channel("a")
        await h.backend.subscribe(channel)
        first = await h.publish(channel, "original", key="k1")
        again = await h.publish(channel, "retry", key="k1")
        assert first.duplicate is False
        assert again.duplicate is True
        assert again.position == first.position

        await h.settle()
        assert [(p.data, p.position) for p in h.deliveries()] == [("original", first.position)]
        since = Position(first.position.epoch, 0)
        result = await h.backend.history(channel, since, policy=POLICY)
        assert [p.data for p in result.publications] == ["original"]
        assert result.position == first.position

    async def test_a_duplicate_does_not_consume_an_offset(self, h: Harness) -> None:
        channel = h.channel("a")
        await h.publish(channel, key="k1")
        await h.publish(channel, key="k1")
        assert (await h.publish(channel, key="k2")).position.offset == 2
        assert (await h.publish(channel)).position.offset == 3

    async def test_same_key_on_other_channels_is_independent(self, h: Harness) -> None:
        a, b = h.channel("a"), h.channel("b")
        await h.publish(b, "b0")
        on_a = await h.publish(a, "a", key="shared")
        on_b = await h.publish(b, "b", key="shared")
        assert on_a.duplicate is False
        assert on_b.duplicate is False
        assert on_b.position.offset == 2

    async def test_without_a_key_nothing_is_deduplicated(self, h: Harness) -> None:
        channel = h.channel("a")
        first = await h.publish(channel, "same")
        second = await h.publish(channel, "same")
        assert not first.duplicate and not second.duplicate
        assert second.position.offset == first.position.offset + 1

    async def test_key_ttl_expiry_allows_publishing_again(self, h: Harness) -> None:
        channel = h.channel("a")
        policy = HistoryPolicy(size=100, ttl=300, key_ttl=self.ttl)
        first = await h.publish(channel, 1, key="k", policy=policy)
        assert (await h.publish(channel, 2, key="k", policy=policy)).duplicate is True
        await self.expire(h.backend)
        later = await h.publish(channel, 3, key="k", policy=policy)
        assert later.duplicate is False
        assert later.position == Position(first.position.epoch, 2)
        # ...and the new use of the key is remembered again.
        again = await h.publish(channel, 4, key="k", policy=policy)
        assert again.duplicate is True
        assert again.position == later.position

    # --- delivery to the listener -----------------------------------------------------

    async def test_listener_gets_subscribed_channels_only(self, h: Harness) -> None:
        a, b = h.channel("a"), h.channel("b")
        await h.backend.subscribe(a)
        pa = await h.publish(a, "to a")
        await h.publish(b, "to b")
        await h.settle()
        assert h.deliveries() == [Publication(a, "to a", pa.position)]

    async def test_listener_gets_each_publication_once_in_offset_order(
        self, h: Harness
    ) -> None:
        a, b = h.channel("a"), h.channel("b")
        await h.backend.subscribe(a)
        await h.backend.subscribe(b)
        expected: dict[str, list[Position]] = {a: [], b: []}
        for i in range(20):
            channel = a if i % 3 else b
            expected[channel].append((await h.publish(channel, i)).position)
        await h.settle()
        for channel, positions in expected.items():
            got = [p.position for p in h.deliveries() if p.channel == channel]
            assert got == positions
        assert len(h.deliveries()) == 20

    async def test_listener_stops_after_unsubscribe(self, h: Harness) -> None:
        channel = h.channel("a")
        await h.backend.subscribe(channel)
        before = await h.publish(channel, "before")
        await h.settle()
        await h.backend.unsubscribe(channel)
        await h.publish(channel, "after")
        await h.settle()
        assert [p.position for p in h.deliveries()] == [before.position]

        await h.backend.subscribe(channel)
        resumed = await h.publish(channel, "resumed")
        await h.settle()
        assert [p.position for p in h.deliveries()] == [before.position, resumed.position]

    async def test_unsubscribe_of_an_unknown_channel_is_harmless(self, h: Harness) -> None:
        await h.backend.unsubscribe(h.channel("never"))

    async def test_delivered_publication_matches_the_publish_result(self, h: Harness) -> None:
        channel = h.channel("a")
        await h.backend.subscribe(channel)
        result = await h.publish(channel, {"x": 1})
        await h.settle()
        (delivered,) = h.deliveries()
        assert delivered == Publication(channel, {"x": 1}, result.position)

    async def test_data_round_trips_unchanged(self, h: Harness) -> None:
        channel = h.channel("a")
        await h.backend.subscribe(channel)
        values: list[Any] = [
            {"user": {"name": "Zoë 🚀 日本語", "tags": ["a", "b"], "n": None}, "ok": True},
            [1, -2, 3.5, [], {}, [[[]]], ""],
            "plain ünïcödé \u2028 text",
            2**53 - 1,
            -(2**40),
            0.1,
            False,
            None,
            {"nested": {"deeper": {"deepest": [{"k": "v"}, 1.25e-7]}}},
        ]
        for value in values:
            await h.publish(channel, value)
        await h.settle()
        assert [p.data for p in h.deliveries()] == values
        history = await h.backend.history(
            channel, Position(h.deliveries()[0].position.epoch, 0), policy=POLICY
        )
        assert [p.data for p in history.publications] == values

    # --- claims (single-use tickets) --------------------------------------------------

    async def test_claim_is_true_once_then_false_until_its_ttl_passed(
        self, h: Harness
    ) -> None:
        key = h.channel("ticket")
        assert await h.backend.claim(key, self.ttl) is True
        assert await h.backend.claim(key, self.ttl) is False
        assert await h.backend.claim(key, self.ttl) is False
        await self.expire(h.backend)
        assert await h.backend.claim(key, self.ttl) is True
        # ...and the new claim holds again.
        assert await h.backend.claim(key, self.ttl) is False

    async def test_claims_of_different_keys_are_independent(self, h: Harness) -> None:
        a, b = h.channel("ticket-a"), h.channel("ticket-b")
        assert await h.backend.claim(a, 300) is True
        assert await h.backend.claim(b, 300) is True
        assert await h.backend.claim(a, 300) is False
        assert await h.backend.claim(b, 300) is False

    async def test_a_claim_lasts_its_own_ttl(self, h: Harness) -> None:
        short, long = h.channel("short"), h.channel("long")
        assert await h.backend.claim(short, self.ttl) is True
        assert await h.backend.claim(long, 300) is True
        await self.expire(h.backend)
        assert await h.backend.claim(short, 300) is True
        assert await h.backend.claim(long, 300) is False

    # --- presence ---------------------------------------------------------------------

    @pytest.fixture
    async def presence(self, h: Harness) -> AsyncIterator[PresenceEvents]:
        if not self.has_presence:
            with pytest.raises(BackendError):
                await h.backend.presence_update("room", [Member("s1")], 60)
            pytest.skip("this backend keeps no presence (and says so)")
        events = PresenceEvents()
        h.backend.set_presence_listener(events.listener)
        channel = h.channel("presence")
        await h.backend.subscribe(channel)  # announcements ride the channel's fan-in
        events.channel = channel
        yield events

    async def test_presence_joins_and_leaves_are_announced_once(
            self, h: Harness, presence: PresenceEvents) -> None:
        backend, channel = h.backend, presence.channel
        alice, bob = Member("s1", "alice", {"n": 1}), Member("s2", "bob")
        await backend.presence_update(channel, [alice, bob], 60)
        await backend.presence_update(channel, [alice], 60)  # a refresh: nothing new
        assert await backend.presence_read(channel, 10) in (
            (2, [alice, bob]), (2, [bob, alice]))
        await backend.presence_remove(channel, [bob, Member("s3")])
        await h.wait_until(lambda: len(presence.events) == 2)
        assert presence.events == [([alice, bob], [], 2), ([], [bob], 1)]
        assert await backend.presence_read(channel, 0) == (1, [])

    async def test_presence_entries_expire_and_leave_once(
            self, h: Harness, presence: PresenceEvents) -> None:
        backend, channel = h.backend, presence.channel
        short, long = Member("short"), Member("long")
        await backend.presence_update(channel, [short], self.ttl)
        await backend.presence_update(channel, [long], 60)
        await self.expire(backend)
        # Two sweeps at once (two nodes, say): one of them removes and announces.
        await asyncio.gather(backend.presence_update(channel, [], 60),
                             backend.presence_read(channel, 10))
        await h.wait_until(lambda: len(presence.events) == 3)
        assert presence.events[2] == ([], [short], 1)
        assert await backend.presence_read(channel, 10) == (1, [long])

    # --- control messages (the server API, rtlink.control) ----------------------------

    async def test_control_messages_reach_every_node_or_the_one_named(
            self, h: Harness) -> None:
        got: list[bytes] = []
        node = h.channel("node")  # unique: other nodes of a shared engine have others
        await h.backend.start_control(node, got.append)
        reached = await h.backend.send_control(b"to all")
        assert reached is None or reached >= 1  # this node at least
        await h.wait_until(lambda: b"to all" in got)
        assert await h.backend.send_control(b"to nobody", h.channel("gone")) in (None, 0)
        assert await h.backend.send_control(b"to me", node) in (None, 1)
        await h.wait_until(lambda: b"to me" in got)
        # Sent before "to me" to another node: it would have arrived by now.
        assert b"to nobody" not in got
        assert got.count(b"to all") == 1 and got.count(b"to me") == 1

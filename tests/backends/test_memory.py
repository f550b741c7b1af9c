"""MemoryBackend: the contract suite, plus what is specific to the embedded engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from rtlink import Hub
from rtlink.backends.base import Backend, HistoryPolicy, PublishResult
from rtlink.backends.memory import MemoryBackend
from rtlink.protocol import Position, Publication

from .contract import BackendContract

POLICY = HistoryPolicy(size=100, ttl=300.0, key_ttl=600.0)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TestMemoryBackendContract(BackendContract):
    """The contract, with TTLs driven by a fake clock (no sleeping)."""

    async def make_backend(self) -> Backend:
        return MemoryBackend(clock=FakeClock())

    async def advance(self, backend: Backend, seconds: float) -> None:
        assert isinstance(backend, MemoryBackend)
        clock = backend.clock
        assert isinstance(clock, FakeClock)
        clock.advance(seconds)


class TestMemoryBackendContractRealClock(BackendContract):
    """The contract once more on the real clock, with short real TTLs."""

    ttl = 0.05

    async def make_backend(self) -> Backend:
        return MemoryBackend()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def backend(clock: FakeClock) -> AsyncIterator[MemoryBackend]:
    backend = MemoryBackend(clock=clock, sweep_interval=None, idle_ttl=100)
    await backend.start(lambda publication: None, lambda channel: None)
    yield backend
    await backend.close()


# --- idle sweep ---------------------------------------------------------------------------


async def test_sweep_removes_idle_state_and_a_returning_channel_gets_a_new_epoch(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    policy = HistoryPolicy(size=10, ttl=5, key_ttl=5)
    old = await backend.publish("a", 1, key="k", policy=policy)
    clock.advance(50)
    assert backend.sweep() == 0  # history expired, but not idle long enough yet
    clock.advance(51)
    assert backend.sweep() == 1
    assert backend.channel_count == 0

    returning = await backend.publish("a", 2, key="k", policy=policy)
    assert returning.duplicate is False
    assert returning.position.offset == 1
    assert returning.position.epoch != old.position.epoch
    result = await backend.history("a", old.position, policy=policy)
    assert result.recovered is False


async def test_sweep_keeps_channels_worth_keeping(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    short = HistoryPolicy(size=10, ttl=5, key_ttl=5)
    await backend.publish("subscribed", 1, key=None, policy=short)
    await backend.subscribe("subscribed")
    await backend.publish("with-history", 1, key=None, policy=POLICY)
    await backend.publish("with-key", 1, key="k", policy=HistoryPolicy(size=0, ttl=5, key_ttl=500))
    await backend.publish("idle", 1, key="k", policy=short)
    clock.advance(101)
    await backend.history("recent", None, policy=short)
    assert backend.sweep() == 1
    assert backend.channel_count == 4

    # What was kept still works in its epoch.
    top = (await backend.history("with-history", None, policy=POLICY)).position
    assert (await backend.history("with-history", Position(top.epoch, 0), policy=POLICY)).recovered


async def test_history_reads_keep_a_channel_alive(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    policy = HistoryPolicy(size=10, ttl=5, key_ttl=5)
    empty = await backend.history("a", None, policy=policy)
    for _ in range(3):
        clock.advance(60)
        assert (await backend.history("a", None, policy=policy)).position == empty.position
        assert backend.sweep() == 0


async def test_unsubscribe_starts_the_idle_period(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    policy = HistoryPolicy(size=10, ttl=5, key_ttl=5)
    empty = await backend.history("a", None, policy=policy)
    await backend.subscribe("a")
    clock.advance(1000)
    assert backend.sweep() == 0
    await backend.unsubscribe("a")
    clock.advance(50)
    assert backend.sweep() == 0
    assert (await backend.history("a", empty.position, policy=policy)).recovered is True


async def test_background_sweep_runs_and_stops_on_close(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, sweep_interval=0.01, idle_ttl=10)
    await backend.start(lambda publication: None, lambda channel: None)
    try:
        await backend.history("a", None, policy=POLICY)
        clock.advance(11)
        async with asyncio.timeout(2):
            while backend.channel_count:
                await asyncio.sleep(0.005)
    finally:
        await backend.close()
    sweepers = [t for t in asyncio.all_tasks() if t.get_name() == "rtlink-memory-sweep"]
    assert sweepers == []


async def test_background_sweep_can_be_disabled(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, sweep_interval=None)
    await backend.start(lambda publication: None, lambda channel: None)
    assert [t for t in asyncio.all_tasks() if t.get_name() == "rtlink-memory-sweep"] == []
    await backend.close()


# --- idempotency keys ---------------------------------------------------------------------


async def test_key_table_is_capped_oldest_first(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, sweep_interval=None, max_keys_per_channel=3)
    for key in ("k1", "k2", "k3", "k4"):
        await backend.publish("a", key, key=key, policy=POLICY)
    evicted = await backend.publish("a", "k1 again", key="k1", policy=POLICY)
    assert evicted.duplicate is False
    assert evicted.position.offset == 5
    kept = await backend.publish("a", "k4 again", key="k4", policy=POLICY)
    assert kept.duplicate is True
    assert kept.position.offset == 4


async def test_default_key_cap_is_ten_thousand_for_small_histories(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, sweep_interval=None)
    policy = HistoryPolicy(size=10, ttl=300, key_ttl=600)
    for i in range(10_001):
        await backend.publish("a", None, key=f"k{i}", policy=policy)
    assert (await backend.publish("a", None, key="k0", policy=policy)).duplicate is False
    assert (await backend.publish("a", None, key="k2", policy=policy)).duplicate is True


async def test_key_ttl_follows_the_clock_exactly(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    policy = HistoryPolicy(size=10, ttl=300, key_ttl=10)
    first = await backend.publish("a", 1, key="k", policy=policy)
    clock.advance(9.999)
    assert (await backend.publish("a", 2, key="k", policy=policy)).position == first.position
    clock.advance(0.001)
    assert (await backend.publish("a", 3, key="k", policy=policy)).duplicate is False


async def test_a_key_is_not_rejected_behind_a_longer_lived_one(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    await backend.publish("a", 1, key="long", policy=HistoryPolicy(key_ttl=100))
    await backend.publish("a", 2, key="short", policy=HistoryPolicy(key_ttl=1))
    clock.advance(2)
    assert (await backend.publish("a", 3, key="short", policy=POLICY)).duplicate is False
    assert (await backend.publish("a", 4, key="long", policy=POLICY)).duplicate is True


# --- history bounds with the injectable clock ---------------------------------------------


async def test_ttl_follows_the_clock_exactly(backend: MemoryBackend, clock: FakeClock) -> None:
    policy = HistoryPolicy(size=10, ttl=10, key_ttl=10)
    first = await backend.publish("a", 1, key=None, policy=policy)
    clock.advance(5)
    await backend.publish("a", 2, key=None, policy=policy)
    since = Position(first.position.epoch, 0)

    clock.advance(4.999)
    assert len((await backend.history("a", since, policy=policy)).publications) == 2
    clock.advance(0.001)  # the first is exactly 10 s old: gone
    assert (await backend.history("a", since, policy=policy)).recovered is False
    result = await backend.history("a", first.position, policy=policy)
    assert [p.data for p in result.publications] == [2]
    clock.advance(5)
    assert (await backend.history("a", first.position, policy=policy)).recovered is False
    top = await backend.history("a", None, policy=policy)
    assert top.position == Position(first.position.epoch, 2)


async def test_a_smaller_size_applies_on_the_next_call(backend: MemoryBackend) -> None:
    results = [await backend.publish("a", i, key=None, policy=POLICY) for i in range(10)]
    epoch = results[0].position.epoch
    small = HistoryPolicy(size=2, ttl=300, key_ttl=600)
    assert (await backend.history("a", Position(epoch, 7), policy=small)).recovered is False
    kept = await backend.history("a", Position(epoch, 8), policy=small)
    assert [p.data for p in kept.publications] == [8, 9]


async def test_zero_ttl_keeps_nothing(backend: MemoryBackend) -> None:
    policy = HistoryPolicy(size=10, ttl=0, key_ttl=0)
    first = await backend.publish("a", 1, key="k", policy=policy)
    second = await backend.publish("a", 2, key="k", policy=policy)
    assert second.duplicate is False  # key_ttl=0 remembers no key
    assert (await backend.history("a", first.position, policy=policy)).recovered is False


# --- listener and lifecycle ---------------------------------------------------------------


async def test_listener_is_called_synchronously(clock: FakeClock) -> None:
    received: list[Publication] = []
    backend = MemoryBackend(clock=clock, sweep_interval=None)
    await backend.start(received.append, lambda channel: None)
    await backend.subscribe("a")
    result = await backend.publish("a", "x", key=None, policy=POLICY)
    assert received == [Publication("a", "x", result.position)]
    await backend.close()


async def test_a_failing_listener_does_not_fail_the_publish(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def listener(publication: Publication) -> None:
        raise RuntimeError("boom")

    backend = MemoryBackend(clock=clock, sweep_interval=None)
    await backend.start(listener, lambda channel: None)
    await backend.subscribe("a")
    with caplog.at_level(logging.ERROR, logger="rtlink.backends.memory"):
        result = await backend.publish("a", "x", key=None, policy=POLICY)
    assert result.position.offset == 1
    assert "listener failed" in caplog.text
    assert len((await backend.history("a", Position(result.position.epoch, 0),
                                      policy=POLICY)).publications) == 1
    await backend.close()


async def test_publish_before_start_stores_without_delivering(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    await backend.subscribe("a")
    result = await backend.publish("a", "x", key=None, policy=POLICY)
    assert result.position.offset == 1
    await backend.close()


async def test_publish_now_is_publish_synchronously(clock: FakeClock) -> None:
    """The hub's synchronous path (Backend.publish_now) stores, de-duplicates and
    delivers like publish(), whose positions continue from it."""
    received: list[Publication] = []
    backend = MemoryBackend(clock=clock, sweep_interval=None)
    await backend.start(received.append, lambda channel: None)
    await backend.subscribe("a")
    assert backend.publish_now is not None
    position, duplicate = backend.publish_now("a", "x", "k", POLICY)
    assert (position.offset, duplicate) == (1, False)
    assert backend.publish_now("a", "again", "k", POLICY) == (position, True)
    second = await backend.publish("a", "y", key=None, policy=POLICY)
    assert second.position == Position(position.epoch, 2)
    assert received == [Publication("a", "x", position), Publication("a", "y", second.position)]
    await backend.close()


async def test_a_subclass_overriding_publish_sees_every_hub_publication() -> None:
    """The hub takes publish_now when the backend has one; a subclass that overrides
    publish() has none, so the hub awaits its publish() and nothing bypasses it."""
    class Watched(MemoryBackend):
        def __init__(self) -> None:
            super().__init__(sweep_interval=None)
            self.seen: list[object] = []

        async def publish(self, channel: str, data: object, *, key: str | None,
                          policy: HistoryPolicy) -> PublishResult:
            self.seen.append(data)
            return await super().publish(channel, data, key=key, policy=policy)

    backend = Watched()
    assert backend.publish_now is None
    async with Hub(backend) as hub:
        await hub.publish("a", 1)
        await hub.publish("a", 2, key="k")
    assert backend.seen == [1, 2]


async def test_close_drops_state(backend: MemoryBackend) -> None:
    await backend.publish("a", 1, key=None, policy=POLICY)
    await backend.close()
    assert backend.channel_count == 0


async def test_epochs_are_per_channel(backend: MemoryBackend) -> None:
    epochs = {
        (await backend.publish(f"c{i}", None, key=None, policy=POLICY)).position.epoch
        for i in range(20)
    }
    assert len(epochs) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sweep_interval": 0},
        {"sweep_interval": -1},
        {"idle_ttl": -1},
        {"max_keys_per_channel": 0},
    ],
)
def test_invalid_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MemoryBackend(**kwargs)  # type: ignore[arg-type]

"""Batched, bounded, shared history reads (rtlink/backends/redis/reads.py), with a fake
runner in place of Redis."""

from __future__ import annotations

import asyncio

import pytest

from rtlink.backends import HistoryResult
from rtlink.backends.redis.reads import HistoryReads, Read
from rtlink.errors import BackendUnavailable
from rtlink.protocol import Position


class Runner:
    """Answers each read of batch N with top N; holds batches until released."""

    def __init__(self) -> None:
        self.batches: list[list[Read]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, batch: list[Read]) -> list[HistoryResult]:
        self.batches.append(batch)
        number = len(self.batches)  # the top each answer says: the batch's number
        await self.release.wait()
        return [HistoryResult([], Position("e", number), True) for _ in batch]


def reads(runner: Runner, **options: object) -> HistoryReads:
    settings: dict[str, object] = {"group": None, "batch": 3, "concurrency": 2,
                                   "max_waiting": 100, "timeout": 5.0,
                                   "address": lambda: "here"}
    settings.update(options)
    return HistoryReads(runner, **settings)  # type: ignore[arg-type]


async def turns(count: int = 5) -> None:
    """Let the event loop run a few turns (tasks start, batches form and run)."""
    for _ in range(count):
        await asyncio.sleep(0)


def read(channel: str, offset: int = 0) -> Read:
    return Read(channel, Position("e", offset), 100, 0, 1000)


async def test_reads_of_one_turn_go_in_batches() -> None:
    runner = Runner()
    history = reads(runner)
    results = await asyncio.gather(*(history.read(read(f"c{i}")) for i in range(7)))
    assert [len(batch) for batch in runner.batches] == [3, 3, 1]
    assert len(results) == 7


async def test_the_same_read_is_shared_while_queued() -> None:
    runner = Runner()
    runner.release.clear()
    history = reads(runner)
    first = [asyncio.ensure_future(history.read(read("c"))) for _ in range(5)]
    await turns()
    assert runner.batches == [[read("c")]]  # five callers, one read
    # Sent already, and the node's position unknown: the newcomer may have joined after
    # the read ran, so it reads again.
    later = asyncio.ensure_future(history.read(read("c")))
    await turns()
    assert runner.batches == [[read("c")], [read("c")]]
    runner.release.set()
    assert {r.position.offset for r in await asyncio.gather(*first)} == {1}
    assert (await later).position.offset == 2


async def test_a_sent_read_is_shared_when_it_reaches_what_the_node_delivered() -> None:
    runner = Runner()
    runner.release.clear()
    history = reads(runner)
    sent = asyncio.ensure_future(history.read(read("c")))
    await turns()
    # The answer will say top 1. A caller to whom the node delivered up to 1 before it
    # asked misses nothing in it; one to whom it delivered up to 2 would miss 2.
    covered = asyncio.ensure_future(history.read(read("c"), Position("e", 1)))
    behind = asyncio.ensure_future(history.read(read("c"), Position("e", 2)))
    other_epoch = asyncio.ensure_future(history.read(read("c"), Position("f", 0)))
    await turns()
    runner.release.set()
    assert (await sent).position.offset == 1
    assert (await covered).position.offset == 1
    assert (await behind).position.offset == 2  # read again (one read for both)
    assert (await other_epoch).position.offset == 2
    assert len(runner.batches) == 2


async def test_a_caller_giving_up_does_not_cancel_the_read_of_the_others() -> None:
    runner = Runner()
    runner.release.clear()
    history = reads(runner)
    quitter = asyncio.ensure_future(history.read(read("c")))
    stayer = asyncio.ensure_future(history.read(read("c")))
    await asyncio.sleep(0)
    quitter.cancel()
    runner.release.set()
    assert (await stayer).recovered


async def test_too_many_waiting_are_refused_at_once() -> None:
    runner = Runner()
    history = reads(runner, max_waiting=4)
    outcomes = await asyncio.gather(*(history.read(read(f"c{i}")) for i in range(6)),
                                    return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, BackendUnavailable)]
    assert len(refused) == 2 and "4 history reads are waiting" in str(refused[0])


async def test_a_read_that_waited_too_long_for_its_batch_is_refused() -> None:
    runner = Runner()
    runner.release.clear()
    history = reads(runner, concurrency=1, batch=1, timeout=0.05)
    running = asyncio.ensure_future(history.read(read("a")))
    waiting = asyncio.ensure_future(history.read(read("b")))
    await asyncio.sleep(0.1)
    runner.release.set()
    assert (await running).recovered
    with pytest.raises(BackendUnavailable, match="waited more than 0.05 s"):
        await waiting


async def test_a_failed_batch_fails_its_reads_and_the_next_ones_run() -> None:
    calls = 0

    async def flaky(batch: list[Read]) -> list[HistoryResult]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise BackendUnavailable("down")
        return [HistoryResult([], Position("e", 1), True) for _ in batch]

    history = HistoryReads(flaky, group=None, batch=1, concurrency=1, max_waiting=10,
                           timeout=5, address=lambda: "here")
    first, second = await asyncio.gather(history.read(read("a")), history.read(read("b")),
                                         return_exceptions=True)
    assert isinstance(first, BackendUnavailable)
    assert isinstance(second, HistoryResult)


async def test_reads_of_other_groups_never_share_a_batch() -> None:
    runner = Runner()
    history = reads(runner, group=lambda channel: len(channel), batch=10)
    await asyncio.gather(*(history.read(read(name)) for name in ("a", "bb", "c", "dd")))
    assert sorted(sorted(r.channel for r in batch) for batch in runner.batches) == [
        ["a", "c"], ["bb", "dd"]]

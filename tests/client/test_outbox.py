"""The client's outbox: bounded, ordered, keyed by idempotency key."""

from __future__ import annotations

import asyncio

import pytest

from rtlink.client.outbox import Outbox, OutboxEntry
from rtlink.errors import InvalidInput, OutboxFull


def entry(key: str, channel: str = "chat", data: object = None) -> OutboxEntry:
    return OutboxEntry(channel, data if data is not None else key,
                       key, asyncio.get_running_loop().create_future())


async def test_add_keeps_insertion_order_and_remove_takes_out() -> None:
    outbox = Outbox(10)
    entries = [entry(k) for k in ("c", "a", "b", "z")]
    for e in entries:
        outbox.add(e)
    assert len(outbox) == 4
    assert list(outbox) == entries
    assert outbox.unsent() == entries
    outbox.remove(entries[1])
    assert list(outbox) == [entries[0], entries[2], entries[3]]
    assert len(outbox) == 3
    # Removing again, or removing an entry never added, is harmless.
    outbox.remove(entries[1])
    outbox.remove(entry("never"))
    assert len(outbox) == 3


async def test_remove_ignores_a_different_entry_with_the_same_key() -> None:
    outbox = Outbox(10)
    first = entry("k")
    outbox.add(first)
    outbox.remove(entry("k"))  # same key, other entry: not ours to remove
    assert list(outbox) == [first]


async def test_iteration_is_a_snapshot() -> None:
    outbox = Outbox(10)
    entries = [entry(str(n)) for n in range(5)]
    for e in entries:
        outbox.add(e)
    seen = []
    for e in outbox:  # removing while iterating must not break iteration
        outbox.remove(e)
        seen.append(e)
    assert seen == entries
    assert len(outbox) == 0


async def test_unsent_skips_entries_in_flight_until_reset_attempts() -> None:
    outbox = Outbox(10)
    entries = [entry(str(n)) for n in range(4)]
    for e in entries:
        outbox.add(e)
    entries[0].request_id = 1
    entries[2].request_id = 2
    assert outbox.unsent() == [entries[1], entries[3]]
    outbox.reset_attempts()
    assert all(e.request_id is None for e in entries)
    assert outbox.unsent() == entries  # oldest first, all of them again


async def test_full_outbox_refuses_and_frees_up_after_remove() -> None:
    outbox = Outbox(3)
    entries = [entry(str(n)) for n in range(3)]
    for e in entries:
        outbox.add(e)
    extra = entry("extra")
    with pytest.raises(OutboxFull):
        outbox.add(extra)
    assert list(outbox) == entries  # nothing was dropped to make room
    outbox.remove(entries[0])
    outbox.add(extra)
    assert list(outbox) == [entries[1], entries[2], extra]


async def test_duplicate_key_is_refused() -> None:
    outbox = Outbox(10)
    first = entry("same")
    outbox.add(first)
    with pytest.raises(InvalidInput, match="same"):
        outbox.add(entry("same", data="other"))
    assert list(outbox) == [first]


async def test_limit_of_one_works() -> None:
    outbox = Outbox(1)
    outbox.add(entry("a"))
    with pytest.raises(OutboxFull):
        outbox.add(entry("b"))


@pytest.mark.parametrize("limit", [0, -1, -1000])
def test_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(InvalidInput):
        Outbox(limit)


def test_default_limit() -> None:
    assert Outbox().limit == 1000

"""Control requests between nodes (rtlink/control.py) over the memory backend's
in-process delivery, and over a shared bus of several backends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest

from rtlink.backends.base import ControlListener
from rtlink.backends.memory import MemoryBackend
from rtlink.control import ControlPlane


class SharedMemory(MemoryBackend):
    """Memory backends whose control messages reach every backend of one list (the
    nodes of a test), plus ``silent`` nodes that count as reached but never answer."""

    def __init__(self, nodes: dict[str, ControlListener], silent: int = 0) -> None:
        super().__init__()
        self.nodes = nodes
        self.silent = silent

    async def start_control(self, node: str, listener: ControlListener) -> None:
        self.nodes[node] = listener

    async def send_control(self, message: bytes, node: str | None = None) -> int | None:
        targets = [listener for name, listener in list(self.nodes.items())
                   if node is None or name == node]
        for listener in targets:
            listener(message)
        return len(targets) + (self.silent if node is None else 0)


async def count(args: Mapping[str, Any]) -> int:
    return int(args["n"])


async def fail(args: Mapping[str, Any]) -> int:
    raise RuntimeError("broken handler")


async def test_every_node_answers_and_the_results_come_back() -> None:
    nodes: dict[str, ControlListener] = {}
    planes = [ControlPlane(SharedMemory(nodes), {"count": count}) for _ in range(3)]
    for plane in planes:
        await plane.start()
    gathered = await planes[0].ask("count", {"n": 2})
    assert (gathered.results, gathered.nodes) == ([2, 2, 2], 3)
    for plane in planes:
        await plane.close()


async def test_a_failing_node_is_left_out_without_waiting_for_it(
        caplog: pytest.LogCaptureFixture) -> None:
    nodes: dict[str, ControlListener] = {}
    good = ControlPlane(SharedMemory(nodes), {"count": count}, timeout=5)
    bad = ControlPlane(SharedMemory(nodes), {"count": fail}, timeout=5)
    await good.start()
    await bad.start()
    started = time.monotonic()
    gathered = await good.ask("count", {"n": 1})
    assert gathered.results == [1] and gathered.nodes == 2
    assert time.monotonic() - started < 1  # the failure was an answer
    assert "broken handler" in caplog.text
    await good.close()
    await bad.close()


async def test_a_silent_node_costs_the_timeout_and_is_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    plane = ControlPlane(SharedMemory({}, silent=1), {"count": count}, timeout=0.2)
    await plane.start()
    started = time.monotonic()
    gathered = await plane.ask("count", {"n": 5})
    assert gathered.results == [5] and gathered.nodes == 2
    assert 0.2 <= time.monotonic() - started < 2
    assert "1 of 2 nodes answered" in caplog.text
    await plane.close()


async def test_invalid_messages_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rtlink.control")
    backend = MemoryBackend()
    plane = ControlPlane(backend, {"count": count})
    await plane.start()
    for raw in (b"not json", b'{"op": "unknown", "id": 1, "from": "x", "args": {}}',
                b'{"answer": 99, "node": "x", "result": 1}'):
        await backend.send_control(raw)
    await asyncio.sleep(0)
    assert caplog.text.count("ignoring an invalid control message") == 2
    assert (await plane.ask("count", {"n": 1})).results == [1]
    await plane.close()


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ControlPlane(MemoryBackend(), {}, timeout=0)

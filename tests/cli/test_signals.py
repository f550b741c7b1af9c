"""Signal handling of the commands (rtlink.cli.signals), in this process: SIGTERM is
sent to the test process itself while the handlers are installed. What a signal does
to a running ``rtlink serve`` or ``rtlink tail`` is in tests/e2e/test_cli.py."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from rtlink.cli.signals import signal_handlers, until_signal

# The loop installs signal handlers in the main thread only; elsewhere SIGTERM would
# end the test run.
pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signal handlers need the main thread")


async def test_signal_handlers_call_back_with_the_signal_and_are_removed_after() -> None:
    received = asyncio.Queue[int]()
    with signal_handlers(received.put_nowait):
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(received.get(), 5) == signal.SIGTERM
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


async def test_until_signal_cancels_the_work_which_cleans_up() -> None:
    started = asyncio.Event()
    cleaned_up = False

    async def work() -> int:
        nonlocal cleaned_up
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up = True
        return 0

    task = asyncio.ensure_future(until_signal(work(), 130))
    await started.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 5) == 130
    assert cleaned_up
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


async def test_until_signal_returns_what_the_work_returns() -> None:
    async def work() -> int:
        return 7

    assert await until_signal(work(), 130) == 7

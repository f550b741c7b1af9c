"""Signal handling of the commands: SIGINT (Ctrl-C) and SIGTERM stop them cleanly, and
the same signal again while they clean up gives up (KeyboardInterrupt)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

__all__ = ["signal_handlers", "until_signal"]


@contextlib.contextmanager
def signal_handlers(on_signal: Callable[[int], None]) -> Iterator[None]:
    """Within the block, call ``on_signal(signum)`` on SIGINT and SIGTERM in the running
    loop, where the loop can (not on Windows, not outside the main thread: there the
    default handling stays)."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            pass
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def until_signal(work: Coroutine[Any, Any, int], interrupted: int) -> int:
    """Run ``work``; on SIGINT or SIGTERM cancel it (it cleans up) and return
    ``interrupted``. A second signal while it cleans up raises KeyboardInterrupt."""
    task = asyncio.ensure_future(work)
    signalled = False

    def on_signal(signum: int) -> None:
        nonlocal signalled
        if signalled:
            raise KeyboardInterrupt
        signalled = True
        task.cancel()

    with signal_handlers(on_signal):
        try:
            return await task
        except asyncio.CancelledError:
            if signalled:
                return interrupted
            raise

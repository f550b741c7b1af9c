"""How every example runs: parse ``--host``/``--port``, serve, stop cleanly on Ctrl-C.

This is the scaffolding around the examples, not what they show (that is in each
example's ``server.py``). Each example's ``__main__`` hands :func:`main` a coroutine
that sets things up, prints where to look, and waits; Ctrl-C or SIGTERM cancels it,
so every ``async with`` inside closes what it opened (servers, nginx, Redis) and the
process exits with status 0. A problem the user must fix (a port in use, nginx not
installed) is an :class:`ExampleError`: printed as one line, exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

__all__ = ["ExampleError", "main", "serve", "forever", "announce", "url_of"]

#: Seconds open requests get to finish when an example stops.
SHUTDOWN_TIMEOUT = 3.0


class ExampleError(Exception):
    """Something the user has to fix before the example can run; the message says what."""


def main(run: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], *, name: str,
         description: str, default_port: int,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Parse the command line and run ``run(args)`` until Ctrl-C or SIGTERM.

    Args:
        run: sets the example up and waits (normally with :func:`forever`).
        name: the example's name, as ``bash examples/run.sh NAME`` runs it.
        description: the first line of ``--help``.
        default_port: the port the example listens on unless ``--port`` says otherwise.
            Fixed rather than random so that a page left open finds the server again
            when it is restarted (that is how the examples show reconnecting).
        add_arguments: adds the example's own options to the parser.
    """
    parser = argparse.ArgumentParser(prog=f"bash examples/run.sh {name}",
                                     description=description)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=default_port,
                        help="port to listen on; 0 picks a free one (default: %(default)s)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    try:
        asyncio.run(_until_signal(run(args)))
    except ExampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


async def _until_signal(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine``; cancel it (so its cleanups run) on SIGINT or SIGTERM."""
    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # not ours: something inside was cancelled unexpectedly
        print("stopped", flush=True)


async def forever() -> None:
    """Wait until the example is stopped (Ctrl-C cancels this)."""
    await asyncio.Future()


def announce(*lines: str) -> None:
    """Print what the user should open or run, at once (stdout may be a pipe)."""
    print("\n".join(lines), flush=True)


def url_of(host: str, port: int, path: str = "/") -> str:
    """The URL to print for a server listening on ``host``:``port``."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere: this machine is one of them
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on ``host``:``port`` (0: a free port) and yield the port.

    Raises:
        ExampleError: the address cannot be listened on (a port in use, say).
    """
    # handler_cancellation: an SSE stream or long poll whose client left is dropped at
    # once rather than at its next write (as `rtlink serve` does).
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT, handler_cancellation=True)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ExampleError(f"cannot listen on {host}:{port}: {reason}; "
                               "choose another port with --port") from None
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()

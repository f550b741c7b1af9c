"""The server of the load test (tests/e2e/test_load.py), in a process of its own.

``.venv/bin/python tests/support/load_server.py --port N`` serves rtlink under ``/rt`` (memory
backend; channels ``load:*`` accept client publishes, so the test publishes by ``POST
/rt/send`` like any client) and one test-only route, ``GET /test/stats``, answering
what a leak would change: the process's open file descriptors, its asyncio tasks and
the hub's connections (by transport). It prints ``ready`` once it listens and stops
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import resource
import signal
import sys

from aiohttp import web

import rtlink


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def make_app(hub: rtlink.Hub) -> web.Application:
    """rtlink on ``/rt`` plus the test-only ``/test/stats`` route."""
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")

    async def stats(request: web.Request) -> web.Response:
        by_transport = collections.Counter(c.transport for c in hub.connections)
        return web.json_response({
            "fds": len(os.listdir("/proc/self/fd")),
            "tasks": len(asyncio.all_tasks()),
            "connections": len(hub.connections),
            "by_transport": dict(by_transport),
        })

    app.router.add_get("/test/stats", stats)
    return app


async def serve(port: int, hub: rtlink.Hub) -> None:
    runner = web.AppRunner(make_app(hub), shutdown_timeout=2)
    await runner.setup()
    # Thousands of clients connect at once: a short accept queue would drop SYNs,
    # which the clients only retry a second later.
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()  # until cancelled by a signal
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=5.0,
                        help="also bounds how long a stream or poll of a client that "
                             "left without a word lasts (default: %(default)s)")
    parser.add_argument("--pong-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    raise_open_file_limit()
    hub = rtlink.Hub(
        channels={"load:*": rtlink.ChannelOptions(client_publish=True, history_size=1000)},
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        poll_timeout=args.ping_interval,
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(args.port, hub))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])

"""The servers under test, one per system, all with the same command line.

``python -m bench.servers.<name> --port P --transport T [--backend URL]`` (the Node
peers: ``node bench/servers/node/<ws|socketio>.mjs ...``, see
``bench/servers/node/common.mjs``) listens on 127.0.0.1:P and prints ``ready`` once it
accepts connections. A client subscribes on connect to one channel: the one named by
the query parameter ``channel`` of its URL, "bench" without one (rtlink: by a
``subscribe`` frame or the ``subs`` cursor naming the channel). Every server answers
three control routes:

``POST /control/burst?count=N&size=B[&rate=R]``
    Publishes N messages to "bench" whose data is about B bytes of JSON (see
    :func:`payload`) as fast as the server can (or R per second when ``rate`` is
    given), then answers ``published N``. The last message carries ``"end":1``, so a
    reader knows the burst is over without counting; each carries ``"t"``, the
    wall-clock time of its publication, for latency.
``POST /control/users?channels=C[&count=M]&size=B``
    Per-user channels: M publications (default C) back to back, publication *i* to
    the channel ``user:<i mod C>``; the last one of each channel carries ``"end":1``.
``POST /control/subscribers``
    The number of subscribers (connections, for rtlink) the server has, as text.

``--backend`` names rtlink's backend (``memory://`` by default, or a ``redis://`` URL)
or python-socketio's client manager (a ``redis://`` URL: ``AsyncRedisManager``);
the other servers refuse anything but ``memory://``. What each server does per
publication is described in its module docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

__all__ = ["CHANNEL", "USER_PREFIX", "Publish", "payload", "burst", "users", "parse_args",
           "serve", "control_routes", "channel_of", "memory_only"]

#: The channel of the one-channel scenarios (and of clients that name none).
CHANNEL = "bench"
#: Per-user channels are named USER_PREFIX + a number.
USER_PREFIX = "user:"
#: ``await publish(channel, data)``: hands one publication to the system.
Publish = Callable[[str, dict[str, Any]], Awaitable[object]]


def payload(index: int, size: int, last: bool) -> dict[str, Any]:
    """The data of publication ``index``: about ``size`` bytes once JSON-encoded.

    The key ``"pad"`` appears exactly once per publication in every system's framing,
    which is what the readers count; ``"end"`` marks the last one of a burst.
    """
    data: dict[str, Any] = {"n": index, "t": time.time()}
    if last:
        data["end"] = 1
    used = len(json.dumps(data, separators=(",", ":"))) + len(',"pad":""')
    data["pad"] = "x" * max(0, size - used)
    return data


async def burst(publish: Publish, count: int, size: int, rate: float | None) -> None:
    """Publish ``count`` payloads to "bench", back to back or at ``rate`` per second."""
    start = time.monotonic()
    for index in range(count):
        await publish(CHANNEL, payload(index, size, index == count - 1))
        if rate:
            # Always yield, as an app publishing from its handlers or tasks does: a
            # loop that never awaits anything real (rtlink's memory backend returns at
            # once) would starve every writer and measure one huge batch, not a rate.
            await asyncio.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))


async def users(publish: Publish, channels: int, count: int, size: int) -> None:
    """Publish ``count`` payloads back to back, payload *i* to ``user:<i mod channels>``.

    The last publication of each channel carries ``"end"``.
    """
    for index in range(count):
        await publish(f"{USER_PREFIX}{index % channels}",
                      payload(index, size, index >= count - channels))


def channel_of(query: Mapping[str, str]) -> str:
    """The channel a client asks for in its URL's query (``channel``), else "bench"."""
    return query.get("channel") or CHANNEL


def control_routes(app: web.Application, publish: Publish,
                   subscribers: Callable[[], int]) -> None:
    """Add the control routes of an aiohttp-based bench server to ``app``."""

    async def on_burst(request: web.Request) -> web.Response:
        count = int(request.query.get("count", "200"))
        size = int(request.query.get("size", "100"))
        rate = float(request.query["rate"]) if "rate" in request.query else None
        await burst(publish, count, size, rate)
        return web.Response(text=f"published {count}")

    async def on_users(request: web.Request) -> web.Response:
        channels = int(request.query.get("channels", "1000"))
        count = int(request.query.get("count", str(channels)))
        await users(publish, channels, count, int(request.query.get("size", "100")))
        return web.Response(text=f"published {count}")

    async def on_subscribers(request: web.Request) -> web.Response:
        return web.Response(text=str(subscribers()))

    app.router.add_post("/control/burst", on_burst)
    app.router.add_post("/control/users", on_users)
    app.router.add_route("*", "/control/subscribers", on_subscribers)


def parse_args(description: str) -> argparse.Namespace:
    """The common command line: ``--port P --transport ws|sse|poll [--backend URL]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=["ws", "sse", "poll"], default="ws")
    parser.add_argument("--history", type=int, default=None,
                        help="rtlink: history_size of the channel (default: rtlink's)")
    parser.add_argument("--backend", default="memory://",
                        help="memory:// or a redis:// URL (rtlink, python-socketio)")
    return parser.parse_args()


def memory_only(backend: str) -> None:
    """Exit with a message unless ``backend`` is the in-process default."""
    if backend != "memory://":
        raise SystemExit(f"backend {backend}: this server has no other than memory://")


async def serve(app: web.Application, port: int) -> None:
    """Run ``app`` on 127.0.0.1:``port``, print ``ready``, and serve until killed.

    The listen backlog is large so thousands of clients connecting at once are not
    dropped into SYN retries. The process ends on SIGTERM (default action): benchmark
    servers need no graceful shutdown.
    """
    # handler_cancellation: a handler whose client left is cancelled (as `rtlink serve`
    # does), so the naive SSE handlers end with their clients.
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

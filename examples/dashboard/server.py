"""A live dashboard: the server publishes its own metrics ten times a second.

Every 100 ms a background task samples this process (CPU use, resident memory, open
rtlink connections) and publishes the sample to the ``metrics`` channel; the page
(index.html) plots what arrives. A page that drops off for a few seconds gets the
samples it missed when it reconnects, from the channel's short history.
"""

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

import rtlink

PAGE = Path(__file__).with_name("index.html")
INTERVAL = 0.1  # seconds between samples


class ProcessSampler:
    """Measures this process: CPU use since the previous sample, memory, connections."""

    def __init__(self, hub: rtlink.Hub) -> None:
        self.hub = hub
        self.cpu_time = time.process_time()
        self.wall_time = time.monotonic()

    def sample(self) -> dict[str, float | int | None]:
        cpu_time, wall_time = time.process_time(), time.monotonic()
        cpu = 100 * (cpu_time - self.cpu_time) / max(wall_time - self.wall_time, 1e-9)
        self.cpu_time, self.wall_time = cpu_time, wall_time
        return {
            "time": time.time(),
            "cpu_percent": round(cpu, 1),  # of one core
            "rss_bytes": resident_memory(),
            "connections": len(self.hub.connections),
        }


def resident_memory() -> int | None:
    """This process's resident set size in bytes (Linux: /proc), or None elsewhere."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


async def publish_metrics(hub: rtlink.Hub) -> None:
    """Publish a sample every INTERVAL seconds, until cancelled."""
    sampler = ProcessSampler(hub)
    while True:
        await hub.publish("metrics", sampler.sample())
        await asyncio.sleep(INTERVAL)


def make_app() -> web.Application:
    """The dashboard application: the page at ``/``, rtlink at ``/rt``."""
    hub = rtlink.Hub(channels={
        # 10 s of samples: enough to bridge a short network blip without a gap.
        "metrics": rtlink.ChannelOptions(history_size=100, history_ttl=10),
    })
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")

    async def metrics_task(app: web.Application) -> AsyncIterator[None]:
        # Registered after attach(): runs while the hub is started.
        task = asyncio.create_task(publish_metrics(hub))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(metrics_task)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app.router.add_get("/", index)
    return app

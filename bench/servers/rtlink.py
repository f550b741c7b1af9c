"""rtlink through its public API: ``rtlink.Hub`` (memory backend) and ``rtlink.attach``.

The channel "bench" has default options (history of 100, no client publishing; ``--history``
changes the history size); every
transport is mounted under ``/rt`` (``/rt/ws``, ``/rt/sse``, ``/rt/poll``). A burst
calls ``await hub.publish("bench", data)`` once per publication.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

import rtlink
from bench.servers import CHANNEL, control_routes, parse_args, serve


def main() -> None:
    args = parse_args(__doc__ or "")
    options = rtlink.ChannelOptions(client_publish=False)
    if args.history is not None:
        options = rtlink.ChannelOptions(client_publish=False, history_size=args.history)
    hub = rtlink.Hub(channels={CHANNEL: options})
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")

    async def publish(data: dict[str, Any]) -> None:
        await hub.publish(CHANNEL, data)

    control_routes(app, publish, lambda: len(hub.connections))
    asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()

"""rtlink through its public API: ``rtlink.Hub`` and ``rtlink.attach``.

The backend is ``--backend`` (the memory backend by default; a ``redis://`` URL gives
the Redis backend with its default options). Two channel patterns with default options
(history of 100, no client publishing; ``--history`` changes the history size): "bench",
and "user:*" for the per-user channels; and "room", which keeps presence
(bench/scenarios/presence.py). Every transport is mounted under ``/rt``
(``/rt/ws``, ``/rt/sse``, ``/rt/poll``); a client names its channel in its ``subscribe``
frame or ``subs`` cursor. A publication is one ``await hub.publish(channel, data)``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

import rtlink
from bench.servers import CHANNEL, USER_PREFIX, control_routes, parse_args, serve

__all__ = ["main"]


def main() -> None:
    args = parse_args(__doc__ or "")
    options = rtlink.ChannelOptions(client_publish=False)
    if args.history is not None:
        options = rtlink.ChannelOptions(client_publish=False, history_size=args.history)
    hub = rtlink.Hub(args.backend, channels={
        CHANNEL: options, f"{USER_PREFIX}*": options,
        "room": rtlink.ChannelOptions(presence=True)})
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")
    control_routes(app, hub.publish, lambda: len(hub.connections))
    asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()

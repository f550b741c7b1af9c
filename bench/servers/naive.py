"""A naive raw aiohttp server: what users hand-write.

A client subscribes to the channel named by ``?channel=`` ("bench" without one): a dict
of channel name → set of its clients. WebSocket (``/ws``): a ``WebSocketResponse`` per
client; a publication is ``await ws.send_json(message)`` for each subscriber of the
channel in a loop (JSON-encoded per subscriber, as ``send_json`` does). SSE (``/sse``):
a ``StreamResponse`` per client; a publication is
``await response.write(b"data: " + json + b"\\n\\n")`` per subscriber, encoding per
subscriber too. After subscribing, each client gets one ``{"type":"subscribed"}``
message so it knows the server counts it.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from aiohttp import web

from bench.servers import channel_of, control_routes, memory_only, parse_args, serve

__all__ = ["main"]


def main() -> None:
    args = parse_args(__doc__ or "")
    memory_only(args.backend)
    sockets: defaultdict[str, set[web.WebSocketResponse]] = defaultdict(set)
    streams: defaultdict[str, set[web.StreamResponse]] = defaultdict(set)
    count = 0

    async def on_ws(request: web.Request) -> web.WebSocketResponse:
        nonlocal count
        channel = channel_of(request.query)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets[channel].add(ws)
        count += 1
        try:
            await ws.send_json({"type": "subscribed", "channel": channel})
            async for _ in ws:
                pass
        finally:
            count -= 1
            sockets[channel].discard(ws)
            if not sockets[channel]:
                del sockets[channel]
        return ws

    async def on_sse(request: web.Request) -> web.StreamResponse:
        nonlocal count
        channel = channel_of(request.query)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        streams[channel].add(response)
        count += 1
        try:
            subscribed = {"type": "subscribed", "channel": channel}
            await response.write(b"data: " + json.dumps(subscribed).encode() + b"\n\n")
            await asyncio.Event().wait()  # until the client leaves (cancelled)
        finally:
            count -= 1
            streams[channel].discard(response)
            if not streams[channel]:
                del streams[channel]
        return response

    async def publish(channel: str, data: dict[str, Any]) -> None:
        message = {"channel": channel, "data": data}
        for ws in list(sockets.get(channel, ())):
            try:
                await ws.send_json(message)
            except ConnectionError:
                sockets[channel].discard(ws)
        for response in list(streams.get(channel, ())):
            try:
                await response.write(b"data: " + json.dumps(message).encode() + b"\n\n")
            except ConnectionError:
                streams[channel].discard(response)

    app = web.Application()
    app.router.add_get("/ws", on_ws)
    app.router.add_get("/sse", on_sse)
    control_routes(app, publish, lambda: count)
    asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()

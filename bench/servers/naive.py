"""A naive raw aiohttp server: what users hand-write.

WebSocket (``/ws``): a ``WebSocketResponse`` per client kept in a set; a publication
is ``await ws.send_json(message)`` for each subscriber in a loop (JSON-encoded per
subscriber, as ``send_json`` does). SSE (``/sse``): a ``StreamResponse`` per client;
a publication is ``await response.write(b"data: " + json + b"\\n\\n")`` per subscriber,
encoding per subscriber too. After subscribing, each client gets one
``{"type":"subscribed"}`` message so it knows the server counts it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from bench.servers import CHANNEL, control_routes, parse_args, serve

SUBSCRIBED = {"type": "subscribed", "channel": CHANNEL}


def main() -> None:
    args = parse_args(__doc__ or "")
    sockets: set[web.WebSocketResponse] = set()
    streams: set[web.StreamResponse] = set()

    async def on_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.add(ws)
        try:
            await ws.send_json(SUBSCRIBED)
            async for _ in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    async def on_sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        streams.add(response)
        try:
            await response.write(b"data: " + json.dumps(SUBSCRIBED).encode() + b"\n\n")
            await asyncio.Event().wait()  # until the client leaves (cancelled)
        finally:
            streams.discard(response)
        return response

    async def publish(data: dict[str, Any]) -> None:
        message = {"channel": CHANNEL, "data": data}
        for ws in list(sockets):
            try:
                await ws.send_json(message)
            except ConnectionError:
                sockets.discard(ws)
        for response in list(streams):
            try:
                await response.write(b"data: " + json.dumps(message).encode() + b"\n\n")
            except ConnectionError:
                streams.discard(response)

    app = web.Application()
    app.router.add_get("/ws", on_ws)
    app.router.add_get("/sse", on_sse)
    control_routes(app, publish, lambda: len(sockets) + len(streams))
    asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()

"""python-socketio's ``AsyncServer`` on aiohttp, the way its documentation sets it up.

Only the transport under test is enabled (``--transport ws``: websocket; ``poll``:
polling). Each client joins, in the ``connect`` handler (before the server acknowledges
the connect with ``40``), the room named by the query parameter ``channel`` of its
handshake URL ("bench" without one). A publication is
``await sio.emit("msg", data, room=channel)``. With ``--backend redis://...`` the server
uses ``socketio.AsyncRedisManager`` (its standard Redis adapter): an emit is published
to Redis and delivered to the room's clients when it comes back through the manager's
pub/sub listener.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web

from bench.servers import channel_of, control_routes, parse_args, serve

__all__ = ["main"]


def main() -> None:
    args = parse_args(__doc__ or "")
    transports = ["websocket"] if args.transport == "ws" else ["polling"]
    options: dict[str, Any] = {}
    if args.backend != "memory://":
        options["client_manager"] = socketio.AsyncRedisManager(args.backend)
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=transports,
                               cors_allowed_origins="*", **options)
    app = web.Application()
    sio.attach(app)
    members: set[str] = set()

    async def connect(sid: str, environ: dict[str, Any]) -> None:
        query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
        await sio.enter_room(sid, channel_of(query))
        members.add(sid)

    async def disconnect(sid: str, *args: Any) -> None:
        members.discard(sid)

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)

    async def publish(channel: str, data: dict[str, Any]) -> None:
        await sio.emit("msg", data, room=channel)

    control_routes(app, publish, lambda: len(members))
    asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()

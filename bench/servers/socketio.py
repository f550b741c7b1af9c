"""python-socketio's ``AsyncServer`` on aiohttp, the way its documentation sets it up.

Only the transport under test is enabled (``--transport ws``: websocket; ``poll``:
polling). Each client joins the room "bench" in the ``connect`` handler (before the
server acknowledges the connect with ``40``); a burst calls
``await sio.emit("msg", data, room="bench")`` once per publication.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web

from bench.servers import CHANNEL, control_routes, parse_args, serve


def main() -> None:
    args = parse_args(__doc__ or "")
    transports = ["websocket"] if args.transport == "ws" else ["polling"]
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=transports,
                               cors_allowed_origins="*")
    app = web.Application()
    sio.attach(app)
    members: set[str] = set()

    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.enter_room(sid, CHANNEL)
        members.add(sid)

    async def disconnect(sid: str, *args: Any) -> None:
        members.discard(sid)

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)

    async def publish(data: dict[str, Any]) -> None:
        await sio.emit("msg", data, room=CHANNEL)

    control_routes(app, publish, lambda: len(members))
    asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()

"""Mounting rtlink on an aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiohttp import web

from .codecs import CODECS
from .codes import CloseCode
from .hub import Hub
from .protocol import PROTOCOL_VERSION
from .transports.http import NO_CACHE, send_handler
from .transports.longpoll import poll_handler
from .transports.sse import sse_handler
from .transports.websocket import websocket_handler

__all__ = ["attach", "TRANSPORT_NAMES", "ENDPOINTS"]

#: Server transports by name, with the sub-path and handler factory of each.
ENDPOINTS: dict[str, tuple[str, Callable[[Hub], Any]]] = {
    "websocket": ("/ws", websocket_handler),
    "sse": ("/sse", sse_handler),
    "longpoll": ("/poll", poll_handler),
}
#: Transport names in the order clients should try them.
TRANSPORT_NAMES: tuple[str, ...] = tuple(ENDPOINTS)


def attach(app: web.Application, hub: Hub, path: str = "/rt",
           transports: Iterable[str] = TRANSPORT_NAMES) -> None:
    """Serve ``hub`` on ``app`` under ``path``.

    Mounts, for the enabled ``transports``: ``{path}/ws`` (WebSocket), ``{path}/sse``
    (server-sent events) and ``{path}/poll`` (long polling); ``{path}/send`` (POST,
    client frames for the HTTP transports) when either HTTP transport is enabled; and
    ``{path}/info``, a small JSON discovery document listing what is enabled.

    The hub is started with the application and closed with it; on shutdown every
    connection is closed with 1001 (going away), which tells clients to reconnect —
    to another node, or to this one once it is back — and resume from their
    positions.

    Args:
        app: the aiohttp application.
        hub: the hub to serve.
        path: the mount path; clients connect to ``http://host:port{path}``.
        transports: names of the transports to enable (default: all).

    Raises:
        ValueError: an unknown or empty transport list.
    """
    enabled = tuple(transports)
    unknown = sorted(set(enabled) - set(ENDPOINTS))
    if unknown or not enabled:
        raise ValueError(f"unknown transports {unknown}; known: {', '.join(ENDPOINTS)}")
    base = "/" + path.strip("/") if path.strip("/") else ""
    for name in TRANSPORT_NAMES:
        if name in enabled:
            sub_path, make_handler = ENDPOINTS[name]
            app.router.add_get(base + sub_path, make_handler(hub))
    if {"sse", "longpoll"} & set(enabled):
        app.router.add_post(base + "/send", send_handler(hub))
    info = {
        "version": PROTOCOL_VERSION,
        "transports": [name for name in TRANSPORT_NAMES if name in enabled],
        "codecs": list(CODECS),
        "max_message_size": hub.max_message_size,
        "ping_interval": hub.ping_interval,
        "poll_timeout": hub.poll_timeout,
    }

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(info, headers=NO_CACHE)

    app.router.add_get(base + "/info", discovery)

    async def hub_lifetime(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.close()

    async def close_connections(app: web.Application) -> None:
        await hub.close_connections(CloseCode.GOING_AWAY, "server shutting down")

    app.cleanup_ctx.append(hub_lifetime)
    app.on_shutdown.append(close_connections)

"""Mounting rtlink on an aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .codes import CloseCode
from .hub import Hub
from .transports.websocket import websocket_handler

__all__ = ["attach", "WEBSOCKET_PATH"]

#: Sub-path of the WebSocket endpoint under the mount path.
WEBSOCKET_PATH = "/ws"


def attach(app: web.Application, hub: Hub, path: str = "/rt") -> None:
    """Serve ``hub`` on ``app`` under ``path``.

    Mounts ``{path}/ws`` (WebSocket). The hub is started with the application and
    closed with it; on shutdown every connection is closed with 1001 (going away),
    which tells clients to reconnect — to another node, or to this one once it is
    back — and resume from their positions.

    Args:
        app: the aiohttp application.
        hub: the hub to serve.
        path: the mount path; clients connect to ``http://host:port{path}``.
    """
    base = "/" + path.strip("/") if path.strip("/") else ""
    app.router.add_get(base + WEBSOCKET_PATH, websocket_handler(hub))

    async def hub_lifetime(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.close()

    async def close_connections(app: web.Application) -> None:
        await hub.close_connections(CloseCode.GOING_AWAY, "server shutting down")

    app.cleanup_ctx.append(hub_lifetime)
    app.on_shutdown.append(close_connections)

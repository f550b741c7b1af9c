"""The server transports by name, and every route rtlink mounts under its path.

:func:`rtlink.attach` mounts what this registry lists and nothing else: each transport
of :data:`TRANSPORTS` (its sub-path, handler, refusal and CORS), ``POST /send`` when one
of the enabled transports sends client frames there, and the fixed routes
(:data:`SEND_PATH`, :data:`TICKET_PATH`, :data:`INFO_PATH`, :data:`PUBLISH_PATH`, the
server API's operations under :data:`~rtlink.transports.server_api.API_PATH`, the
browser client's :data:`CLIENT_FILES`). :func:`root_routes` lists them all, for whoever
must keep clear of them (the config's ``metrics_path`` at the root).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..hub import Hub
from .guard import Handler, Refuse
from .http import refuse_request
from .longpoll import poll_handler
from .server_api import API_OPERATIONS, API_PATH
from .sse import refuse_stream, sse_handler
from .websocket import refuse_websocket, websocket_handler

__all__ = [
    "ServerTransport",
    "TRANSPORTS",
    "TRANSPORT_NAMES",
    "ENDPOINTS",
    "SEND_PATH",
    "TICKET_PATH",
    "INFO_PATH",
    "PUBLISH_PATH",
    "CLIENT_FILES",
    "root_routes",
]


@attrs.frozen
class ServerTransport:
    """One server transport: what :func:`rtlink.attach` mounts for it.

    Attributes:
        name: its name, as in ``attach(transports=[...])`` and the clients' lists.
        path: its sub-path under the mount path (``GET``).
        handler: makes the route's aiohttp handler for a hub.
        refuse: how the route refuses a request (origin, connections per address), in
            terms its clients act on: a close code, not a bare HTTP status.
        cors: whether its answers carry CORS headers (not WebSocket: browsers apply
            no CORS to it).
        sends: whether its clients send frames by ``POST {path}/send`` (SSE and long
            polling) rather than on the connection itself.
    """

    name: str
    path: str
    handler: Callable[[Hub], Handler]
    refuse: Refuse
    cors: bool = True
    sends: bool = True


#: The server transports by name, in the order clients should try them.
TRANSPORTS: Mapping[str, ServerTransport] = MappingProxyType({
    transport.name: transport for transport in (
        ServerTransport("websocket", "/ws", websocket_handler, refuse_websocket,
                        cors=False, sends=False),
        ServerTransport("sse", "/sse", sse_handler, refuse_stream),
        ServerTransport("longpoll", "/poll", poll_handler, refuse_request),
    )
})
#: Transport names in the order clients should try them.
TRANSPORT_NAMES: tuple[str, ...] = tuple(TRANSPORTS)
#: Each transport's sub-path and handler factory by name (the older view of
#: :data:`TRANSPORTS`, kept for ``rtlink.server.ENDPOINTS``).
ENDPOINTS: dict[str, tuple[str, Callable[[Hub], Any]]] = {
    name: (transport.path, transport.handler) for name, transport in TRANSPORTS.items()
}
#: ``POST``: client frames of the transports that send (:attr:`ServerTransport.sends`).
SEND_PATH = "/send"
#: ``POST``: a token traded for a single-use ticket (:mod:`rtlink.transports.tickets`).
TICKET_PATH = "/ticket"
#: ``GET``: the discovery document (what is enabled).
INFO_PATH = "/info"
#: ``POST``: the HTTP publish API, with API keys (:mod:`rtlink.transports.publish_api`).
PUBLISH_PATH = "/publish"
#: The browser client builds (files in the package's ``static/``), served as
#: ``{path}/client.js`` (script tag) and ``{path}/client.mjs`` (module), and its opt-in
#: modules: ``{path}/presence.mjs`` (rtlink-client/presence, which imports the core's
#: error class from ``./client.mjs``).
CLIENT_FILES: tuple[str, ...] = ("client.js", "client.mjs", "presence.mjs")


def root_routes(endpoints: Mapping[str, tuple[str, Any]] = ENDPOINTS,
                client_files: Iterable[str] = CLIENT_FILES) -> frozenset[str]:
    """The paths rtlink takes when mounted at the root (``path = "/"``): those of the
    transport ``endpoints`` (name → (sub-path, handler factory)), of the
    ``client_files`` and of the fixed routes. By default, every one rtlink has."""
    return frozenset({*(sub_path for sub_path, _ in endpoints.values()),
                      *(f"/{name}" for name in client_files),
                      SEND_PATH, TICKET_PATH, INFO_PATH, PUBLISH_PATH,
                      *(f"{API_PATH}/{name}" for name in API_OPERATIONS)})

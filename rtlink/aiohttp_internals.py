"""Every use of a private aiohttp name in rtlink, in one place.

aiohttp has no public API for two things rtlink needs; each function below reaches
into aiohttp for one of them, says why, and says what breaks without it. Nothing else
in rtlink may touch a private aiohttp name (one starting with ``_``): import it from
here. ``tests/test_aiohttp_internals.py`` checks every name on the installed aiohttp,
and that it behaves as relied on, against a real server: when an aiohttp release
renames or removes one, that test fails and names it, rather than a user's server
hanging or a client failing to reconnect.

The private names, and their users:

* ``BaseProtocol._drain_helper()`` (:func:`wait_writable`): the server's WebSocket
  transport (:mod:`rtlink.transports.websocket`).
* ``ClientWebSocketResponse._response`` (:func:`client_websocket_transport`): the Python
  client's WebSocket transport (:mod:`rtlink.client.transports`).
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

__all__ = ["wait_writable", "client_websocket_transport"]


async def wait_writable(protocol: web.RequestHandler) -> None:
    """Wait until the transport of a server request takes writes again.

    Returns at once when writing is not paused; else waits for the protocol's
    ``resume_writing()``, or raises :class:`ConnectionError` when the connection is
    lost meanwhile (or was already).

    Why: the hub writes WebSocket frames straight to the transport
    (``_DirectWebSocketSink``); when the peer reads slower than it is sent to, asyncio
    pauses the protocol, and the connection's writer must wait for the resume before it
    writes again. aiohttp's own writers wait with ``BaseProtocol._drain_helper()``, which
    is private; the protocol has no public way to wait (``writing_paused`` only tells).
    Without it: a paused connection could not wait, so it would either busy-loop or
    queue writes in the transport's buffer without bound, and backpressure (a slow
    consumer closed at ``outbound_limit``, nothing lost) would be gone.
    """
    await protocol._drain_helper()


def client_websocket_transport(
    ws: aiohttp.ClientWebSocketResponse,
) -> asyncio.Transport | None:
    """The socket transport under a client WebSocket, or None if it has none (closed).

    Why: the Python client must be able to drop a connection at once, the way a dead
    network would (no close handshake, no waiting for the peer), e.g. when the
    server's first frame does not arrive in time or a heartbeat is missed.
    ``ClientWebSocketResponse`` has no public abort and does not expose its HTTP
    response, which holds the connection (``_response.connection.transport``); the
    public ``get_extra_info()`` reads the same transport but cannot return it. Without
    it: ``WebSocketTransport.abort()`` could only close gracefully, which waits up to
    the close timeout for a peer that may be gone, and a client stuck behind a silent
    proxy would reconnect late.
    """
    connection = ws._response.connection
    return connection.transport if connection is not None else None

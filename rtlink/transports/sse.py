"""The server-sent events transport: ``GET {path}/sse``, a stream of server frames.

The request carries the codec and the subscriptions with their positions (``subs``,
see :func:`~rtlink.positions.parse_cursor`), so any node can serve it.
Each transport message is one event: JSON batches as ``data:`` lines (one per
frame), msgpack batches base64-encoded on one ``data:`` line. Every event carries
the connection's cursor as its ``id``; a browser's automatic reconnect sends it back
as ``Last-Event-ID``, which resumes every channel where the stream stopped.

Heartbeats are the hub's ``ping`` frames, sent as events rather than SSE comments:
a browser's EventSource hides comments, and the client must see them to tell a
silent stream from a dead one.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from aiohttp import web

from ..codecs import Codec
from ..hub import Hub
from ..peer import Peer
from ..positions import format_event_id, merge_last_event_id
from ..protocol import Close, encode_frame
from ..session import STREAM
from .http import (
    NO_CACHE,
    identify,
    limit_unacknowledged_writes,
    refusal_codec,
    refusal_headers,
    refusal_status,
    request_codec,
    request_cursor,
    request_session,
)

__all__ = ["sse_handler", "refuse_stream", "event"]

logger = logging.getLogger("rtlink.transports.sse")

_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def event(message: bytes, binary: bool, event_id: str | None = None) -> bytes:
    """One server-sent event holding a transport ``message`` (protocol.md 2.2): an
    ``id:`` line if ``event_id`` is given, then JSON lines (one per frame) or, for a
    ``binary`` codec, base64 on one ``data:`` line, then an empty line."""
    if binary:
        data = b"data: " + base64.b64encode(message) + b"\n"
    else:
        data = b"".join(b"data: " + line + b"\n" for line in message.split(b"\n"))
    head = b"" if event_id is None else b"id: " + event_id.encode() + b"\n"
    return head + data + b"\n"


class _EventStreamSink:
    """Writes transport messages as server-sent events on one streamed response."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 codec: Codec) -> None:
        self._request = request
        self._response = response
        self._binary = codec.binary
        self.peer: Peer | None = None

    async def send(self, message: bytes) -> None:
        event_id = format_event_id(self.peer.cursor() if self.peer is not None else None)
        await self._response.write(event(message, self._binary, event_id))

    async def close(self, code: int, reason: str) -> None:
        await self._response.write_eof()

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()


def _refusal(request: web.Request, codec: Codec, code: int, reason: str) -> web.Response:
    """A refused stream: one event, the ``close`` frame, with the status of
    :func:`~rtlink.transports.http.refusal_status` — 401 or 403 unless the same request
    may work later (or the client asks for 200), so that a native ``EventSource`` does
    not repeat it forever."""
    body = event(encode_frame(codec, Close(code, reason)), codec.binary)
    return web.Response(body=body, status=refusal_status(code, request), headers={
        **refusal_headers(code, request), "Content-Type": _CONTENT_TYPE})


async def refuse_stream(request: web.Request, code: int, reason: str) -> web.Response:
    """Refuse a stream request (origin, connections per address): a stream of one
    event, a ``close`` frame in the request's ``codec`` (JSON if it is unknown)."""
    return _refusal(request, refusal_codec(request), code, reason)


def sse_handler(hub: Hub) -> Any:
    """Return the aiohttp handler serving rtlink over server-sent events for ``hub``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        codec = request_codec(request)
        # After an automatic reconnect the browser repeats the first URL; the event id
        # it sends back says how far each channel got since.
        presence: set[str] = set()
        subs, last = request_cursor(request, hub.max_subscriptions, presence=presence)
        cursor = merge_last_event_id(
            subs, request_cursor(request, hub.max_subscriptions, header="Last-Event-ID")[0])
        identity, refusal = await identify(hub, request)
        if refusal is not None:
            return _refusal(request, codec, *refusal)
        response = web.StreamResponse(headers={**NO_CACHE, "Content-Type": _CONTENT_TYPE})
        await response.prepare(request)
        # The client never writes on the stream, so only unacknowledged writes (pings)
        # reveal one that vanished without FIN/RST: bound how long they may stay so.
        limit_unacknowledged_writes(request, hub.ping_interval + hub.pong_timeout)
        sink = _EventStreamSink(request, response, codec)
        peer = sink.peer = hub.accept(codec, identity, sink, "sse", STREAM,
                                      address=request.remote,
                                      fallback=request.query.get("fallback"),
                                      session_id=request_session(request))
        try:
            for channel, since in cursor.items():
                await peer.subscribe(channel, since, last=last.get(channel),
                                     presence=channel in presence)
            await peer.connection.wait_closed()
        finally:
            await peer.connection.transport_closed()
        return response

    return handle

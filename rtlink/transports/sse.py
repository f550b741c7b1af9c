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
    authenticate_or_refuse,
    limit_unacknowledged_writes,
    request_codec,
    request_cursor,
)

__all__ = ["sse_handler", "refuse_stream"]

logger = logging.getLogger("rtlink.transports.sse")


class _EventStreamSink:
    """Writes transport messages as server-sent events on one streamed response."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 codec: Codec) -> None:
        self._request = request
        self._response = response
        self._binary = codec.binary
        self.peer: Peer | None = None

    async def send(self, message: bytes) -> None:
        if self._binary:
            data = b"data: " + base64.b64encode(message) + b"\n"
        else:
            data = b"".join(b"data: " + line + b"\n" for line in message.split(b"\n"))
        text = format_event_id(self.peer.cursor() if self.peer is not None else None)
        event_id = b"" if text is None else b"id: " + text.encode() + b"\n"
        await self._response.write(event_id + data + b"\n")

    async def close(self, code: int, reason: str) -> None:
        await self._response.write_eof()

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()


async def refuse_stream(request: web.Request, code: int, reason: str) -> web.StreamResponse:
    """Refuse a stream request: a stream of one event, a ``close`` frame in the
    request's ``codec`` (status 200, as for a refused authentication)."""
    codec = request_codec(request)
    response = web.StreamResponse(headers={
        **NO_CACHE, "Content-Type": "text/event-stream; charset=utf-8",
    })
    await response.prepare(request)
    await _EventStreamSink(request, response, codec).send(
        encode_frame(codec, Close(code, reason)))
    await response.write_eof()
    return response


def sse_handler(hub: Hub) -> Any:
    """Return the aiohttp handler serving rtlink over server-sent events for ``hub``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        codec = request_codec(request)
        # After an automatic reconnect the browser repeats the first URL; the event id
        # it sends back says how far each channel got since.
        cursor = merge_last_event_id(
            request_cursor(request, hub.max_subscriptions),
            request_cursor(request, hub.max_subscriptions, header="Last-Event-ID"))
        identity, refusal = await authenticate_or_refuse(hub, request, codec)
        response = web.StreamResponse(headers={
            **NO_CACHE, "Content-Type": "text/event-stream; charset=utf-8",
        })
        await response.prepare(request)
        # The client never writes on the stream, so only unacknowledged writes (pings)
        # reveal one that vanished without FIN/RST: bound how long they may stay so.
        limit_unacknowledged_writes(request, hub.ping_interval + hub.pong_timeout)
        sink = _EventStreamSink(request, response, codec)
        if refusal is not None:
            assert isinstance(refusal.body, bytes)
            await sink.send(refusal.body)
            await response.write_eof()
            return response
        peer = sink.peer = hub.accept(codec, identity, sink, "sse", STREAM,
                                      address=request.remote,
                                      fallback=request.query.get("fallback"))
        try:
            for channel, since in cursor.items():
                await peer.subscribe(channel, since)
            await peer.connection.wait_closed()
        finally:
            await peer.connection.transport_closed()
        return response

    return handle

"""The WebSocket transport: one aiohttp endpoint that moves frames both ways.

The codec is chosen by WebSocket subprotocol (``rtlink.v1.json`` or
``rtlink.v1.msgpack``; none offered means JSON). JSON batches travel as text
messages, msgpack batches as binary messages. Messages larger than the hub's
``max_message_size`` (in bytes) are refused with close code 1009, text that is not
UTF-8 with 1007, and a client frame without a mask with 1002.

aiohttp does the handshake (and rtlink the authentication); then an uncompressed
connection is taken away from aiohttp and served by rtlink's own protocol
(:mod:`rtlink.transports.wsprotocol`), which keeps an idle connection small. A
compressed one (``permessage-deflate``, when the hub enables it) stays with aiohttp's
WebSocket, whose compressor it needs
(:class:`~rtlink.aiohttp_internals.MaskedWebSocketResponse` adds the mask check).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WSMsgType, web

from ..aiohttp_internals import TakeoverWebSocketResponse, take_over_websocket
from ..codecs import SUBPROTOCOLS, Codec, codec_for_subprotocol
from ..codes import CloseCode
from ..hub import Hub
from ..protocol import Close, encode_frame
from .guard import take_connection_slot
from .http import identify, limit_unacknowledged_writes
from .wsprotocol import WebSocketProtocol, reason_bytes

__all__ = ["websocket_handler", "refuse_websocket"]

logger = logging.getLogger("rtlink.transports.websocket")


def _inflated_size(data: str | bytes) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode())


class _WebSocketSink:
    """Moves transport messages over one aiohttp WebSocketResponse (with its writer):
    the compressed connections, which stay with aiohttp."""

    __slots__ = ("_ws", "_request", "_opcode")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, binary: bool) -> None:
        self._ws = ws
        self._request = request
        self._opcode = WSMsgType.BINARY if binary else WSMsgType.TEXT

    async def send(self, message: bytes) -> None:
        # send_frame writes the pre-encoded bytes as they are: no decode/re-encode.
        await self._ws.send_frame(message, self._opcode)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code=code, message=reason_bytes(reason))

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()


async def _refuse(ws: web.WebSocketResponse, codec: Codec, code: int,
                  reason: str) -> web.WebSocketResponse:
    """Close a connection that is not accepted: a close frame, then the WebSocket close."""
    await ws.send_frame(encode_frame(codec, Close(code, reason)),
                        WSMsgType.BINARY if codec.binary else WSMsgType.TEXT)
    await ws.close(code=code, message=reason_bytes(reason))
    return ws


async def refuse_websocket(request: web.Request, code: int,
                           reason: str) -> web.StreamResponse:
    """Refuse a WebSocket request: complete the handshake, then close with ``code``
    (after a ``close`` frame), so that the client learns why: a browser sees nothing
    of an HTTP status answering a handshake, only that it failed."""
    ws = web.WebSocketResponse(protocols=SUBPROTOCOLS)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="rtlink: this endpoint expects a WebSocket upgrade\n")
    await ws.prepare(request)
    return await _refuse(ws, codec_for_subprotocol(ws.ws_protocol), code, reason)


def websocket_handler(hub: Hub) -> Any:
    """Return the aiohttp handler serving rtlink over WebSocket for ``hub``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = TakeoverWebSocketResponse(
            protocols=SUBPROTOCOLS,
            # aiohttp refuses messages of max_msg_size bytes or more; ours is inclusive.
            max_msg_size=hub.max_message_size + 1,
            autoping=True,
            compress=hub.websocket_compression,
        )
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="rtlink: this endpoint expects a WebSocket upgrade\n")
        await ws.prepare(request)
        # The heartbeat closes a client gone without FIN/RST; this also frees its socket
        # by then when a write to it is blocked (else only after the close timeout).
        limit_unacknowledged_writes(request, hub.ping_interval + hub.pong_timeout)
        offered = request.headers.get("Sec-WebSocket-Protocol")
        codec = codec_for_subprotocol(ws.subprotocol)
        refusal: tuple[int, str] | None = None
        identity: Any = None
        if offered and ws.subprotocol is None:
            refusal = (CloseCode.UNSUPPORTED_PROTOCOL,
                       f"supported subprotocols: {', '.join(SUBPROTOCOLS)}")
        else:
            identity, refusal = await identify(hub, request)
        if ws.compress:
            return await _serve_compressed(hub, request, ws, codec, identity, refusal)
        # From here on nothing is awaited: the socket goes to rtlink's protocol, and
        # aiohttp frees the request when this returns (and logs its access line).
        address, fallback = request.remote, request.query.get("fallback")
        protocol = WebSocketProtocol(codec.binary, hub.max_message_size,
                                     request.protocol.writing_paused)
        taken = take_over_websocket(request, protocol)
        if taken is None:  # the client left during the handshake or authentication
            return ws
        transport, tail = taken
        # The connection counts against max_connections_per_ip until its socket is gone.
        protocol.on_lost = take_connection_slot(request)
        if refusal is None:
            try:
                peer = hub.accept(codec, identity, protocol, "websocket", address=address,
                                  fallback=fallback)
            except Exception:  # the socket is ours now: it must not be left open
                logger.exception("accepting a WebSocket failed")
                refusal = (CloseCode.INTERNAL_ERROR, "internal error")
            else:
                protocol.start(transport, tail, peer)
                return ws
        code, reason = refusal
        # No rtlink close frame for a subprotocol the client cannot decode.
        frame = (None if code == CloseCode.UNSUPPORTED_PROTOCOL
                 else encode_frame(codec, Close(code, reason)))
        protocol.refuse(transport, tail, frame, code, reason)
        return ws

    return handle


async def _serve_compressed(hub: Hub, request: web.Request, ws: web.WebSocketResponse,
                            codec: Codec, identity: Any, refusal: tuple[int, str] | None
                            ) -> web.StreamResponse:
    """Serve a compressed connection with aiohttp's WebSocket, until it ends."""
    if refusal is not None:
        code, reason = refusal
        if code == CloseCode.UNSUPPORTED_PROTOCOL:
            await ws.close(code=code, message=reason_bytes(reason))
            return ws
        return await _refuse(ws, codec, code, reason)
    peer = hub.accept(codec, identity, _WebSocketSink(ws, request, codec.binary),
                      "websocket", address=request.remote,
                      fallback=request.query.get("fallback"))
    try:
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if _inflated_size(message.data) > hub.max_message_size:
                    # aiohttp's limit on an inflated message is one byte looser than
                    # on a plain one (max_msg_size above): refuse it the same way.
                    await ws.close(code=CloseCode.MESSAGE_TOO_BIG)
                    break
                await peer.receive(message.data)
    finally:
        await peer.connection.transport_closed(ws.close_code or CloseCode.ABNORMAL)
    return ws

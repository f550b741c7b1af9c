"""The WebSocket transport: one aiohttp endpoint that moves frames both ways.

The codec is chosen by WebSocket subprotocol (``rtlink.v1.json`` or
``rtlink.v1.msgpack``; none offered means JSON). JSON batches travel as text
messages, msgpack batches as binary messages. Messages larger than the hub's
``max_message_size`` (in bytes) are refused by aiohttp itself with close code 1009, and text
that is not UTF-8 with 1007; a client frame without a mask fails the connection with
1002 (:class:`~rtlink.aiohttp_internals.MaskedWebSocketResponse`).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from aiohttp import WSMsgType, web

from ..aiohttp_internals import FrameWriter, MaskedWebSocketResponse, wait_writable
from ..codecs import SUBPROTOCOLS, Codec, codec_for_subprotocol
from ..codes import CloseCode
from ..hub import Hub
from ..protocol import Close, encode_frame
from .http import identify, limit_unacknowledged_writes

__all__ = ["websocket_handler", "refuse_websocket"]

logger = logging.getLogger("rtlink.transports.websocket")

#: The WebSocket close reason is limited to 123 bytes.
_MAX_REASON = 123


def _inflated_size(data: str | bytes) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode())


def _reason_bytes(reason: str) -> bytes:
    return reason.encode()[:_MAX_REASON].decode(errors="ignore").encode()


_PACK_LEN1 = struct.Struct("!BB").pack
_PACK_LEN2 = struct.Struct("!BBH").pack
_PACK_LEN3 = struct.Struct("!BBQ").pack


def _frame_header(first_byte: int, length: int) -> bytes:
    """An unmasked WebSocket frame header (RFC 6455 5.2): server frames carry no mask."""
    if length < 126:
        return _PACK_LEN1(first_byte, length)
    if length < 65536:
        return _PACK_LEN2(first_byte, 126, length)
    return _PACK_LEN3(first_byte, 127, length)


class _WebSocketSink:
    """Moves transport messages over one aiohttp WebSocketResponse (with its writer)."""

    __slots__ = ("_ws", "_request", "_opcode")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, binary: bool) -> None:
        self._ws = ws
        self._request = request
        self._opcode = WSMsgType.BINARY if binary else WSMsgType.TEXT

    async def send(self, message: bytes) -> None:
        # send_frame writes the pre-encoded bytes as they are: no decode/re-encode.
        await self._ws.send_frame(message, self._opcode)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code=code, message=_reason_bytes(reason))

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()


class _DirectWebSocketSink(_WebSocketSink, FrameWriter):
    """A :class:`~rtlink.connection.DirectSink` over an uncompressed WebSocket.

    The hub's flush frames messages itself and writes them straight to the transport,
    as aiohttp's ``send_frame`` does for an uncompressed frame, minus the task switch
    and the await. Compressed WebSockets keep :class:`_WebSocketSink`: their frames
    need aiohttp's compressor (and its lock).
    """

    __slots__ = ("_first_byte", "_transport", "_protocol")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, binary: bool) -> None:
        super().__init__(ws, request, binary)
        self._first_byte = 0x80 | self._opcode  # FIN, no RSV bits, the opcode
        self._transport = request.transport
        self._protocol = request.protocol

    def write_now(self, frames: list[bytes], codec: Codec,
                  framed: dict[bytes | tuple[bytes, ...], bytes]) -> bool:
        if len(frames) == 1:
            return self.write_one(frames[0], framed)
        transport = self._transport
        if (transport is None or transport.is_closing() or self._protocol.writing_paused
                or self._ws.closed):
            return False
        # A codec has a single opcode (JSON: text, msgpack: binary) and the encodings
        # of two codecs never coincide, so the frames alone are a valid cache key.
        key = tuple(frames)
        data = framed.get(key)
        if data is None:
            data = framed[key] = self._framed(codec.join(frames))
        transport.write(data)
        return True

    # write_one: FrameWriter's.

    def _framed(self, message: bytes) -> bytes:
        return _frame_header(self._first_byte, len(message)) + message

    async def drained(self) -> None:
        protocol = self._protocol
        if protocol.writing_paused:
            await wait_writable(protocol)  # aiohttp's own wait for resume_writing()


async def _refuse(ws: web.WebSocketResponse, codec: Codec, code: int,
                  reason: str) -> web.WebSocketResponse:
    """Close a connection that is not accepted: a close frame, then the WebSocket close."""
    await ws.send_frame(encode_frame(codec, Close(code, reason)),
                        WSMsgType.BINARY if codec.binary else WSMsgType.TEXT)
    await ws.close(code=code, message=_reason_bytes(reason))
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
        # Masked: a client frame without a mask fails the connection (1002), as RFC
        # 6455 5.1 requires and aiohttp does not check.
        ws = MaskedWebSocketResponse(
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
        if offered and ws.ws_protocol is None:
            await ws.close(
                code=CloseCode.UNSUPPORTED_PROTOCOL,
                message=_reason_bytes(f"supported subprotocols: {', '.join(SUBPROTOCOLS)}"),
            )
            return ws
        codec = codec_for_subprotocol(ws.ws_protocol)
        identity, refusal = await identify(hub, request)
        if refusal is not None:
            return await _refuse(ws, codec, *refusal)
        sink = (_WebSocketSink if ws.compress else _DirectWebSocketSink)(
            ws, request, codec.binary)
        peer = hub.accept(codec, identity, sink, "websocket", address=request.remote,
                          fallback=request.query.get("fallback"))
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    if ws.compress and _inflated_size(message.data) > hub.max_message_size:
                        # aiohttp's limit on an inflated message is one byte looser than
                        # on a plain one (max_msg_size above): refuse it the same way.
                        await ws.close(code=CloseCode.MESSAGE_TOO_BIG)
                        break
                    await peer.receive(message.data)
        finally:
            await peer.connection.transport_closed(ws.close_code or CloseCode.ABNORMAL)
        return ws

    return handle

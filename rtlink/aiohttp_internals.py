"""Every use of a private aiohttp name in rtlink, in one place.

aiohttp has no public API for three things rtlink needs, and one public API is too slow
for the fan-out; each function or class below
reaches into aiohttp for one of them, says why, and says what breaks without it. Nothing else
in rtlink may touch a private aiohttp name (one starting with ``_``): import it from
here. ``tests/test_aiohttp_internals.py`` checks every name on the installed aiohttp,
and that it behaves as relied on, against a real server: when an aiohttp release
renames or removes one, that test fails and names it, rather than a user's server
hanging or a client failing to reconnect.

The private names, and their users:

* ``ClientWebSocketResponse._response`` (:func:`client_websocket_transport`): the Python
  client's WebSocket transport (:mod:`rtlink.client.transports`).
* ``WebSocketResponse._post_start()``, ``RequestHandler._message_tail`` and
  ``RequestHandler._payload_parser`` (:class:`MaskedWebSocketResponse`): the server's
  WebSocket transport.
* ``WebSocketResponse._post_start()`` and ``RequestHandler._message_tail`` again, and the
  order of what the public ``RequestHandler.connection_lost()`` does
  (:class:`TakeoverWebSocketResponse`, :func:`take_over_websocket`): the server's
  WebSocket transport, which takes an uncompressed connection away from aiohttp after
  the handshake (:mod:`rtlink.transports.wsprotocol`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["client_websocket_transport", "MaskCheck",
           "MaskedWebSocketResponse", "TakeoverWebSocketResponse", "take_over_websocket"]


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


class MaskCheck:
    """Finds, in the bytes a client sends on a WebSocket, a frame without a mask.

    RFC 6455 5.1: a client masks every frame, and a server that receives an unmasked
    one must fail the connection (close 1002). aiohttp's reader does not check: it
    unmasks a frame if it has a mask and takes it as it is otherwise. This walks the
    frame headers (RFC 6455 5.2) ahead of the reader. Pure: bytes in, bytes out.

    :meth:`feed` holds back the first byte of a header whose second byte (the mask
    bit) has not arrived yet, so that the reader is always handed whole checked
    headers, and stops at the start of an unmasked frame: the reader is then at a
    frame boundary.
    """

    __slots__ = ("_held", "_length", "_length_size", "_skip")

    def __init__(self) -> None:
        self._held = b""  # the start of a header whose mask bit has not come yet
        self._length = bytearray()  # extended payload length bytes read so far
        self._length_size = 0  # extended payload length bytes of the current header
        self._skip = 0  # bytes of the current frame left to pass: mask key and payload

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The next bytes from the client: those to hand to the reader, and whether an
        unmasked frame starts right after them (nothing more may be handed then)."""
        if self._held:
            data, self._held = self._held + data, b""
        position, size = 0, len(data)
        while position < size:
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
            elif self._length_size:
                take = min(self._length_size - len(self._length), size - position)
                self._length += data[position:position + take]
                position += take
                if len(self._length) == self._length_size:
                    self._skip = 4 + int.from_bytes(self._length, "big")
                    self._length_size = 0
                    self._length.clear()
            elif size - position < 2:  # a frame starts, and its mask bit is not here
                self._held = data[position:]
                return data[:position], False
            else:
                second = data[position + 1]
                if not second & 0x80:
                    return data[:position], True
                length = second & 0x7F
                position += 2
                if length >= 126:
                    self._length_size = 2 if length == 126 else 8
                else:
                    self._skip = 4 + length
        return data, False


#: A frame with opcode 3, which RFC 6455 reserves: aiohttp's reader fails the connection
#: with 1002 on it, as it must on an unmasked client frame.
_RESERVED_OPCODE_FRAME = b"\x83\x80\x00\x00\x00\x00"


class _MaskedFramesOnly:
    """Stands in for aiohttp's WebSocket reader in the server's request handler
    (``RequestHandler._payload_parser``): hands it what :class:`MaskCheck` passes."""

    __slots__ = ("_reader", "_check", "_failed")

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._check = MaskCheck()
        self._failed = False

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        passed, unmasked = self._check.feed(bytes(data))
        if passed:
            eof, tail = self._reader.feed_data(passed)
            if eof:
                return eof, tail
        if not unmasked:
            return False, b""
        self._failed = True
        # The reader is at a frame boundary: a frame it must refuse makes it fail the
        # connection its own way (a WebSocket close 1002, and an ERROR message to the
        # handler), as for any other protocol error.
        result: tuple[bool, bytes] = self._reader.feed_data(_RESERVED_OPCODE_FRAME)
        return result

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class MaskedWebSocketResponse(web.WebSocketResponse):
    """A ``WebSocketResponse`` that fails the connection with 1002 (RFC 6455 5.1) when
    the client sends a frame without a mask, which aiohttp accepts.

    Why: a server must refuse unmasked client frames; browsers and every client
    library mask, so the check costs a walk over frame headers per read, and refuses
    only broken or hostile clients. aiohttp installs its reader in the request
    handler when the handshake is done (``_post_start()``), and feeds it at once the
    bytes that came with the handshake (``RequestHandler._message_tail``); this takes
    those bytes first, puts :class:`_MaskedFramesOnly` in front of the reader
    (``RequestHandler._payload_parser``), then hands them through it. Without it:
    unmasked frames are accepted like masked ones (the connection works; only the RFC
    is broken). Remove it once aiohttp checks masks itself.
    """

    def _post_start(self, request: web.BaseRequest, protocol: Any, writer: Any) -> None:
        handler: Any = request.protocol
        tail, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        checked = handler._payload_parser = _MaskedFramesOnly(handler._payload_parser)
        if tail:
            eof, _ = checked.feed_data(tail)
            if eof:
                handler.close()


class TakeoverWebSocketResponse(MaskedWebSocketResponse):
    """A :class:`MaskedWebSocketResponse` whose uncompressed connections are taken away
    from aiohttp after the handshake (:func:`take_over_websocket`).

    Why: an idle WebSocket held by aiohttp keeps, for as long as its handler runs, the
    parsed request (its headers twice, the URL), the HTTP parser, the request
    handler's task and queues, the WebSocket reader and its queue, the writer and
    this response: ~11 KB of the ~16 KB an idle rtlink connection cost. rtlink takes
    the socket after the handshake and serves it with a small protocol of its own, so
    all of that is freed when the handler returns.

    For that the response must not install aiohttp's reader: ``_post_start()`` (which
    aiohttp calls in ``prepare()`` once the 101 is sent) does for a compressed
    connection what aiohttp does (those stay with aiohttp: their frames need its
    compressor), and for an uncompressed one only records the subprotocol and turns
    HTTP keep-alive off, as aiohttp does. The bytes the client sends meanwhile stay
    in ``RequestHandler._message_tail`` (aiohttp keeps what follows an upgrade there
    until a reader is set), which :func:`take_over_websocket` hands over.
    ``write_eof()``, which aiohttp calls when the handler returns and which would
    write a close frame, writes nothing for a connection it no longer has. Without
    it: ``prepare()`` installs aiohttp's reader, which would take the bytes meant for
    rtlink's protocol (caught by ``tests/test_aiohttp_internals.py``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._subprotocol: str | None = None

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol chosen in the handshake (``ws_protocol``, which aiohttp sets
        in the ``_post_start()`` skipped for an uncompressed connection)."""
        return self.ws_protocol if self.compress else self._subprotocol

    def _post_start(self, request: web.BaseRequest, protocol: Any, writer: Any) -> None:
        if self.compress:
            super()._post_start(request, protocol, writer)
            return
        self._subprotocol = protocol
        request.protocol.keep_alive(False)

    async def write_eof(self) -> None:  # type: ignore[override]
        if self.compress:
            await super().write_eof()
        # Else the connection was taken over (or lost): nothing of it is aiohttp's.


def take_over_websocket(request: web.BaseRequest, protocol: asyncio.Protocol
                        ) -> tuple[asyncio.Transport, bytes] | None:
    """Take the socket of ``request`` away from aiohttp and give it to ``protocol``.

    ``request`` is an uncompressed WebSocket whose handshake a
    :class:`TakeoverWebSocketResponse` completed. Returns the transport and the bytes
    the client sent after the handshake (not yet read by anyone), or None if the
    connection was lost meanwhile. After it aiohttp's request handler has forgotten
    the connection (its server no longer counts it, nor closes it on shutdown) and
    the handler must return without awaiting anything: aiohttp then logs the access
    line (status 101) and frees the request.

    Why: see :class:`TakeoverWebSocketResponse`. The socket goes to ``protocol`` with
    asyncio's public ``Transport.set_protocol()``; aiohttp has no public way to let
    go of a connection without closing it, so this takes ``_message_tail``, then calls
    the public ``RequestHandler.connection_lost(None)`` with the handler's transport
    cleared first: what it does then (``force_close()`` closes ``self.transport`` if
    set; the server forgets the handler; the parser, the handler's task and keep-alive
    are dropped; the request's payload is cancelled) frees everything and closes
    nothing. With aiohttp's ``handler_cancellation`` it also cancels the task running
    the handler: a handler that awaits nothing more still returns, and its access
    line is still written (tested both ways). Without it: the socket would be read by
    both, or closed by aiohttp when the handler returns.
    """
    handler: Any = request.protocol
    transport = handler.transport
    if transport is None or transport.is_closing():
        return None
    tail, handler._message_tail = handler._message_tail, b""
    transport.set_protocol(protocol)
    handler.transport = None  # so that connection_lost() does not close the socket
    handler.connection_lost(None)
    if not transport.is_reading():
        # aiohttp pauses reading while ``_message_tail`` is long (3.12+); the new
        # protocol applies its own limit to what it queues.
        transport.resume_reading()
    return transport, tail

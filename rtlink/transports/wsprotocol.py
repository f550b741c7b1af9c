"""An uncompressed WebSocket after its handshake: rtlink's own asyncio protocol.

aiohttp completes the handshake (and rtlink the authentication); then the socket is
taken away from aiohttp (:func:`~rtlink.aiohttp_internals.take_over_websocket`) and
served by :class:`WebSocketProtocol`, so that an idle connection holds no request, no
HTTP parser, no handler task and no aiohttp reader or writer: about 5 KB where aiohttp
kept 16. Frames are parsed by ``wsproto`` (sans-IO); this module applies rtlink's rules
to them, as aiohttp's WebSocket did:

* a message over ``max_message_size`` bytes (text counted as UTF-8) fails the
  connection with 1009, text that is not UTF-8 with 1007, a client frame without a
  mask and any other framing error with 1002 (wsproto's checks); the connection is
  failed with a WebSocket close, the client's answer awaited a bounded time, then the
  socket closed;
* pings are answered with pongs; a client's close is answered and the socket closed;
* inbound messages are handed to the peer one at a time, in order
  (``await peer.receive(...)``), by a task that runs only while messages wait: an idle
  connection has none. While more than :data:`_INBOX_LIMIT` bytes wait, the socket
  is not read;
* outbound, the protocol is the connection's :class:`~rtlink.connection.DirectSink`:
  the hub's flush writes frames straight to the transport, and a writer waits for
  ``resume_writing()`` when asyncio paused it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Message, Ping

from ..codecs import Codec
from ..codes import CloseCode

if TYPE_CHECKING:
    from ..peer import Peer

__all__ = ["WebSocketProtocol", "reason_bytes"]

logger = logging.getLogger("rtlink.transports.websocket")

#: Bytes of inbound messages queued for the peer before the socket stops being read
#: (aiohttp's reader stopped at the same size).
_INBOX_LIMIT = 2**16

#: How long a close frame we sent waits for the client's (then the socket is dropped).
_CLOSE_TIMEOUT = 5.0

#: The WebSocket close reason is limited to 123 bytes.
_MAX_REASON = 123

_PACK_LEN1 = struct.Struct("!BB").pack
_PACK_LEN2 = struct.Struct("!BBH").pack
_PACK_LEN3 = struct.Struct("!BBQ").pack

_OPEN = ConnectionState.OPEN
_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
_CLOSED = ConnectionState.CLOSED


def reason_bytes(reason: str) -> bytes:
    """``reason`` cut to the 123 bytes a close frame holds, on a character boundary."""
    return reason.encode()[:_MAX_REASON].decode(errors="ignore").encode()


def frame_header(first_byte: int, length: int) -> bytes:
    """An unmasked WebSocket frame header (RFC 6455 5.2): server frames carry no mask."""
    if length < 126:
        return _PACK_LEN1(first_byte, length)
    if length < 65536:
        return _PACK_LEN2(first_byte, 126, length)
    return _PACK_LEN3(first_byte, 127, length)


def _size(data: str | bytes) -> int:
    """A message's size in bytes (text as UTF-8)."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode())


class WebSocketProtocol(asyncio.Protocol):
    """One uncompressed WebSocket connection, from the end of its handshake (see the
    module docstring). Made before the socket is handed to it; then either
    :meth:`accept` (with the hub's peer) or :meth:`refuse`."""

    __slots__ = ("_transport", "_frames", "_first_byte", "_max_size", "_peer", "_parts",
                 "_parts_size", "_inbox", "_inbox_bytes", "_reader", "_end_code",
                 "_lost", "_closing", "_broken", "_write_paused", "_write_waiter", "_close_waiter",
                 "_close_timer", "on_lost")

    def __init__(self, binary: bool, max_message_size: int, write_paused: bool) -> None:
        self._transport: asyncio.Transport | None = None
        self._frames = FrameConnection(ConnectionType.SERVER)
        self._first_byte = 0x82 if binary else 0x81  # FIN, no RSV bits, the opcode
        self._max_size = max_message_size
        self._peer: Peer | None = None
        # What is not allocated until needed stays None: an idle connection's bytes count.
        self._parts: list[str | bytes] | None = None  # a message's frames so far
        self._parts_size = 0
        self._inbox: list[str | bytes] | None = None  # messages for the peer
        self._inbox_bytes = 0
        self._reader: asyncio.Task[None] | None = None
        # The close code the connection ended with (the client's, or the one it was
        # failed with); None while open.
        self._end_code: int | None = None
        self._lost = False
        self._closing = False  # a close frame was sent: nothing more is written
        self._broken = False  # the client broke the framing: nothing more is parsed
        self._write_paused = write_paused
        self._write_waiter: asyncio.Future[None] | None = None
        self._close_waiter: asyncio.Future[None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        #: Called once when the socket is gone (e.g. gives back the connection's slot).
        self.on_lost: Callable[[], None] | None = None

    # --- start ---------------------------------------------------------------------

    def start(self, transport: asyncio.Transport, tail: bytes, peer: Peer | None) -> None:
        """The socket is ours: ``tail`` is what the client sent after the handshake;
        its messages go to ``peer`` (None: the connection is being refused)."""
        self._transport = transport
        self._peer = peer
        if tail:
            self.data_received(tail)

    def refuse(self, transport: asyncio.Transport, tail: bytes, frame: bytes | None,
               code: int, reason: str) -> None:
        """Refuse the connection: ``frame`` (an encoded rtlink ``close`` frame), then
        the WebSocket close with ``code`` and ``reason``."""
        self.start(transport, b"", None)
        if frame is not None:
            transport.write(frame_header(self._first_byte, len(frame)) + frame)
        self._send_close(code, reason)
        if tail:
            self.data_received(tail)

    @property
    def reading(self) -> bool:
        """Whether the socket is read (false while too many messages wait)."""
        return self._transport is not None and self._transport.is_reading()

    # --- asyncio.Protocol ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if self._broken or frames.state is _CLOSED:
            return
        frames.receive_data(data)
        for event in frames.events():
            if isinstance(event, Message):
                self._message(event.data, event.message_finished)
            elif isinstance(event, Ping):
                if not self._closing:
                    self._write(frames.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._close_received(event)
                return

    def eof_received(self) -> bool | None:
        # The client is done (after our close frame: it answered with its FIN): close.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()
        if self._end_code is None:
            self._end_code = CloseCode.ABNORMAL
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        for waiter in (self._write_waiter, self._close_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._write_waiter = self._close_waiter = None
        self._parts = None
        self._run_inbox()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._write_waiter
        if waiter is not None:
            self._write_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- inbound -------------------------------------------------------------------

    def _message(self, data: str | bytes, finished: bool) -> None:
        if self._closing:
            return
        size = self._parts_size + _size(data)
        if size > self._max_size:
            self._fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        parts = self._parts
        if not finished:
            if parts is None:
                parts = self._parts = []
            parts.append(data)
            self._parts_size = size
            return
        if parts is not None:
            parts.append(data)
            data = "".join(parts) if isinstance(data, str) else b"".join(parts)  # type: ignore[arg-type]
            self._parts, self._parts_size = None, 0
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = []
        inbox.append(data)
        self._inbox_bytes += size
        transport = self._transport
        if (self._inbox_bytes > _INBOX_LIMIT and transport is not None
                and transport.is_reading()):
            transport.pause_reading()
        self._run_inbox()

    def _run_inbox(self) -> None:
        """Have the peer handle what waits (and learn that the connection ended)."""
        if self._peer is not None and self._reader is None and (
                self._inbox or self._end_code is not None):
            self._reader = asyncio.get_running_loop().create_task(
                self._read(self._peer), name="rtlink-websocket-reader")

    async def _read(self, peer: Peer) -> None:
        try:
            while True:
                inbox = self._inbox
                if inbox:
                    message = inbox.pop(0)
                    if not inbox:
                        self._inbox = None
                    self._inbox_bytes -= _size(message)
                    transport = self._transport
                    if (self._inbox_bytes <= _INBOX_LIMIT and transport is not None
                            and not self._lost and not transport.is_reading()):
                        transport.resume_reading()
                    await peer.receive(message)
                elif self._end_code is not None:
                    self._peer = None  # told once
                    await peer.connection.transport_closed(self._end_code)
                    return
                else:
                    return
        except Exception:
            logger.exception("%r: failed to handle a message", peer)
            self.abort()
        finally:
            self._reader = None

    def _close_received(self, event: CloseConnection) -> None:
        frames = self._frames
        state = frames.state
        if state is _OPEN or self._closing and state is not _CLOSED:
            # wsproto reports a protocol violation (an unmasked frame: 1002, invalid
            # UTF-8: 1007) as a close event with that code, the state unchanged; its
            # parser is spent then.
            self._broken = True
            if state is _OPEN:
                self._fail(event.code, event.reason or "")
            return
        if state is _REMOTE_CLOSING:  # the client closes: answer, then end
            self._end_code = event.code
            self._write(frames.send(event.response()))
        # Closed: the client answered our close (or we just answered its close), or
        # failed after ours. A server closes the TCP connection first (RFC 6455 7.1.1).
        waiter = self._close_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._transport is not None:
            self._transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): a close frame with ``code``, the client's
        answer awaited (bounded), then the socket closed; the peer is told ``code``."""
        if self._end_code is None:
            self._end_code = code
        self._parts = None
        self._send_close(code, reason)
        self._run_inbox()  # the peer learns it now, not when the client has gone

    def _send_close(self, code: int, reason: str) -> None:
        """Send a close frame (once), then our FIN: the client's close frame and its FIN
        end the connection; a client that sends neither is dropped after
        :data:`_CLOSE_TIMEOUT`."""
        if self._closing:
            return
        if self._frames.state is _OPEN:
            self._write(self._frames.send(
                CloseConnection(code, reason_bytes(reason).decode())))
        self._closing = True
        transport = self._transport
        if transport is None or self._lost or transport.is_closing():
            return
        if transport.can_write_eof():
            # Half-closed: the client reads the close frame then the end of the stream
            # (even one whose application does not read), and answers with its FIN.
            # TLS cannot half-close: there the client's close frame ends it.
            transport.write_eof()
        self._close_timer = asyncio.get_running_loop().call_later(
            _CLOSE_TIMEOUT, transport.abort)

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not self._closing and not transport.is_closing():
            transport.write(data)

    # --- outbound: rtlink.connection.DirectSink --------------------------------------

    def write_now(self, frames: list[bytes], codec: Codec,
                  framed: dict[bytes | tuple[bytes, ...], bytes]) -> bool:
        """Write ``frames`` as one message now if the transport takes it (see
        :meth:`rtlink.connection.DirectSink.write_now`)."""
        if len(frames) == 1:
            return self.write_one(frames[0], framed)
        transport = self._transport
        if (transport is None or self._write_paused or self._closing
                or transport.is_closing()):
            return False
        # A codec has a single opcode (JSON: text, msgpack: binary) and the encodings
        # of two codecs never coincide, so the frames alone are a valid cache key.
        key = tuple(frames)
        data = framed.get(key)
        if data is None:
            message = codec.join(frames)
            data = framed[key] = frame_header(self._first_byte, len(message)) + message
        transport.write(data)
        return True

    def write_one(self, frame: bytes,
                  framed: dict[bytes | tuple[bytes, ...], bytes]) -> bool:
        """:meth:`write_now` of one encoded frame: what the hub's in-line fan-out calls
        once per subscriber, so it is kept to the checks alone."""
        transport = self._transport
        if (transport is None or self._write_paused or self._closing
                or transport.is_closing()):
            return False
        data = framed.get(frame)
        if data is None:
            data = framed[frame] = frame_header(self._first_byte, len(frame)) + frame
        transport.write(data)
        return True

    async def drained(self) -> None:
        """Wait until the transport takes writes again (at once if it does); raises
        :class:`ConnectionResetError` if the connection is lost."""
        while self._write_paused and not self._lost:
            waiter = self._write_waiter
            if waiter is None:
                waiter = self._write_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)
        if self._lost:
            raise ConnectionResetError("the WebSocket connection is lost")

    async def send(self, message: bytes) -> None:
        """Write one message (the connection's writer task, after :meth:`drained`)."""
        transport = self._transport
        if transport is None or self._lost or self._closing or transport.is_closing():
            raise ConnectionResetError("the WebSocket connection is closing")
        transport.write(frame_header(self._first_byte, len(message)) + message)

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``: the close frame, then the client's answer awaited (the
        connection bounds the wait), then the socket closed."""
        self._send_close(code, reason)
        transport = self._transport
        if (not self._lost and self._frames.state is not _CLOSED
                and transport is not None and not transport.is_closing()):
            waiter = self._close_waiter
            if waiter is None:
                waiter = self._close_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once."""
        if self._transport is not None:
            self._transport.abort()

    def __repr__(self) -> str:
        return f"<WebSocketProtocol of {self._peer!r}>"

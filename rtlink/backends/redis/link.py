"""One pub/sub connection to a Redis server, of its own (never one of the command pool),
read by an :class:`asyncio.Protocol` rather than a coroutine per message.

redis-py opens the connection (TCP, TLS or a Unix socket, ``AUTH``, ``HELLO``, a
Sentinel's master, with the client's own options); then :func:`open_link` takes its
transport over. From there each read is parsed at once in ``data_received`` and every
message in it is handed to the :class:`LinkHandler` synchronously: redis-py's
``PubSub.get_message`` cost a chain of coroutines, a timeout and a dict per message,
most of a subscriber node's CPU per delivery with one subscriber per channel.

Commands go out pipelined: :meth:`PubSubLink.subscribe` of 100,000 channels is 100
``SUBSCRIBE`` commands of 1,000 channels in one write (on a cluster ``SSUBSCRIBE``, whose
channels must share a slot: one command per slot). Replies are RESP2 or RESP3 (pushes),
whichever redis-py negotiated.

A silent connection is pinged after ``ping_interval`` seconds without a byte, and
presumed dead when the next ``ping_interval`` brings none either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

__all__ = ["LinkHandler", "PubSubLink", "ReplyError", "open_link", "parse_replies"]

logger = logging.getLogger("rtlink.backends.redis")

#: Channels per (S)SUBSCRIBE or (S)UNSUBSCRIBE command.
_CHUNK = 1_000

_MESSAGES = frozenset((b"message", b"smessage"))
_CONFIRMATIONS = frozenset((b"subscribe", b"ssubscribe"))
_UNSUBSCRIPTIONS = frozenset((b"unsubscribe", b"sunsubscribe"))


class ReplyError(str):
    """An error reply of Redis (``-MOVED 3999 10.0.0.2:7001``, ``-NOPERM ...``)."""


class LinkHandler(Protocol):
    """What a :class:`PubSubLink` reports, synchronously, from ``data_received``."""

    def link_message(self, name: bytes, data: bytes) -> None:
        """A publication on pub/sub channel ``name``."""

    def link_subscribed(self, name: bytes) -> None:
        """Redis confirmed a subscription of ``name``."""

    def link_unsubscribed(self, name: bytes) -> None:
        """Redis says ``name`` is no longer subscribed (an answer to an unsubscribe, or,
        on a cluster, a shard channel whose slot left the node)."""

    def link_error(self, error: ReplyError) -> None:
        """Redis refused a command of the link."""

    def link_lost(self, error: Exception) -> None:
        """The connection is gone (closed, failed, or silent for too long)."""


class PubSubLink(asyncio.Protocol):
    """A pub/sub connection taken over from redis-py (see the module docstring).

    Args:
        handler: told of every message, confirmation and error, and of the end.
        ping_interval: seconds of silence before a ``PING``; as long again without a
            byte and the connection is presumed dead.
        sharded: use ``SSUBSCRIBE``/``SUNSUBSCRIBE`` (Redis Cluster).
    """

    def __init__(self, handler: LinkHandler, *, ping_interval: float,
                 sharded: bool = False) -> None:
        self._handler: LinkHandler | None = handler
        self._interval = ping_interval
        self._sharded = sharded
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._loop = asyncio.get_running_loop()
        self._last_read = self._loop.time()
        self._pinged = False
        self._timer: asyncio.TimerHandle | None = None
        #: The streams redis-py opened the connection with, kept while the link lives.
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    @property
    def last_read(self) -> float:
        """The event loop's time when Redis last sent something on this link."""
        return self._last_read

    # --- commands ------------------------------------------------------------------------

    def subscribe(self, names: Iterable[bytes]) -> None:
        """Subscribe ``names`` (confirmations come through the handler)."""
        self._send_names(b"SSUBSCRIBE" if self._sharded else b"SUBSCRIBE", names)

    def unsubscribe(self, names: Iterable[bytes]) -> None:
        """Unsubscribe ``names``."""
        self._send_names(b"SUNSUBSCRIBE" if self._sharded else b"UNSUBSCRIBE", names)

    def ping(self) -> None:
        """Send a ``PING`` (any answer shows the connection alive)."""
        self._write(_command([b"PING"]))

    def close(self) -> None:
        """Close the connection; the handler hears nothing more."""
        self._handler = None
        self._stop_timer()
        if self._transport is not None:
            self._transport.abort()

    def abort(self, error: Exception) -> None:
        """Drop the connection as failed: the handler's ``link_lost`` gets ``error``."""
        handler, self._handler = self._handler, None
        self._stop_timer()
        if self._transport is not None:
            self._transport.abort()
        if handler is not None:
            handler.link_lost(error)

    def _send_names(self, verb: bytes, names: Iterable[bytes]) -> None:
        commands = []
        if self._sharded:
            # The channels of one SSUBSCRIBE must share a slot.
            by_slot: dict[int, list[bytes]] = {}
            for name in names:
                by_slot.setdefault(key_slot(name), []).append(name)
            groups: Iterable[list[bytes]] = by_slot.values()
        else:
            listed = list(names)
            groups = (listed[i:i + _CHUNK] for i in range(0, len(listed), _CHUNK))
        for group in groups:
            for i in range(0, len(group), _CHUNK):
                commands.append(_command([verb, *group[i:i + _CHUNK]]))
        if commands:
            self._write(b"".join(commands))

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._last_read = self._loop.time()
        self._timer = self._loop.call_at(self._last_read + self._interval, self._check)

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        self._pinged = False
        buffer = self._buffer + data if self._buffer else data
        try:
            replies, used = parse_replies(buffer)
        except ValueError as exc:
            self.abort(ConnectionError(f"unreadable reply from Redis: {exc}"))
            return
        self._buffer = buffer[used:]
        for reply in replies:
            handler = self._handler
            if handler is None:
                return
            if type(reply) is list:
                kind = reply[0] if reply else None
                # Messages first: this branch runs once per delivery.
                if kind in _MESSAGES:
                    handler.link_message(reply[1], reply[2])
                elif kind in _CONFIRMATIONS:
                    handler.link_subscribed(reply[1])
                # Unsubscribing nothing answers a null name.
                elif kind in _UNSUBSCRIPTIONS and reply[1] is not None:
                    handler.link_unsubscribed(reply[1])
                # pong, pmessage, ...: nothing to do (any byte read shows it alive)
            elif type(reply) is ReplyError:
                handler.link_error(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._stop_timer()
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.link_lost(exc or ConnectionError("the connection was closed by Redis"))

    # --- liveness ------------------------------------------------------------------------

    def _check(self) -> None:
        """Runs ``ping_interval`` after the last read, or after a ping."""
        now = self._loop.time()
        due = self._last_read + self._interval
        if now < due - 0.001:  # read since: wait for the rest of the interval
            self._timer = self._loop.call_at(due, self._check)
            return
        if self._pinged:
            self.abort(TimeoutError(f"no answer to a ping within {self._interval} s"))
            return
        self.ping()
        self._pinged = True
        self._timer = self._loop.call_at(now + self._interval, self._check)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def open_link(connection: AbstractConnection, handler: LinkHandler, *,
                    ping_interval: float, sharded: bool = False) -> PubSubLink:
    """Connect ``connection`` (a new redis-py connection, never a pooled one) and take
    its transport over as a :class:`PubSubLink`.

    Raises:
        redis.exceptions.ConnectionError, OSError, TimeoutError: connecting failed.
    """
    await connection.connect()  # type: ignore[no-untyped-call]
    # redis-py reads through asyncio streams; after its handshake nothing is pending,
    # and whatever is (a push it did not read) goes to the link.
    writer, reader = connection._writer, connection._reader
    if writer is None or reader is None:
        raise ConnectionError("redis-py connected without a stream")
    pending = bytes(getattr(reader, "_buffer", b""))
    # The streams are the link's now: redis-py's connection must not close them when
    # it is collected (its __del__ closes a writer it still holds), and the link keeps
    # the writer, whose own __del__ would close the transport.
    connection._writer = connection._reader = None
    link = PubSubLink(handler, ping_interval=ping_interval, sharded=sharded)
    link.streams = (reader, writer)
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    transport.set_protocol(link)
    link.connection_made(transport)
    if pending:
        link.data_received(pending)
    return link


def _command(args: list[bytes]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def parse_replies(buffer: bytes) -> tuple[list[object], int]:
    """The complete replies at the start of ``buffer`` and the bytes they take.

    RESP2 and RESP3: arrays and pushes as lists, bulk and simple strings as bytes,
    integers as int, errors as :class:`ReplyError`, nulls as None; maps as lists of
    their keys and values, doubles, booleans and big numbers as their text.

    Raises:
        ValueError: bytes that are not RESP.
    """
    replies: list[object] = []
    position, end = 0, len(buffer)
    while position < end:
        parsed = _parse(buffer, position)
        if parsed is None:
            break
        reply, position = parsed
        replies.append(reply)
    return replies, position


def _parse(buffer: bytes, position: int) -> tuple[object, int] | None:
    """One reply at ``position``, and where the next begins; None when incomplete."""
    line_end = buffer.find(b"\r\n", position)
    if line_end < 0:
        return None
    kind = buffer[position]
    if kind == 0x24 or kind == 0x3D or kind == 0x21:  # $ bulk, = verbatim, ! blob error
        length = int(buffer[position + 1:line_end])
        if length < 0:  # RESP2's null bulk string
            return None, line_end + 2
        start = line_end + 2
        stop = start + length
        if len(buffer) < stop + 2:
            return None
        value = buffer[start:stop]
        if kind == 0x21:
            return ReplyError(value.decode(errors="replace")), stop + 2
        return (value[4:] if kind == 0x3D else value), stop + 2
    if kind == 0x2A or kind == 0x3E or kind == 0x25 or kind == 0x7E:  # * > % ~
        count = int(buffer[position + 1:line_end])
        if count < 0:  # RESP2's null array
            return None, line_end + 2
        if kind == 0x25:
            count *= 2  # a map: keys and values
        items: list[object] = []
        position = line_end + 2
        for _ in range(count):
            parsed = _parse(buffer, position)
            if parsed is None:
                return None
            item, position = parsed
            items.append(item)
        return items, position
    if kind == 0x3A:  # : integer
        return int(buffer[position + 1:line_end]), line_end + 2
    if kind == 0x2D:  # - error
        return ReplyError(buffer[position + 1:line_end].decode(errors="replace")), line_end + 2
    if kind == 0x2B or kind == 0x2C or kind == 0x23 or kind == 0x28:  # + , # (
        return buffer[position + 1:line_end], line_end + 2
    if kind == 0x5F:  # _ null
        return None, line_end + 2
    if kind == 0x7C:  # | attribute: metadata before the reply it describes, skipped
        count = int(buffer[position + 1:line_end]) * 2
        position = line_end + 2
        for _ in range(count):
            parsed = _parse(buffer, position)
            if parsed is None:
                return None
            position = parsed[1]
        return _parse(buffer, position)
    raise ValueError(f"unknown RESP type {bytes([kind])!r}")

"""The outbound pipe of one client connection, whatever transport carries it.

A :class:`Connection` queues encoded frames for one client in a bounded buffer and
hands them to the transport's :class:`Sink`, batching everything queued since the last
write into one transport message. With a :class:`DirectSink` the hub's flush writes
that message synchronously for every connection at once; otherwise (and while a
transport is paused, and for the close) one writer task per connection drains the
buffer. Pull transports (long polling, ``POST send``) take the queue themselves.

It knows nothing of the protocol (that is :class:`rtlink.session.Session`) nor of
channels (the hub): it talks to its owner through :class:`ConnectionOwner` — "have me
flushed" and "I am closing".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from .codecs import Codec
from .codes import CloseCode
from .protocol import Close, Frame, Publication, encode_frame
from .session import POLL, REQUEST, STREAM, WEBSOCKET, ConnectionMode

__all__ = ["Connection", "ConnectionOwner", "ConnectionMode", "Sink", "DirectSink",
           "WEBSOCKET", "STREAM", "POLL", "REQUEST"]

logger = logging.getLogger("rtlink.connection")

#: Upper bound for one batched transport message; a bigger backlog is sent in several.
_BATCH_BYTES = 256 * 1024
#: How long a graceful close may take before the transport is aborted.
_CLOSE_TIMEOUT = 5.0


class ConnectionOwner(Protocol):
    """What a connection needs from whoever owns it."""

    def schedule_flush(self, connection: Connection) -> None:
        """Have ``connection``'s queue written at the next flush (its sink is direct)."""

    def connection_closed(self, connection: Connection) -> None:
        """``connection`` is closing (once, synchronously): forget it."""


class Sink(Protocol):
    """What a transport provides to a connection: a way to move messages out."""

    async def send(self, message: bytes) -> None:
        """Write one transport message (a batch of encoded frames)."""

    async def close(self, code: int, reason: str) -> None:
        """End the connection gracefully with a close code."""

    def abort(self) -> None:
        """End the connection at once, without a goodbye."""


@runtime_checkable
class DirectSink(Sink, Protocol):
    """A sink that can also write synchronously, from the hub's flush.

    Fan-out then costs one ``transport.write`` per connection per flush, with no task
    switch; the writer task only runs for what needs waiting (a paused transport,
    compression, the close).
    """

    def write_now(self, frames: list[bytes], codec: Codec,
                  framed: dict[bytes | tuple[bytes, ...], bytes]) -> bool:
        """Write encoded ``frames`` as one transport message (``codec.join``) now if the
        transport takes it without waiting (open, not paused, nothing to await); False
        if it does not (nothing written).

        ``framed`` caches wire bytes (message and frame header) for the other
        connections of the same flush, keyed by the frame (one) or the tuple of frames:
        subscribers of the same channels have the same queue, which is then joined and
        framed once per flush, not once per connection.
        """

    def write_one(self, frame: bytes,
                  framed: dict[bytes | tuple[bytes, ...], bytes]) -> bool:
        """:meth:`write_now` of the one encoded ``frame``: what the hub's in-line
        fan-out calls once per subscriber, so it is kept to the checks alone."""

    async def drained(self) -> None:
        """Wait until the transport takes writes again (returns at once if it does)."""


class Connection:
    """A client connection's outbound pipe: a bounded, batching queue to its sink.

    Args:
        codec: the client's codec (frames are encoded and joined with it).
        sink: the transport's side.
        mode: how the transport uses the connection (``writer``: pushed or pulled).
        owner: told to flush it and that it closes (:class:`ConnectionOwner`).
        outbound_limit: bytes queued before the client counts as a slow consumer.

    Attributes:
        codec: the client's codec.
        mode: how the transport uses it.
        close_code: the close code once the connection is closing, else None.
        close_reason: the reason given with it.
        news: something the client did not know was queued (a held long poll answers).
    """

    __slots__ = ("codec", "mode", "close_code", "close_reason", "_owner",
                 "_outbound_limit", "_sink", "_queue", "_queued_bytes",
                 "_replay_credit", "news", "_writer", "_direct", "_wakeup", "_writing",
                 "_dirty", "_done", "_done_waiters")

    def __init__(self, codec: Codec, sink: Sink, mode: ConnectionMode,
                 owner: ConnectionOwner, *, outbound_limit: int) -> None:
        self.codec = codec
        self.mode = mode
        self.close_code: int | None = None
        self.close_reason = ""
        self._owner = owner
        self._outbound_limit = outbound_limit
        self._sink = sink
        # A list, not a deque: an empty deque costs ~600 bytes, an idle connection's
        # queue is empty nearly always, and batches are taken from the front by slices.
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        # A replay is bounded by the channel's history, not by how fast the client
        # reads: its bytes may exceed the outbound limit once (else a client whose gap
        # is larger than the limit could never catch up). The credit shrinks as the
        # queue drains.
        self._replay_credit = 0
        self.news = False
        self._writer: asyncio.Task[None] | None = None
        # With a DirectSink the hub's flush writes the queue; the writer task is only
        # started when the flush cannot (a paused transport, a backlog, the close), and
        # then takes over while it is busy (``_writing``). An idle connection has no
        # task, no event and no future: they are most of its memory otherwise.
        self._direct: DirectSink | None = (
            sink if mode.writer and isinstance(sink, DirectSink) else None)
        # Set when something is queued, for the writer task or a pull waiting for it;
        # None until a direct connection first needs its writer.
        self._wakeup: asyncio.Event | None = None if self._direct else asyncio.Event()
        self._writing = False
        self._dirty = False  # queued in the hub's next flush
        self._done = False  # the writer finished: the close was sent or abandoned
        self._done_waiters: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        # Named by its owner (the peer: session id, transport, codec); not stored, as
        # an idle connection's every byte counts.
        return f"<Connection of {self._owner!r}>"

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer if the transport pushes (and its sink is not direct)."""
        if self.mode.writer and self._direct is None:
            self._start_writer()

    def _start_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name="rtlink-writer"
        )

    def _wake(self) -> None:
        """Wake the writer task (or a waiting pull); a direct connection's first call
        starts its writer."""
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = asyncio.Event()
            self._start_writer()
        wakeup.set()

    @property
    def has_queued(self) -> bool:
        """Whether frames wait in the queue (not yet handed to the transport)."""
        return bool(self._queue)

    async def wait_delivery(self, timeout: float) -> bool:
        """Pull mode: wait until something more is queued; False if ``timeout`` passed."""
        wakeup = self._wakeup
        assert wakeup is not None  # pull connections have no DirectSink
        wakeup.clear()
        try:
            async with asyncio.timeout(timeout):
                await wakeup.wait()
        except TimeoutError:
            return False
        return True

    def take_queued(self) -> bytes:
        """Pull mode: everything queued, as one transport message (b"" if nothing)."""
        frames, self._queue = self._queue, []
        self._queued_bytes = 0
        return self.codec.join(frames)

    def finish(self) -> None:
        """Pull mode: the request is answered; leave the hub without a close frame."""
        if self.close_code is None:
            self.close_code = CloseCode.NORMAL
            self._owner.connection_closed(self)
        self._set_done()

    @property
    def queued_bytes(self) -> int:
        """Bytes of frames queued for the client and not yet handed to the transport.

        At most ``outbound_limit`` plus one frame (plus a replay's bytes, see
        :meth:`deliver`): the frame that crosses the limit closes the connection.
        """
        return self._queued_bytes

    @property
    def closing(self) -> bool:
        """True once :meth:`close` or :meth:`abort` was called or the transport ended."""
        return self.close_code is not None

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Close the connection with ``code``; returns at once, the writer finishes it.

        With ``flush`` the frames already queued are sent first; without it they are
        dropped (used for slow consumers, whose backlog is what overflowed — the
        client resumes from its positions and loses nothing).
        """
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        self._owner.connection_closed(self)
        if not flush:
            self._queue.clear()
            self._queued_bytes = 0
        # The close frame is what HTTP transports see; on WebSocket the close code
        # follows it, so a client can rely on either.
        self._queue.append(encode_frame(self.codec, Close(code, reason)))
        if not self.mode.writer:
            self._wake()  # a waiting pull answers with the close frame
            self._set_done()
            return
        self._wake()
        # A stalled peer can block the writer forever; the close must not wait on it.
        asyncio.get_running_loop().call_later(_CLOSE_TIMEOUT, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self._done:
            logger.debug("%r: close timed out, aborting", self)
            self._sink.abort()
            self._finish()

    def abort(self) -> None:
        """End the connection at once, with no close frame (as a dead network would)."""
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL
            self._owner.connection_closed(self)
        self._sink.abort()
        self._finish()

    async def transport_closed(self, code: int = CloseCode.ABNORMAL) -> None:
        """Tell the connection its transport ended. Transports call it, always, last.

        If the server was closing the connection, its writer may still be saying
        goodbye; that is given a bounded time. Otherwise the peer left (``code`` is
        what it said, if anything) and the connection is dropped at once.
        """
        if self.close_code is None:
            self.close_code = code
            self._owner.connection_closed(self)
            self._finish()
            return
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self.wait_closed()
        except TimeoutError:
            self._sink.abort()
            self._finish()

    async def wait_closed(self) -> None:
        """Wait until the writer has finished (the close was sent or abandoned)."""
        if self._done:
            return
        if self._done_waiters is None:
            self._done_waiters = asyncio.get_running_loop().create_future()
        # Shielded: one waiter cancelled (a timeout) must not cancel the others.
        await asyncio.shield(self._done_waiters)

    def _set_done(self) -> None:
        self._done = True
        waiters = self._done_waiters
        if waiters is not None and not waiters.done():
            waiters.set_result(None)

    def _finish(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done() and writer is not asyncio.current_task():
            writer.cancel()
        self._queue.clear()
        self._queued_bytes = 0
        self._set_done()

    # --- outbound ------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        """Queue one frame for the client."""
        self.deliver(encode_frame(self.codec, frame))

    def replay(self, publications: Iterable[Publication]) -> None:
        """Queue a channel's history for the client: beyond the outbound limit if need
        be, once (it is bounded by the channel's history; see :meth:`deliver`)."""
        before = self._queued_bytes
        for publication in publications:
            encoded = encode_frame(self.codec, publication)
            self._queue.append(encoded)
            self._queued_bytes += len(encoded)
        if self._queued_bytes > before:
            self._replay_credit += self._queued_bytes - before
            self._kick()

    def _kick(self) -> None:
        """Something was queued: have it written (or a pull answered)."""
        if self._direct is not None and not self._writing:
            if not self._dirty:
                self._dirty = True
                self._owner.schedule_flush(self)
        else:
            self._wake()

    def flush(self, framed: dict[bytes | tuple[bytes, ...], bytes]) -> None:
        """Write the queue synchronously; called by the owner's flush.

        ``framed`` is shared by the connections of one flush (see
        :meth:`DirectSink.write_now`): the same queued frames are framed once. When the transport
        cannot take a write now the writer task takes over and waits for it; the queue
        then grows until the outbound limit closes a consumer that does not catch up.
        """
        self._dirty = False
        sink = self._direct
        queue = self._queue
        if sink is None or self._writing or self.close_code is not None or not queue:
            return
        # The usual case: what queued since the last flush fits one message.
        if self._queued_bytes <= _BATCH_BYTES and sink.write_now(queue, self.codec, framed):
            queue.clear()
            self._queued_bytes = self._replay_credit = 0
            return
        # A backlog (a replay, or a transport that was paused) or a transport that
        # cannot take a write now: the writer task sends it, waiting as needed.
        self._wake()

    def deliver(self, encoded: bytes) -> None:
        """Queue one already-encoded frame. The hot path of fan-out: no await, no task.

        When the queue exceeds the hub's outbound limit the client is not keeping up:
        the connection is closed with ``SLOW_CONSUMER``, which tells the client to
        reconnect and resume from its positions.
        """
        if self.close_code is not None:
            return
        self._queue.append(encoded)
        self._queued_bytes += len(encoded)
        if self._queued_bytes - self._replay_credit > self._outbound_limit:
            logger.warning("%r: outbound buffer over %d bytes, closing as slow consumer",
                           self, self._outbound_limit)
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: resume from your positions",
                       flush=False)
        elif not self._dirty:  # _kick(), inlined: this runs once per delivery
            if self._direct is not None and not self._writing:
                self._dirty = True
                self._owner.schedule_flush(self)
            else:
                self._wake()

    def deliver_now(self, encoded: bytes,
                    framed: dict[bytes | tuple[bytes, ...], bytes]) -> None:
        """Queue one encoded frame, or write it at once when nothing else waits and the
        transport takes it (the hub fanning out in line; ``framed`` as for
        :meth:`DirectSink.write_now`)."""
        direct = self._direct
        if (direct is not None and not self._queue and not self._writing
                and self.close_code is None and direct.write_one(encoded, framed)):
            return
        self.deliver(encoded)

    async def _write_loop(self) -> None:
        queue = self._queue
        direct = self._direct
        wakeup = self._wakeup
        assert wakeup is not None  # made before the task (start() or _wake())
        try:
            while True:
                await wakeup.wait()
                wakeup.clear()
                self._writing = True
                try:
                    while queue:
                        if direct is not None:
                            # Backpressure: nothing more is handed to a paused transport;
                            # the queue grows meanwhile, bounded by the outbound limit.
                            await direct.drained()
                            if not queue:
                                break
                        message, taken = self.codec.take_batch(queue, _BATCH_BYTES)
                        self._queued_bytes -= taken
                        self._replay_credit = min(self._replay_credit, self._queued_bytes)
                        await self._sink.send(message)
                finally:
                    self._writing = False
                if self.close_code is not None:
                    break
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._sink.close(self.close_code, self.close_reason)
            except TimeoutError:
                self._sink.abort()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-write: nothing else to do
            logger.debug("%r: write failed: %s", self, exc)
            if self.close_code is None:
                self.close_code = CloseCode.ABNORMAL
                self._owner.connection_closed(self)
            self._sink.abort()
        finally:
            self._queue.clear()
            self._queued_bytes = 0
            self._set_done()

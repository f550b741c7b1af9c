"""One live client connection on the server, whatever transport carries it.

A :class:`Connection` speaks the protocol with one client: it decodes what the
transport receives, answers requests through the hub, and queues outbound frames in
a bounded buffer, batching everything queued since the last write into one transport
message. With a :class:`DirectSink` the hub's flush writes that message synchronously
for every connection at once; otherwise (and while a transport is paused, and for the
close) one writer task per connection drains the buffer. Transports only provide a
:class:`Sink` that moves a transport message, and feed received messages to
:meth:`Connection.receive`.

This is the only per-client state on the server, and it lives exactly as long as the
connection: resuming needs nothing from here (the client carries its positions).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from .auth import subject_of
from .codecs import Codec
from .codes import CloseCode, ErrorCode
from .errors import BackendError, ChannelError, FrameError, ProtocolError
from .limits import TokenBucket
from .protocol import (
    Ack,
    Close,
    Error,
    Frame,
    Ping,
    Pong,
    Position,
    Publication,
    Publish,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Welcome,
    decode_client_message,
    encode_frame,
)

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Connection", "ConnectionMode", "Sink", "DirectSink", "WEBSOCKET", "STREAM", "POLL",
           "REQUEST"]

logger = logging.getLogger("rtlink.connection")

#: Upper bound for one batched transport message; a bigger backlog is sent in several.
_BATCH_BYTES = 256 * 1024
#: How long a graceful close may take before the transport is aborted.
_CLOSE_TIMEOUT = 5.0


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

    async def drained(self) -> None:
        """Wait until the transport takes writes again (returns at once if it does)."""


@attrs.frozen
class ConnectionMode:
    """How a transport uses a connection.

    Attributes:
        welcome: send ``welcome`` first.
        writer: a writer task pushes batches to the sink as they queue up; without
            it the transport pulls them (long polling, request/response).
        heartbeat: the client can send at any time, so a silent one is presumed
            dead (WebSocket); streams and polls are judged by their writes instead.
        subscribe_frames: subscriptions may change by ``subscribe``/``unsubscribe``
            frames; otherwise they travel in the transport's request.
        shared_limits: the connection lasts one request, so its publish rate is
            counted per client (address and identity subject) across requests
            rather than per connection.
    """

    welcome: bool = True
    writer: bool = True
    heartbeat: bool = True
    subscribe_frames: bool = True
    shared_limits: bool = False


#: A WebSocket: everything, both ways.
WEBSOCKET = ConnectionMode()
#: A server-sent event stream: subscriptions in the request, frames pushed.
STREAM = ConnectionMode(heartbeat=False, subscribe_frames=False)
#: One long poll: subscriptions in the request, frames pulled when the poll answers.
POLL = ConnectionMode(writer=False, heartbeat=False, subscribe_frames=False)
#: One POST of client frames, answered in its response.
REQUEST = ConnectionMode(welcome=False, writer=False, heartbeat=False, subscribe_frames=False,
                         shared_limits=True)


class _Subscription:
    """Server-side state of one channel subscription of one connection.

    While ``pending`` is a list the subscription is being set up (history is being
    read): live publications wait there so that they come after the replay.
    ``position`` is that of the last publication queued (the stream cursor).
    """

    __slots__ = ("pending", "position")

    def __init__(self, position: Position | None) -> None:
        self.pending: list[Publication] | None = []
        self.position = position


class Connection:
    """A client connection: protocol handling plus a bounded, batching outbound queue.

    Attributes:
        session: a random id, sent in ``welcome``; useful in logs.
        codec: the codec the client chose.
        identity: what the hub's ``authenticate`` hook returned (None if anonymous).
        transport: the transport's name (``"websocket"``, ...), for logs and metrics.
        address: the client's address (``request.remote``) if the transport knows it.
        close_code: the close code once the connection is closing, else None.
    """

    def __init__(
        self, hub: Hub, codec: Codec, identity: Any, sink: Sink, transport: str,
        mode: ConnectionMode = WEBSOCKET, address: str | None = None,
    ) -> None:
        self.session = secrets.token_urlsafe(9)
        self.mode = mode
        self.address = address
        self._publish_bucket: TokenBucket | None = None  # made at the first publish
        self.codec = codec
        self.identity = identity
        self.transport = transport
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_seen = time.monotonic()
        self.subscriptions: dict[str, _Subscription] = {}
        self._hub = hub
        self._outbound_limit = hub.outbound_limit
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
        self.news = False  # something the client did not know was queued (long polls)
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
        return f"<Connection {self.session} {self.transport}/{self.codec.name}>"

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Send ``welcome`` and start the writer, as the mode says. Called by the hub."""
        hub = self._hub
        if self.mode.welcome:
            self.send(
                Welcome(
                    session=self.session,
                    ping_interval=hub.ping_interval,
                    pong_timeout=hub.pong_timeout,
                    max_message_size=hub.max_message_size,
                )
            )
        if self.mode.writer and self._direct is None:
            self._start_writer()

    def _start_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name=f"rtlink-writer-{self.session}"
        )

    def _wake(self) -> None:
        """Wake the writer task (or a waiting pull); a direct connection's first call
        starts its writer."""
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = asyncio.Event()
            self._start_writer()
        wakeup.set()

    def cursor(self) -> dict[str, Position | None] | None:
        """Each subscribed channel with the position of the last publication queued.

        None while frames are still queued beyond the batch being written: the cursor
        would then claim publications the client has not been sent yet.
        """
        if self._queue:
            return None
        return {channel: sub.position for channel, sub in self.subscriptions.items()}

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
            self._hub._forget(self)
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
        self._hub._forget(self)
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
            self._hub._forget(self)
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
            self._hub._forget(self)
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

    def _queue_replayed(self, publication: Publication) -> None:
        encoded = encode_frame(self.codec, publication)
        self._queue.append(encoded)
        self._queued_bytes += len(encoded)
        self._kick()

    def _kick(self) -> None:
        """Something was queued: have it written (or a pull answered)."""
        if self._direct is not None and not self._writing:
            if not self._dirty:
                self._dirty = True
                self._hub._mark_dirty(self)
        else:
            self._wake()

    def _flush(self, framed: dict[bytes | tuple[bytes, ...], bytes]) -> None:
        """Write the queue synchronously; called by the hub's flush.

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
                           self, self._hub.outbound_limit)
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: resume from your positions",
                       flush=False)
        elif not self._dirty:  # _kick(), inlined: this runs once per delivery
            if self._direct is not None and not self._writing:
                self._dirty = True
                self._hub._mark_dirty(self)
            else:
                self._wake()

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
                self._hub._forget(self)
            self._sink.abort()
        finally:
            self._queue.clear()
            self._queued_bytes = 0
            self._set_done()

    # --- inbound -------------------------------------------------------------------

    async def receive(self, message: bytes | str) -> None:
        """Handle one transport message from the client.

        Frames are handled in order, one at a time, so a client's publishes keep
        their order. An undecodable message closes the connection (1007); an invalid
        frame is answered with an ``error`` frame and the rest of the batch goes on.
        """
        if self.close_code is not None:
            return
        self.last_seen = time.monotonic()
        try:
            frames = decode_client_message(self.codec, message)
        except ProtocolError as exc:
            self.close(exc.code, str(exc))
            return
        for frame in frames:
            if self.close_code is not None:
                return
            if isinstance(frame, FrameError):
                self.send(Error(frame.error_code, str(frame), frame.request_id))
                continue
            try:
                await self._handle(frame)
            except Exception:
                logger.exception("%r: failed to handle %r", self, frame)
                request_id = getattr(frame, "id", None)
                self.send(Error(ErrorCode.INTERNAL_ERROR, "internal error", request_id))

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, Subscribe | Unsubscribe) and not self.mode.subscribe_frames:
            self.send(Error(ErrorCode.BAD_REQUEST,
                            f"{frame.type} is not available on {self.transport}: "
                            "subscriptions travel in the stream or poll request",
                            frame.id, frame.channel))
        elif isinstance(frame, Publish):
            await self._on_publish(frame)
        elif isinstance(frame, Subscribe):
            await self._on_subscribe(frame)
        elif isinstance(frame, Unsubscribe):
            await self._on_unsubscribe(frame)
        elif isinstance(frame, Ping):
            self.send(Pong())
        # Pong needs nothing: receiving it already refreshed last_seen.

    async def _on_subscribe(self, frame: Subscribe) -> None:
        await self.subscribe(frame.channel, frame.since, frame.id)

    async def subscribe(self, channel: str, since: Position | None,
                        request_id: int | None = None) -> bool:
        """Subscribe to ``channel``, replaying what follows ``since``.

        Sends ``subscribed`` (or ``error``), then the replay, then goes live.
        ``request_id`` is the ``subscribe`` frame's id, or None when the transport's
        request carried the subscription. Returns whether the client learns something
        it did not know (an error, a fresh or unrecovered subscription, or
        publications): a long poll answers at once then.
        """
        hub = self._hub
        if channel in self.subscriptions:
            self.send(Error(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed", request_id,
                            channel))
            return True
        if len(self.subscriptions) >= hub.max_subscriptions:
            self.send(Error(ErrorCode.LIMIT_EXCEEDED,
                            f"at most {hub.max_subscriptions} subscriptions", request_id,
                            channel))
            return True
        try:
            options = hub.rules.options(channel)
            await hub._check_subscribe(self.identity, channel)
        except ChannelError as exc:
            self.send(Error(exc.code, str(exc), request_id, channel))
            return True
        subscription = _Subscription(since)
        self.subscriptions[channel] = subscription
        try:
            # Join the live stream first, then read history: a publication racing with
            # the read lands in ``pending`` and is de-duplicated below, never lost.
            await hub._attach(self, channel, subscription)
            result = await hub._history(channel, since, options)
        except Exception as exc:
            if self.subscriptions.get(channel) is subscription:
                del self.subscriptions[channel]
                hub._detach(self, channel)
            if isinstance(exc, BackendError) and exc.temporary:
                self.send(Error(ErrorCode.BACKEND_UNAVAILABLE, f"backend: {exc}",
                                request_id, channel))
            else:
                logger.exception("%r: subscribe to %r failed", self, channel)
                self.send(Error(ErrorCode.INTERNAL_ERROR, "internal error", request_id,
                                channel))
            return True
        if self.subscriptions.get(channel) is not subscription or self.close_code is not None:
            return False  # unsubscribed or closed while history was read
        if since is not None:
            hub.stats.resumed(self.transport, result.recovered, len(result.publications))
        self.send(Subscribed(request_id, channel, result.recovered, result.position))
        news = since is None or not result.recovered
        last: Position = result.position
        if since is not None and result.recovered:
            before = self._queued_bytes
            for publication in result.publications:
                self._queue_replayed(publication)
                last = publication.position
                news = True
            self._replay_credit += self._queued_bytes - before
        for publication in subscription.pending or ():
            position = publication.position
            if position.epoch == last.epoch and position.offset <= last.offset:
                continue
            self.send(publication)
            last = position
            news = True
        subscription.pending = None
        subscription.position = last
        self.news = self.news or news
        return news

    async def _on_unsubscribe(self, frame: Unsubscribe) -> None:
        if self.subscriptions.pop(frame.channel, None) is not None:
            self._hub._detach(self, frame.channel)
        # Unsubscribing from a channel one is not subscribed to is not an error:
        # the client's view and the server's may legitimately cross in flight.
        self.send(Ack(frame.id))

    def _take_publish_token(self, key: str | None) -> bool:
        """Whether the publish rate limit lets a publish with ``key`` through now."""
        limits = self._hub.publish_limits
        bucket = self._publish_bucket
        if bucket is None:
            bucket = self._publish_bucket = (
                limits.shared_bucket(self.address, subject_of(self.identity))
                if self.mode.shared_limits else limits.bucket())
            if bucket is None:
                return True  # no limit
        return bucket.take(key, limits.clock())

    async def _on_publish(self, frame: Publish) -> None:
        hub = self._hub
        # First, before hooks and backend: the limit protects them.
        if not self._take_publish_token(frame.key):
            logger.debug("%r: publish %s refused: rate limit", self, frame.id)
            limits = hub.publish_limits
            self.send(Error(ErrorCode.RATE_LIMITED,
                            f"too many publishes (at most {limits.rate:g} per second, "
                            f"{limits.burst} at once): send it again later",
                            frame.id, frame.channel))
            return
        try:
            options = hub.rules.options(frame.channel)
            await hub._check_publish(self.identity, frame.channel, options)
            position = await hub._publish(frame.channel, frame.data, frame.key, options,
                                          source="client")
        except ChannelError as exc:
            self.send(Error(exc.code, str(exc), frame.id, frame.channel))
            return
        except BackendError as exc:
            code = ErrorCode.BACKEND_UNAVAILABLE if exc.temporary else ErrorCode.INTERNAL_ERROR
            self.send(Error(code, f"backend: {exc}", frame.id, frame.channel))
            return
        self.send(Ack(frame.id, position))

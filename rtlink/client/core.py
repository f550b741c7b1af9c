"""The client's core, without I/O: subscriptions, the outbox, the requests in flight,
and what each frame from the server means for them (protocol.md 8.3-8.5).

The core holds everything a client needs to resume: each subscription's position and
the outbox of unacknowledged publishes. It is driven through plain calls:

* by the application (through :class:`~rtlink.client.Client`): :meth:`ClientCore.subscribe`,
  :meth:`~ClientCore.unsubscribe`, :meth:`~ClientCore.publish`;
* by whoever moves the bytes: :meth:`~ClientCore.start` with the first frame of a
  connection, :meth:`~ClientCore.receive` with every later one, :meth:`~ClientCore.end`
  when the connection is gone, :meth:`~ClientCore.retry` when a retry round's delay
  passed, :meth:`~ClientCore.stop` when the client stops for good;

and it answers through three functions given to it: ``send`` (an encoded frame for the
current connection), ``subscriptions_changed`` (the transport carries the subscriptions
in its requests and must make a new one) and ``retry_later`` (call :meth:`retry` after
a delay). Subscriptions and publishes learn their fate through their own objects
(:class:`~rtlink.client.subscription.Subscription`, :class:`~rtlink.client.outbox.OutboxEntry`).

No asyncio here: the tests drive it with plain calls. The asyncio client
(:mod:`rtlink.client.client`) only opens transports, reads, writes and keeps time; the
JavaScript client has the same class in ``js-client/src/core.js``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from ..backoff import full_jitter
from ..codecs import Codec
from ..codes import CloseCode, ErrorCode, is_temporary
from ..errors import (
    ClientClosed,
    FrameError,
    InvalidInput,
    PublishError,
    ReadError,
    RtlinkError,
    SubscribeError,
)
from ..positions import Position, is_after
from ..presence import Diff, PresenceInfo
from ..protocol import (
    MAX_HISTORY_LIMIT,
    PROTOCOL_VERSION,
    Ack,
    Close,
    Error,
    Frame,
    History,
    HistoryPage,
    Ping,
    Pong,
    Presence,
    PresenceDiff,
    PresenceResult,
    Publication,
    Publish,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    encode_frame,
    validate_channel,
    validate_data,
    validate_key,
)
from .outbox import Outbox, OutboxEntry, Result

__all__ = ["ClientCore", "SubscriptionState", "Read", "HistoryRead", "PresenceRead",
           "ReadResult", "Message", "SubscribedEvent", "UnsubscribedEvent", "RETRY_KINDS"]

logger = logging.getLogger("rtlink.client")

#: The kinds of retry rounds (protocol.md 8.3): sending the outbox again, subscribing
#: again the subscriptions refused for now.
RETRY_KINDS = ("resend", "resubscribe")


@attrs.frozen
class Message:
    """One publication delivered to the application.

    Attributes:
        channel: the channel it was published to.
        data: the published value.
        position: its position; pass it as ``since`` to resume after it later.
    """

    channel: str
    data: Any
    position: Position


@attrs.frozen
class SubscribedEvent:
    """Emitted as ``"subscribed"`` each time the server confirms the subscription.

    Attributes:
        recovered: False when the client asked to resume but the server could not
            fill the gap (history window exceeded or history lost): messages were
            missed and the application should re-sync. True otherwise.
        resumed: whether the client asked to resume from a position.
        position: the channel's position when the subscription was confirmed.
        since: set when replayed publications follow (delivered as messages): they
            are every publication the channel keeps after it (protocol.md 5.3).
    """

    recovered: bool
    resumed: bool
    position: Position
    since: Position | None = None


@attrs.frozen
class UnsubscribedEvent:
    """Emitted as ``"unsubscribed"`` when the server ended the subscription on its own
    (protocol.md 8.8); the subscription is over, the client does not resubscribe it.

    Attributes:
        channel: the channel.
        code: why, as the server said (an error code, e.g. 403).
        reason: why, in words.
    """

    channel: str
    code: int
    reason: str


class SubscriptionState(Protocol):
    """What the core keeps of a subscription, and how it tells the application
    (:class:`~rtlink.client.subscription.Subscription` is one).

    Attributes:
        channel: the channel.
        position: the position reached (protocol.md 8.3), or None.
        recovered: the ``recovered`` flag of the latest confirmation.
        last: the ``last`` it is subscribed with (every subscribe carries it), or None.
        request_id: the id of the subscribe request in flight, if any.
        active: confirmed on the current connection.
        held: refused for now; out of the cursor until the retry.
        presence: whether it asks for the channel's presence events.
    """

    channel: str
    position: Position | None
    recovered: bool
    last: int | None
    request_id: int | None
    active: bool
    held: bool
    presence: bool

    def _confirm(self, event: SubscribedEvent) -> None:
        """The server confirmed it (its state is updated already)."""

    def _deliver(self, message: Message) -> None:
        """A new publication (its position is updated already)."""

    def _fail(self, error: RtlinkError) -> None:
        """It ended with an error: refused for good, or the client stopped."""

    def _presence(self, diff: Diff) -> None:
        """A ``presence_diff`` of its channel (it asked for them)."""

    def _end(self) -> None:
        """It ended normally: unsubscribed."""

    def _unsubscribed(self, event: UnsubscribedEvent) -> None:
        """The server ended it (it is out of the core already)."""


class ReadResult(Protocol):
    """Where the outcome of a read goes: a future's setters."""

    def done(self) -> bool:
        """Whether the outcome is set already."""

    def set_result(self, result: Any, /) -> None:
        """The answer arrived."""

    def set_exception(self, exception: BaseException, /) -> None:
        """The read failed."""


class Read:
    """A read waiting for its answer (a page of history, a presence list): sent on
    every new connection, and again after a temporary refusal, until it is answered
    or refused for good (reading twice does no harm).

    Attributes:
        channel: the channel read.
        result: gets the answer, or the error (:class:`~rtlink.errors.ReadError`,
            :class:`~rtlink.errors.ClientClosed`).
        request_id: the id of the request in flight, if any.
    """

    __slots__ = ("channel", "result", "request_id")

    def __init__(self, channel: str, result: ReadResult) -> None:
        self.channel = channel
        self.result = result
        self.request_id: int | None = None

    def frame(self, request_id: int) -> Frame:
        """The request frame, with ``request_id``."""
        raise NotImplementedError


class HistoryRead(Read):
    """A ``history`` read: ``since``, ``limit`` and ``reverse`` as the frame has them;
    its answer is a :class:`~rtlink.protocol.HistoryPage`."""

    __slots__ = ("since", "limit", "reverse")

    def __init__(self, channel: str, since: Position | None, limit: int, reverse: bool,
                 result: ReadResult) -> None:
        super().__init__(channel, result)
        self.since = since
        self.limit = limit
        self.reverse = reverse

    def frame(self, request_id: int) -> Frame:
        return History(request_id, self.channel, self.since, self.limit, self.reverse)


class PresenceRead(Read):
    """A ``presence`` read; its answer is a :class:`~rtlink.presence.PresenceInfo`."""

    __slots__ = ()

    def frame(self, request_id: int) -> Frame:
        return Presence(request_id, self.channel)


#: What a request id stands for on the current connection (None: an unsubscribe).
_Target = SubscriptionState | OutboxEntry | Read | None


def _check(validate: Callable[[Any], object], value: Any) -> None:
    """Apply a protocol rule to an argument: InvalidInput if it breaks it."""
    try:
        validate(value)
    except FrameError as exc:
        raise InvalidInput(str(exc)) from None


class ClientCore:
    """Subscriptions, outbox and requests of one client, and the rules of protocol.md 8.3-8.5.

    Args:
        codec: the codec frames are encoded with.
        send: sends one encoded frame on the current connection.
        subscriptions_changed: asks a transport that carries the subscriptions in its
            requests (SSE, long polling) for a new request with :meth:`cursor`.
        retry_later: ``retry_later(kind, delay)`` asks for :meth:`retry` ``(kind)`` after
            ``delay`` seconds, unless the connection ends first.
        adopt: makes the subscription of a channel the server subscribed the client
            to (a ``subscribed`` frame with ``server``, protocol.md 8.8) and tells the
            application; without it such frames are ignored.
        outbox_limit: most publishes waiting for acknowledgement.
        backoff_base: first retry delay bound in seconds (doubles per round).
        backoff_cap: largest retry delay bound in seconds.

    Attributes:
        subscriptions: the subscriptions by channel.
        outbox: the publishes waiting for acknowledgement.
        requests: the requests in flight on the current connection, by id: the
            subscription, outbox entry or history read they are for (None for an
            unsubscribe).
        reads: the reads (history pages, presence lists) waiting for their answer.
        welcome: the ``welcome`` of the current connection; None when not connected.
        carries_subscriptions: whether the current transport carries the
            subscriptions in its requests instead of ``subscribe`` frames.
        closed: the :class:`ClientClosed` that stopped the client, once stopped.
    """

    def __init__(
        self,
        codec: Codec,
        *,
        send: Callable[[bytes], None],
        subscriptions_changed: Callable[[], None],
        retry_later: Callable[[str, float], None],
        adopt: Callable[[str], SubscriptionState] | None = None,
        outbox_limit: int = 1000,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self.codec = codec
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.outbox = Outbox(outbox_limit)
        self.requests: dict[int, _Target] = {}
        self.reads: list[Read] = []
        self.welcome: Welcome | None = None
        self.carries_subscriptions = False
        self.closed: ClientClosed | None = None
        self._send = send
        self._subscriptions_changed = subscriptions_changed
        self._retry_later = retry_later
        self._adopt = adopt
        self._last_id = 0  # request ids are never reused in a client's lifetime
        # Retry rounds after temporary refusals, per kind: whether one is pending (at
        # most one per kind, dropped with the connection) and the backoff attempt
        # (rounds since a request of that kind last succeeded; kept across connections).
        self._retrying: set[str] = set()
        self._retry_attempts = dict.fromkeys(RETRY_KINDS, 0)

    @property
    def connected(self) -> bool:
        """Whether a connection is up (its ``welcome`` arrived)."""
        return self.welcome is not None

    def presence_channels(self) -> frozenset[str]:
        """The channels whose presence events the subscriptions ask for (transports
        that carry the subscriptions write them as ``{"presence": true, ...}``)."""
        return frozenset(channel for channel, sub in self.subscriptions.items()
                         if sub.presence)

    def cursor(self) -> dict[str, Position | None]:
        """The subscriptions and their positions, for transports that carry them.

        A channel refused for now waits out of the cursor until its retry, or every
        poll would be answered at once with the same error.
        """
        return {channel: sub.position for channel, sub in self.subscriptions.items()
                if not sub.held}

    def request_cursor(self) -> tuple[dict[str, Position | None], dict[str, int]]:
        """:meth:`cursor`, and the ``last`` of its subscriptions that have one: what the
        ``subs`` of a stream or poll request carries (protocol.md 4.2)."""
        cursor = self.cursor()
        return cursor, {channel: sub.last for channel, sub in self.subscriptions.items()
                        if sub.last is not None and channel in cursor}

    # --- the application -------------------------------------------------------------

    def subscribe(self, subscription: SubscriptionState) -> None:
        """Add ``subscription`` and subscribe it if connected (a stopped client ends it
        at once with :attr:`closed`).

        Args:
            subscription: the new subscription (its channel and ``since`` position).

        Raises:
            InvalidInput: its channel name is invalid, or subscribed already.
        """
        channel = subscription.channel
        _check(validate_channel, channel)
        if channel in self.subscriptions:
            raise InvalidInput(f"already subscribed to {channel!r}")
        if self.closed is not None:
            subscription._fail(self.closed)
            return
        self.subscriptions[channel] = subscription
        if self.connected:
            if self.carries_subscriptions:
                self._subscriptions_changed()
            else:
                self._send_subscribe(subscription)

    def unsubscribe(self, subscription: SubscriptionState) -> None:
        """Remove ``subscription`` (unsubscribing it on the server if connected) and end it.

        Args:
            subscription: one of :attr:`subscriptions`.
        """
        if self.subscriptions.get(subscription.channel) is subscription:
            del self.subscriptions[subscription.channel]
            if subscription.request_id is not None:
                self.requests.pop(subscription.request_id, None)
            if self.connected:
                if self.carries_subscriptions:
                    self._subscriptions_changed()
                else:
                    self._send_frame(Unsubscribe(self._request(None), subscription.channel))
        subscription._end()

    def publish(self, channel: str, data: Any, key: str | None,
                result: Result) -> OutboxEntry:
        """Queue a publish (and send it if connected). Every attempt carries the same
        key: ``key`` or a random one.

        Args:
            channel: the channel to publish to.
            data: the data to publish.
            key: the idempotency key, or None for a random one.
            result: gets the publication's position on ack, or the error.

        Returns:
            The outbox entry (for :meth:`withdraw`).

        Raises:
            ClientClosed: the client stopped.
            InvalidInput: invalid channel name, data or key (protocol.md 8.4), or a
                publish with this key is waiting already.
            OutboxFull: the outbox is at its limit.
        """
        if self.closed is not None:
            raise self.closed
        _check(validate_channel, channel)
        _check(validate_data, data)
        _check(validate_key, key)
        entry = OutboxEntry(channel, data, key or uuid.uuid4().hex, result)
        self.outbox.add(entry)
        if self.connected:
            self._send_publish(entry)
        return entry

    def history(self, read: HistoryRead) -> None:
        """Ask for a page of history (now if connected, else on the next connection).

        Raises:
            ClientClosed: the client stopped.
            InvalidInput: invalid channel name or limit.
        """
        if not 0 < read.limit <= MAX_HISTORY_LIMIT:
            raise InvalidInput(f"limit must be from 1 to {MAX_HISTORY_LIMIT}")
        self._read(read)

    def presence(self, read: PresenceRead) -> None:
        """Ask who is in ``read.channel`` (now if connected, else on connecting).

        Raises:
            ClientClosed: the client stopped.
            InvalidInput: invalid channel name.
        """
        self._read(read)

    def _read(self, read: Read) -> None:
        if self.closed is not None:
            raise self.closed
        _check(validate_channel, read.channel)
        self.reads.append(read)
        if self.connected:
            self._send_read(read)

    def forget_read(self, read: Read) -> None:
        """Take ``read`` out (its call ended: answered or cancelled)."""
        if read in self.reads:
            self.reads.remove(read)
        if read.request_id is not None:
            self.requests.pop(read.request_id, None)

    def withdraw(self, entry: OutboxEntry) -> None:
        """Take ``entry`` out (its publish call ended: settled or cancelled). If it was
        sent already, the server may still apply it.

        Args:
            entry: what :meth:`publish` returned.
        """
        self.outbox.remove(entry)
        if entry.request_id is not None:
            self.requests.pop(entry.request_id, None)

    # --- the connection --------------------------------------------------------------

    def start(self, first: Frame | FrameError, carries_subscriptions: bool,
              requested_channels: tuple[str, ...] = ()) -> tuple[int, str] | None:
        """A connection's first frame arrived: if it is a ``welcome``, subscribe and send
        the outbox (8.3, 8.4).

        Args:
            first: the first frame the server sent.
            carries_subscriptions: whether the transport carries the subscriptions in
                its requests.
            requested_channels: for such a transport, the channels its request carried
                (a new request is asked for if they changed meanwhile).

        Returns:
            None when connected; else the close code and reason to end the connection
            with (a ``close`` frame's, or 1006 or 4502 for a wrong first frame).
        """
        if isinstance(first, Close):
            return first.code, first.reason  # e.g. authentication refused
        if not isinstance(first, Welcome):
            return (CloseCode.ABNORMAL,
                    "server sent an invalid message: the first frame must be welcome")
        if first.version != PROTOCOL_VERSION:
            return (CloseCode.UNSUPPORTED_PROTOCOL,
                    f"server speaks protocol version {first.version}")
        self.welcome = first
        self.carries_subscriptions = carries_subscriptions
        if not carries_subscriptions:
            for subscription in self.subscriptions.values():
                self._send_subscribe(subscription)
        elif requested_channels != tuple(self.cursor()):
            self._subscriptions_changed()  # changed while the request was on its way
        for entry in self.outbox.unsent():
            self._send_publish(entry)
        for read in self.reads:
            self._send_read(read)
        return None

    def receive(self, frame: Frame | FrameError) -> tuple[int, str] | None:
        """Handle a frame of the current connection.

        Args:
            frame: the frame, or the error of a frame that could not be read (logged).

        Returns:
            The close code and reason when the frame ends the connection (``close``),
            else None.
        """
        if isinstance(frame, Publication):
            self._on_publication(frame)
        elif isinstance(frame, Ack):
            self._on_ack(frame)
        elif isinstance(frame, Subscribed):
            self._on_subscribed(frame)
        elif isinstance(frame, HistoryPage):
            self._answer(frame.id, frame)
        elif isinstance(frame, Unsubscribed):
            self._on_unsubscribed(frame)
        elif isinstance(frame, Error):
            self._on_error(frame)
        elif isinstance(frame, Ping):
            # Over SSE there is no way back on the stream and no need to answer (6.6).
            if not self.carries_subscriptions:
                self._send_frame(Pong())
        elif isinstance(frame, PresenceDiff):
            subscription = self.subscriptions.get(frame.channel)
            if subscription is not None and subscription.active and subscription.presence:
                subscription._presence(Diff(frame.channel, frame.joins, frame.leaves,
                                            frame.count, frame.truncated))
        elif isinstance(frame, PresenceResult):
            self._answer(frame.id, PresenceInfo(frame.channel, frame.count, frame.members))
        elif isinstance(frame, Close):
            return frame.code, frame.reason
        elif isinstance(frame, FrameError):
            logger.warning("ignoring an invalid frame from the server: %s", frame)
        return None

    def end(self) -> None:
        """The connection is gone: its requests are forgotten, pending retries dropped
        (the next ``welcome`` sends everything again), and nothing is confirmed."""
        self.welcome = None
        self._retrying.clear()
        self.requests.clear()
        self.outbox.reset_attempts()
        for subscription in self.subscriptions.values():
            subscription.active = subscription.held = False
            subscription.request_id = None
        for read in self.reads:
            read.request_id = None

    def stop(self, closed: ClientClosed) -> None:
        """The client stopped for good: waiting publishes fail and subscriptions end.

        Args:
            closed: the error they fail or end with.
        """
        self.end()
        self.closed = closed
        for entry in self.outbox:
            self._settle(entry, closed)
        for subscription in list(self.subscriptions.values()):
            subscription._fail(closed)
        self.subscriptions.clear()
        for read in self.reads:
            if not read.result.done():
                read.result.set_exception(closed)
        self.reads.clear()

    def retry(self, kind: str) -> None:
        """The delay of a retry round passed: send again everything refused for now.

        Args:
            kind: ``"resend"`` (the outbox, oldest first) or ``"resubscribe"`` (the
                held subscriptions).
        """
        self._retrying.discard(kind)
        if kind == "resubscribe":
            for subscription in self.subscriptions.values():
                subscription.held = False
        if not self.connected:
            return
        if kind == "resubscribe":
            for read in self.reads:
                if read.request_id is None:
                    self._send_read(read)
        if kind == "resend":
            for entry in self.outbox.unsent():
                self._send_publish(entry)
        elif self.carries_subscriptions:
            self._subscriptions_changed()
        else:
            for subscription in self.subscriptions.values():
                if not subscription.active and subscription.request_id is None:
                    self._send_subscribe(subscription)

    # --- outbound --------------------------------------------------------------------

    def _request(self, target: _Target) -> int:
        self._last_id += 1
        self.requests[self._last_id] = target
        return self._last_id

    def _send_frame(self, frame: Frame) -> None:
        self._send(encode_frame(self.codec, frame))

    def _send_subscribe(self, subscription: SubscriptionState) -> None:
        subscription.request_id = self._request(subscription)
        subscription.active = False
        self._send_frame(Subscribe(subscription.request_id, subscription.channel,
                                   subscription.position, subscription.last,
                                   subscription.presence))

    def _send_read(self, read: Read) -> None:
        read.request_id = self._request(read)
        self._send_frame(read.frame(read.request_id))

    def _send_publish(self, entry: OutboxEntry) -> None:
        assert self.welcome is not None
        limit = self.welcome.max_message_size
        request_id = self._request(entry)
        encoded = encode_frame(self.codec, Publish(request_id, entry.channel, entry.data,
                                                   entry.key))
        if len(encoded) > limit:
            del self.requests[request_id]
            self._settle(entry, PublishError(
                ErrorCode.TOO_LARGE,
                f"publish of {len(encoded)} bytes exceeds the server's limit of {limit}"))
            return
        entry.request_id = request_id
        self._send(encoded)

    def _settle(self, entry: OutboxEntry, error: BaseException | None,
                position: Position | None = None) -> None:
        self.outbox.remove(entry)
        entry.settle(error, position)

    def _schedule_retry(self, kind: str) -> None:
        """Ask for a retry round of ``kind`` unless one is pending. Refusals come in
        bursts (a flushed outbox over the publish rate is refused frame by frame): one
        round answers the whole burst, so the backoff attempt grows once per round."""
        if kind in self._retrying:
            return
        self._retrying.add(kind)
        attempt = self._retry_attempts[kind]
        self._retry_attempts[kind] = attempt + 1
        self._retry_later(kind, full_jitter(attempt, self.backoff_base, self.backoff_cap))

    # --- inbound ---------------------------------------------------------------------

    def _on_publication(self, frame: Publication) -> None:
        subscription = self.subscriptions.get(frame.channel)
        if subscription is None or not subscription.active:
            return  # not subscribed, or not confirmed on this connection yet
        position, last = frame.position, subscription.position
        if not is_after(position, last):
            return  # delivered already: the seam between replay and live
        if last is not None and position.epoch != last.epoch and position.offset != 1:
            logger.warning("channel %s: history epoch changed from %s to %s mid-stream",
                           frame.channel, last.epoch, position.epoch)
        subscription.position = position
        subscription._deliver(Message(frame.channel, frame.data, position))

    def _on_read_error(self, read: Read, frame: Error) -> None:
        """A read refused: for good (it fails), or for now (sent again after a delay,
        like refused subscriptions)."""
        if is_temporary(frame.code):
            read.request_id = None
            self._schedule_retry("resubscribe")
            return
        self.forget_read(read)
        if not read.result.done():
            read.result.set_exception(ReadError(frame.code, frame.message))

    def _on_ack(self, frame: Ack) -> None:
        target = self.requests.pop(frame.id, None)
        if isinstance(target, OutboxEntry):
            self._retry_attempts["resend"] = 0
            if frame.position is not None:
                self._settle(target, None, frame.position)

    def _answer(self, request_id: int | None, answer: object) -> None:
        """The answer to a read (a history page, a presence list)."""
        target = self.requests.pop(request_id, None) if request_id is not None else None
        if isinstance(target, Read):
            self.forget_read(target)
            if not target.result.done():
                target.result.set_result(answer)

    def _on_subscribed(self, frame: Subscribed) -> None:
        target: _Target
        if frame.id is None:
            # The transport's request carried the subscription (SSE, long polling), or
            # the server subscribed the client on its own (8.8).
            target = self.subscriptions.get(frame.channel)
            if target is not None and target.active and frame.recovered:
                return  # a request confirming again what is known: nothing to report
            if target is None and frame.server and self._adopt is not None:
                target = self._adopt(frame.channel)
                self.subscriptions[frame.channel] = target
        else:
            target = self.requests.pop(frame.id, None)
        if target is None or isinstance(target, OutboxEntry | Read):
            return
        self._retry_attempts["resubscribe"] = 0
        resumed = target.position is not None
        target.active = True
        if target.request_id is not None:
            # Confirmed by another frame (a server-side subscription that crossed the
            # client's subscribe): that request is settled, its 409 refuses nothing.
            self.requests.pop(target.request_id, None)
        target.request_id = None
        target.recovered = frame.recovered
        # Recovered: the replay follows and moves the position on. Otherwise the gap
        # is lost for good: go on from what is replayed (everything kept after
        # ``since``), or from the channel's current position (protocol.md 8.3).
        if not resumed or not frame.recovered:
            target.position = frame.since or frame.position
        target._confirm(SubscribedEvent(frame.recovered, resumed, frame.position,
                                        frame.since))

    def _on_unsubscribed(self, frame: Unsubscribed) -> None:
        """The server ended a subscription (8.8): drop it, for good."""
        target = self.subscriptions.pop(frame.channel, None)
        if target is None:
            return
        if target.request_id is not None:
            self.requests.pop(target.request_id, None)
        target._unsubscribed(UnsubscribedEvent(frame.channel, frame.code, frame.reason))

    def _on_error(self, frame: Error) -> None:
        target: _Target = None
        if frame.id is not None:
            target = self.requests.pop(frame.id, None)
        elif frame.channel is not None:
            # On transports that carry subscriptions, their errors have no request id;
            # every request subscribes again, so a confirmed channel can be refused too.
            target = self.subscriptions.get(frame.channel)
        if target is None:
            logger.warning("server error %s: %s", frame.code, frame.message)
            return
        if isinstance(target, Read):
            self._on_read_error(target, frame)
            return
        target.request_id = None
        temporary = is_temporary(frame.code)
        if isinstance(target, OutboxEntry):
            if temporary:
                self._schedule_retry("resend")
            else:
                self._settle(target, PublishError(frame.code, frame.message))
        elif temporary:
            # Out of the cursor until the retry, or every poll would fail at once again.
            target.active = False
            target.held = True
            self._schedule_retry("resubscribe")
        else:
            if self.subscriptions.get(target.channel) is target:
                del self.subscriptions[target.channel]
            target._fail(SubscribeError(frame.code, frame.message))

"""What the protocol says to one client on the server, without I/O.

A :class:`Session` takes the client's frames and answers with frames to send and
:data:`Request` objects: the things only its owner can do (ask the hub's hooks, the
backend, the channel index). The owner (:class:`rtlink.peer.Peer`) runs each request
and reports the outcome back (:meth:`Session.subscribe_started`,
:meth:`Session.subscribe_ready`, :meth:`Session.published`, ...), which again gives
frames. So everything the protocol decides — which frame is refused and with what,
the subscription limit, the publish rate, and the seam between a channel's replayed
history and its live stream — is plain code tested with plain calls (no event loop),
as in the ``websockets`` library's sans-I/O core.

Not here: the outbound queue and the transport (:mod:`rtlink.connection`), the
channel index and fan-out (:mod:`rtlink.hub`), the channels' rules and the backend.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from typing import TypeAlias

import attrs

from .codecs import Codec
from .codes import ErrorCode
from .errors import BackendError, ChannelError, FrameError
from .limits import PublishLimits, TokenBucket
from .positions import Position, is_after
from .presence import Member
from .protocol import (
    Ack,
    Error,
    Frame,
    History,
    HistoryPage,
    Ping,
    Pong,
    Presence,
    PresenceResult,
    Publication,
    Publish,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    decode_client_message,
)

__all__ = [
    "ConnectionMode",
    "WEBSOCKET",
    "STREAM",
    "POLL",
    "REQUEST",
    "Subscription",
    "SubscribeRequest",
    "PublishRequest",
    "UnsubscribeRequest",
    "HistoryRequest",
    "PresenceRequest",
    "Request",
    "Output",
    "Ready",
    "Session",
]

# The connection's logger: what operators see of a client (docs/operations.md, logs).
logger = logging.getLogger("rtlink.connection")


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


class Subscription:
    """One channel subscription of one client.

    While ``pending`` is a list the subscription is being set up (history is being
    read): live publications wait there, so that they come after the replay.
    ``position`` is that of the last publication queued for the client (its cursor
    in the channel). The hub's fan-out reads and writes both directly: it runs once
    per delivery. ``presence`` says whether the client asked for the channel's
    ``presence_diff`` events; ``member`` is what the client is in the channel's
    presence once it joined it (None for a channel without presence).
    """

    __slots__ = ("pending", "position", "presence", "member")

    def __init__(self, position: Position | None, presence: bool = False) -> None:
        self.pending: list[Publication] | None = []
        self.position = position
        self.presence = presence
        self.member: Member | None = None


@attrs.frozen
class SubscribeRequest:
    """Check that the client may subscribe ``channel``; if so, report
    :meth:`Session.subscribe_started`, join the channel's live stream, read what to
    replay and report :meth:`Session.subscribe_ready`: the gap after ``since`` when it
    can be filled; otherwise, when ``since`` or ``last`` was given, what the channel's
    current epoch keeps, at most ``last`` of the latest (protocol.md 6.2).

    ``server`` marks a server-side subscription (:meth:`Session.server_subscribe`):
    the client did not ask, so a refusal or failure is the server's to log, not the
    client's to hear of."""

    channel: str
    since: Position | None
    request_id: int | None
    last: int | None = None
    presence: bool = False
    server: bool = False


@attrs.frozen
class PresenceRequest:
    """Check that the client may subscribe ``frame.channel`` and that the channel keeps
    presence, read it, and send :meth:`Session.presence_result` (or the refusal)."""

    frame: Presence


@attrs.frozen
class PublishRequest:
    """Check that the client may publish ``frame``, publish it, and report
    :meth:`Session.published` (or :meth:`Session.publish_failed`)."""

    frame: Publish


@attrs.frozen
class UnsubscribeRequest:
    """The client left ``channel``: take it out of the channel's live stream (and its
    presence, if ``subscription`` joined it)."""

    channel: str
    subscription: Subscription | None = None


@attrs.frozen
class HistoryRequest:
    """Check that the client may read ``frame.channel`` (as for subscribing), read the
    page it asks for and report :meth:`Session.history_ready` (or
    :meth:`Session.history_failed`)."""

    frame: History


#: What a session asks of its owner.
Request: TypeAlias = (SubscribeRequest | PublishRequest | UnsubscribeRequest | HistoryRequest
                    | PresenceRequest)
#: What a session gives its owner for one client frame: frames to send, in order,
#: and requests to run, in order, after them.
Output: TypeAlias = Frame | Request


@attrs.frozen
class Ready:
    """A subscription is set up: what to send, in this order.

    Attributes:
        subscribed: the ``subscribed`` frame.
        replay: the channel's history after the client's position, or the latest it
            keeps (may exceed the outbound limit once: it is bounded by the channel's
            history).
        live: the publications that arrived while history was read, not already in
            ``replay``.
        news: whether the client learns something it did not know (a fresh or
            unrecovered subscription, or publications): a held long poll answers.
    """

    subscribed: Subscribed
    replay: Sequence[Publication]
    live: Sequence[Publication]
    news: bool


class Session:
    """The protocol state of one client (see the module docstring).

    Args:
        codec: the client's codec (for decoding its messages).
        mode: how its transport uses the connection.
        transport: the transport's name, for messages.
        max_subscriptions: subscriptions it may hold.
        publish_limits: the hub's publish rate limits.
        address: the client's address, and
        subject: its identity's subject, for the per-client publish buckets of
            request transports (``mode.shared_limits``).
        clock: monotonic seconds (injectable for tests).
        session_id: the id to use instead of a new random one: an HTTP transport's
            client carries it over from its previous request (protocol.md 6.8).

    Attributes:
        id: a random id, sent in ``welcome``; useful in logs.
        subscriptions: the channels subscribed (or being set up).
        last_seen: when the client last sent something (``clock()``).
    """

    # One per client: slots keep an idle connection small (docs: README "Performance").
    __slots__ = ("id", "codec", "mode", "transport", "max_subscriptions", "subscriptions",
                 "_limits", "_address", "_subject", "_clock", "last_seen", "_bucket")

    def __init__(
        self,
        codec: Codec,
        mode: ConnectionMode,
        transport: str,
        *,
        max_subscriptions: int,
        publish_limits: PublishLimits,
        address: str | None = None,
        subject: str | None = None,
        clock: Callable[[], float],
        session_id: str | None = None,
    ) -> None:
        self.id = session_id or secrets.token_urlsafe(9)
        self.codec = codec
        self.mode = mode
        self.transport = transport
        self.max_subscriptions = max_subscriptions
        self.subscriptions: dict[str, Subscription] = {}
        self._limits = publish_limits
        self._address = address
        self._subject = subject
        self._clock = clock
        self.last_seen = clock()
        self._bucket: TokenBucket | None = None  # made at the first publish

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.transport}/{self.codec.name}>"

    def welcome(self, ping_interval: float, pong_timeout: float,
                max_message_size: int) -> list[Frame]:
        """The frames that open the session (``welcome``, if the mode sends one)."""
        if not self.mode.welcome:
            return []
        return [Welcome(session=self.id, ping_interval=ping_interval,
                        pong_timeout=pong_timeout, max_message_size=max_message_size)]

    # --- frames in -------------------------------------------------------------------

    def receive(self, message: bytes | str) -> list[Frame | FrameError]:
        """Decode one transport message of the client; hand each item to :meth:`handle`.

        Raises:
            ProtocolError: the message cannot be decoded at all (close with its code).
        """
        self.last_seen = self._clock()
        return decode_client_message(self.codec, message)

    def handle(self, frame: Frame | FrameError) -> list[Output]:
        """What to do about one client frame: frames to send and requests to run."""
        if isinstance(frame, FrameError):
            return [Error(frame.error_code, str(frame), frame.request_id)]
        if isinstance(frame, Subscribe | Unsubscribe) and not self.mode.subscribe_frames:
            return [Error(ErrorCode.BAD_REQUEST,
                          f"{frame.type} is not available on {self.transport}: "
                          "subscriptions travel in the stream or poll request",
                          frame.id, frame.channel)]
        if isinstance(frame, Publish):
            return self._on_publish(frame)
        if isinstance(frame, Subscribe):
            return self.subscribe(frame.channel, frame.since, frame.id, frame.last,
                                  frame.presence)
        if isinstance(frame, History):
            return [HistoryRequest(frame)]
        if isinstance(frame, Presence):
            return [PresenceRequest(frame)]
        if isinstance(frame, Unsubscribe):
            # Leaving a channel one is not in is not an error: the client's view and
            # the server's may legitimately cross in flight.
            gone = self.subscriptions.pop(frame.channel, None)
            left: list[Output] = ([UnsubscribeRequest(frame.channel, gone)]
                                  if gone is not None else [])
            return [*left, Ack(frame.id)]
        if isinstance(frame, Ping):
            return [Pong()]
        return []  # a pong: receiving it already refreshed last_seen

    # --- subscribing -----------------------------------------------------------------

    def subscribe(self, channel: str, since: Position | None,
                  request_id: int | None = None, last: int | None = None,
                  presence: bool = False) -> list[Output]:
        """The client asks for ``channel`` from ``since``, or with its ``last``
        publications (a ``subscribe`` frame, or the transport's request: then
        ``request_id`` is None), and for its presence events if ``presence``."""
        if channel in self.subscriptions:
            return [Error(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed", request_id,
                          channel)]
        if len(self.subscriptions) >= self.max_subscriptions:
            return [Error(ErrorCode.LIMIT_EXCEEDED,
                          f"at most {self.max_subscriptions} subscriptions", request_id,
                          channel)]
        return [SubscribeRequest(channel, since, request_id, last, presence)]

    def server_subscribe(self, channel: str) -> list[Output]:
        """The application subscribes the client to ``channel`` (protocol.md 6.9):
        nothing if it is subscribed already or at its subscription limit, else the
        request to set it up, from the channel's current position."""
        if channel in self.subscriptions or len(self.subscriptions) >= self.max_subscriptions:
            return []
        return [SubscribeRequest(channel, None, None, server=True)]

    def server_unsubscribe(self, channel: str, code: int, reason: str) -> list[Output]:
        """The application takes ``channel`` away from the client (protocol.md 6.9):
        leave it and tell the client with ``unsubscribed``; nothing if not subscribed."""
        if self.subscriptions.pop(channel, None) is None:
            return []
        return [UnsubscribeRequest(channel), Unsubscribed(channel, code, reason)]

    def subscribe_started(self, request: SubscribeRequest) -> Subscription:
        """The client may subscribe: its subscription exists from now on, and the
        channel's live publications wait in it while history is read."""
        subscription = self.subscriptions[request.channel] = Subscription(request.since,
                                                                          request.presence)
        return subscription

    def subscribe_ready(self, request: SubscribeRequest, subscription: Subscription, *,
                        recovered: bool, position: Position,
                        publications: Sequence[Publication]) -> Ready | None:
        """History was read (see :class:`~rtlink.backends.HistoryResult`): the
        subscription goes live. None if the client left the channel meanwhile.

        ``publications`` are replayed: the gap after ``request.since``, or (``last``,
        or a ``since`` that could not be recovered) what the channel keeps. The
        ``subscribed`` frame then says after which position they come (its ``since``).
        """
        if self.subscriptions.get(request.channel) is not subscription:
            return None
        news = request.since is None or not recovered
        last = position
        replay: Sequence[Publication] = ()
        since = None
        if publications:
            replay = publications
            first = publications[0].position
            since = Position(first.epoch, first.offset - 1)
            last = publications[-1].position
            news = True
        live = []
        for publication in subscription.pending or ():
            # The seam: what arrived live during the read may be in history too.
            if is_after(publication.position, last):
                live.append(publication)
                last = publication.position
                news = True
        subscription.pending = None
        subscription.position = last
        return Ready(Subscribed(request.request_id, request.channel, recovered, position,
                                since=since, server=request.server), replay, live, news)

    def subscribe_failed(self, request: SubscribeRequest, subscription: Subscription | None,
                         error: Exception) -> Error:
        """Setting up the subscription failed: forget it; the ``error`` frame to send
        (the channel's refusal, 503 for a temporary backend failure, else 500)."""
        if subscription is not None and self.subscriptions.get(request.channel) is subscription:
            del self.subscriptions[request.channel]
        return _read_failed(error, request.request_id, request.channel)

    # --- reading history -------------------------------------------------------------

    def history_ready(self, request: HistoryRequest, page: HistoryPage) -> HistoryPage:
        """The page was read: the ``history`` frame answering the request."""
        return attrs.evolve(page, id=request.frame.id)

    def history_failed(self, request: HistoryRequest, error: Exception) -> Error:
        """Reading the page was refused or failed: the ``error`` frame (as for
        :meth:`subscribe_failed`)."""
        return _read_failed(error, request.frame.id, request.frame.channel)

    # --- publishing ------------------------------------------------------------------

    def _on_publish(self, frame: Publish) -> list[Output]:
        # First, before hooks and backend: the limit protects them.
        if not self._take_publish_token(frame.key):
            logger.debug("%r: publish %s refused: rate limit", self, frame.id)
            limits = self._limits
            return [Error(ErrorCode.RATE_LIMITED,
                          f"too many publishes (at most {limits.rate:g} per second, "
                          f"{limits.burst} at once): send it again later",
                          frame.id, frame.channel)]
        return [PublishRequest(frame)]

    def _take_publish_token(self, key: str | None) -> bool:
        bucket = self._bucket
        if bucket is None:
            limits = self._limits
            bucket = self._bucket = (limits.shared_bucket(self._address, self._subject)
                                     if self.mode.shared_limits else limits.bucket())
            if bucket is None:
                return True  # no limit
        return bucket.take(key, self._limits.clock())

    def published(self, request: PublishRequest, position: Position) -> Ack:
        """The publication was made (or found again by its key) at ``position``."""
        return Ack(request.frame.id, position)

    def publish_failed(self, request: PublishRequest, error: Exception) -> Error:
        """The publication was refused (the channel's rules or hooks) or failed (the
        backend: 503 when temporary, else 500; anything unexpected: 500)."""
        frame = request.frame
        if isinstance(error, ChannelError):
            return Error(error.code, str(error), frame.id, frame.channel)
        if isinstance(error, BackendError):
            code = (ErrorCode.BACKEND_UNAVAILABLE if error.temporary
                    else ErrorCode.INTERNAL_ERROR)
            return Error(code, f"backend: {error}", frame.id, frame.channel)
        return Error(ErrorCode.INTERNAL_ERROR, "internal error", frame.id)

    # --- presence --------------------------------------------------------------------

    def presence_result(self, request: PresenceRequest, count: int,
                        members: Sequence[Member]) -> PresenceResult:
        """The answer to a ``presence`` read."""
        frame = request.frame
        return PresenceResult(frame.id, frame.channel, count, tuple(members))

    def presence_failed(self, request: PresenceRequest, error: Exception) -> Error:
        """A ``presence`` read was refused (the channel's rules, or no presence kept:
        400) or failed (503 for a temporary backend failure, else 500)."""
        frame = request.frame
        if isinstance(error, ChannelError):
            return Error(error.code, str(error), frame.id, frame.channel)
        if isinstance(error, BackendError) and error.temporary:
            return Error(ErrorCode.BACKEND_UNAVAILABLE, f"backend: {error}", frame.id,
                         frame.channel)
        return Error(ErrorCode.INTERNAL_ERROR, "internal error", frame.id, frame.channel)

    def cursor(self) -> dict[str, Position | None]:
        """Each subscribed channel with the position of the last publication queued."""
        return {channel: sub.position for channel, sub in self.subscriptions.items()}


def _read_failed(error: Exception, request_id: int | None, channel: str) -> Error:
    """The ``error`` frame for a subscription or history read that failed: the
    channel's refusal, 503 for a temporary backend failure, else 500."""
    if isinstance(error, ChannelError):
        return Error(error.code, str(error), request_id, channel)
    if isinstance(error, BackendError) and error.temporary:
        return Error(ErrorCode.BACKEND_UNAVAILABLE, f"backend: {error}", request_id, channel)
    return Error(ErrorCode.INTERNAL_ERROR, "internal error", request_id, channel)

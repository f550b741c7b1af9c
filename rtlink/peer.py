"""One client as the hub serves it: its session, its connection, and the requests between
them and the hub.

Transports get a :class:`Peer` from :meth:`rtlink.Hub.accept` and feed it what the
client sends (:meth:`Peer.receive`, or :meth:`Peer.subscribe` for the subscriptions a
stream or poll request carries). The peer hands each message to its
:class:`~rtlink.session.Session`, which decides what the protocol says; runs the
requests the session asks for against the hub (:class:`PeerHost`: the channel rules
and hooks, the backend, the channel index); and queues the resulting frames on its
:class:`~rtlink.connection.Connection`, the outbound pipe. A client's frames are
handled one at a time, in order, so its publishes keep their order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from .auth import subject_of
from .backends import HistoryResult
from .channels import ChannelOptions, ChannelRules
from .codecs import Codec
from .codes import ErrorCode
from .connection import Connection, Sink
from .errors import BackendError, ChannelError, ProtocolError
from .limits import PublishLimits
from .positions import Position
from .presence import Member
from .protocol import Error, Frame, HistoryPage
from .roster import member_of
from .session import (
    ConnectionMode,
    HistoryRequest,
    Output,
    PresenceRequest,
    PublishRequest,
    Session,
    SubscribeRequest,
    Subscription,
    UnsubscribeRequest,
)
from .stats import HubStats

__all__ = ["Peer", "PeerHost"]

logger = logging.getLogger("rtlink.connection")


class PeerHost(Protocol):
    """What a peer needs from the hub that accepted it."""

    rules: ChannelRules
    stats: HubStats
    publish_limits: PublishLimits
    max_subscriptions: int
    outbound_limit: int
    ping_interval: float
    pong_timeout: float
    max_message_size: int

    async def check_subscribe(self, identity: Any, channel: str) -> None:
        """Raise :class:`~rtlink.errors.ChannelError` unless ``identity`` may
        subscribe ``channel`` (its rules, then the ``authorize_subscribe`` hook)."""

    async def check_publish(self, identity: Any, channel: str, options: ChannelOptions
                            ) -> None:
        """Raise :class:`~rtlink.errors.ChannelError` unless ``identity`` may publish
        to ``channel``."""

    async def publish_for_client(self, channel: str, data: Any, key: str | None,
                                 options: ChannelOptions) -> Position:
        """Publish a client's publication through the backend."""

    async def read_history(self, channel: str, since: Position | None,
                           options: ChannelOptions, last: int | None = None
                           ) -> HistoryResult:
        """Read what a subscription replays: ``channel``'s history after ``since``, or
        (``last``, or a ``since`` that cannot be recovered) what it keeps."""

    async def read_page(self, channel: str, since: Position | None, options: ChannelOptions,
                        limit: int, reverse: bool) -> HistoryPage:
        """Read a page of ``channel``'s history (a ``history`` frame)."""

    async def join_channel(self, connection: Connection, channel: str,
                           subscription: Subscription) -> None:
        """Add ``connection`` to ``channel``'s live stream (``subscription`` collects
        what arrives); returns once the backend delivers the channel to this node."""

    def leave_channel(self, connection: Connection, channel: str,
                      subscription: Subscription | None = None) -> None:
        """Take ``connection`` out of ``channel``'s live stream, and ``subscription``
        out of the channel's presence (if it joined it)."""

    def join_presence(self, connection: Connection, channel: str,
                      subscription: Subscription, member: Member) -> Awaitable[None]:
        """``subscription`` joins ``channel``'s presence as ``member`` (and, if it asked,
        gets its events); done once the backend has it."""

    def presence_live(self, connection: Connection, channel: str,
                      subscription: Subscription) -> None:
        """``subscription`` went live (its ``subscribed`` is queued): send the presence
        events kept for its client since its previous request ended."""

    async def read_presence(self, identity: Any, channel: str) -> tuple[int, list[Member]]:
        """Who is in ``channel``, for a client with ``identity``.

        Raises:
            ChannelError: the client may not subscribe ``channel`` (404, 401, 403), or
                the channel keeps no presence (400).
            BackendError: the backend failed.
        """

    def schedule_flush(self, connection: Connection) -> None:
        """Have ``connection``'s queue written at the next flush."""

    def peer_closed(self, peer: Peer) -> None:
        """``peer``'s connection is closing: forget it."""


class Peer:
    """One client of the hub (see the module docstring).

    Attributes:
        session: what the protocol knows of the client.
        connection: its outbound pipe.
        identity: what the ``authenticate`` hook returned (None if anonymous).
        transport: the transport's name (``"websocket"``, ...), for logs and metrics.
        address: the client's address (``request.remote``) if the transport knows it.
    """

    __slots__ = ("_host", "identity", "transport", "address", "session", "connection")

    def __init__(self, host: PeerHost, codec: Codec, identity: Any, sink: Sink,
                 transport: str, mode: ConnectionMode, address: str | None = None,
                 session_id: str | None = None) -> None:
        self._host = host
        self.identity = identity
        self.transport = transport
        self.address = address
        self.session = Session(
            codec, mode, transport,
            max_subscriptions=host.max_subscriptions,
            publish_limits=host.publish_limits,
            address=address,
            subject=subject_of(identity) if mode.shared_limits else None,
            clock=time.monotonic,
            session_id=session_id,
        )
        self.connection = Connection(codec, sink, mode, self,
                                     outbound_limit=host.outbound_limit)

    def __repr__(self) -> str:
        session = self.session
        return f"<Peer {session.id} {self.transport}/{session.codec.name}>"

    def schedule_flush(self, connection: Connection) -> None:
        """The connection has frames queued: the hub's next flush writes them."""
        self._host.schedule_flush(connection)

    def connection_closed(self, connection: Connection) -> None:
        """The connection is closing: the hub forgets the peer (and its channels)."""
        self._host.peer_closed(self)

    def start(self) -> None:
        """Send ``welcome`` (if the mode says so) and start the connection."""
        host = self._host
        for frame in self.session.welcome(host.ping_interval, host.pong_timeout,
                                          host.max_message_size):
            self.connection.send(frame)
        self.connection.start()

    def cursor(self) -> dict[str, Position | None] | None:
        """Each subscribed channel with the position of the last publication queued.

        None while frames are still queued beyond the batch being written: the cursor
        would then claim publications the client has not been sent yet.
        """
        if self.connection.has_queued:
            return None
        return self.session.cursor()

    # --- from the client -------------------------------------------------------------

    async def receive(self, message: bytes | str) -> None:
        """Handle one transport message from the client.

        An undecodable message closes the connection (1007); an invalid frame is
        answered with an ``error`` frame and the rest of the batch goes on.
        """
        connection = self.connection
        if connection.closing:
            return
        try:
            frames = self.session.receive(message)
        except ProtocolError as exc:
            connection.close(exc.code, str(exc))
            return
        for frame in frames:
            if connection.closing:
                return
            try:
                await self._run(self.session.handle(frame))
            except Exception:
                logger.exception("%r: failed to handle %r", self, frame)
                connection.send(Error(ErrorCode.INTERNAL_ERROR, "internal error",
                                      getattr(frame, "id", None)))

    async def subscribe(self, channel: str, since: Position | None,
                        request_id: int | None = None, last: int | None = None,
                        presence: bool = False) -> bool:
        """Subscribe to ``channel``, replaying what follows ``since`` or the ``last``
        publications kept (the transport's request carried the subscription), with its
        presence events if ``presence``.

        Sends ``subscribed`` (or ``error``), then the replay, then goes live. Returns
        whether the client learns something it did not know (an error, a fresh or
        unrecovered subscription, or publications): a long poll answers at once then.
        """
        return await self._run(self.session.subscribe(channel, since, request_id, last,
                                                      presence))

    async def server_subscribe(self, channel: str) -> bool:
        """The application subscribes this client to ``channel``
        (:meth:`rtlink.Hub.subscribe`); whether the subscription was set up."""
        await self._run(self.session.server_subscribe(channel))
        return channel in self.session.subscriptions

    def server_unsubscribe(self, channel: str, code: int, reason: str) -> bool:
        """The application takes ``channel`` away from this client
        (:meth:`rtlink.Hub.unsubscribe`); whether it was subscribed."""
        outputs = self.session.server_unsubscribe(channel, code, reason)
        for output in outputs:
            if isinstance(output, UnsubscribeRequest):
                self._host.leave_channel(self.connection, output.channel)
            elif isinstance(output, Frame):
                self._send(output)
        return bool(outputs)

    async def _run(self, outputs: Sequence[Output]) -> bool:
        """Send the frames and run the requests of the session, in order; whether the
        client learns something (see :meth:`subscribe`)."""
        news = False
        for output in outputs:
            if isinstance(output, SubscribeRequest):
                news = await self._subscribe(output) or news
            elif isinstance(output, PublishRequest):
                await self._publish(output)
            elif isinstance(output, UnsubscribeRequest):
                self._host.leave_channel(self.connection, output.channel,
                                         output.subscription)
            elif isinstance(output, HistoryRequest):
                await self._history(output)
                news = True
            elif isinstance(output, PresenceRequest):
                await self._read_presence(output)
                news = True
            else:
                self._send(output)
                news = True
        return news

    def _send(self, frame: Frame) -> None:
        self.connection.send(frame)

    async def _subscribe(self, request: SubscribeRequest) -> bool:
        host, session, connection = self._host, self.session, self.connection
        channel = request.channel
        try:
            options = host.rules.options(channel)
            # Server-side too: the client resumes the subscription as its own later,
            # through these checks, so one they refuse would not last anyway.
            await host.check_subscribe(self.identity, channel)
        except ChannelError as exc:
            if request.server:
                logger.info("%r: server-side subscribe to %r refused: %s", self, channel,
                            exc)
                return False
            self._send(session.subscribe_failed(request, None, exc))
            return True
        subscription = session.subscribe_started(request)
        try:
            # Join the live stream first, then read history: a publication racing with
            # the read lands in the subscription's ``pending`` and is de-duplicated at
            # the seam, never lost.
            await host.join_channel(connection, channel, subscription)
            # Present from now on; the backend write goes along with the history read.
            joined = (host.join_presence(connection, channel, subscription,
                                         member_of(session.id, self.identity))
                      if options.presence else None)
            result = await host.read_history(channel, request.since, options, request.last)
            if joined is not None:
                await joined
        except Exception as exc:
            if session.subscriptions.get(channel) is subscription:
                host.leave_channel(connection, channel, subscription)
            if not (isinstance(exc, BackendError) and exc.temporary):
                logger.error("%r: subscribe to %r failed", self, channel, exc_info=exc)
            failed = session.subscribe_failed(request, subscription, exc)
            if request.server:  # the client never asked: nothing to answer
                logger.warning("%r: server-side subscribe to %r failed: %s", self,
                               channel, exc)
                return False
            self._send(failed)
            return True
        if connection.closing:
            return False
        ready = session.subscribe_ready(request, subscription, recovered=result.recovered,
                                        position=result.position,
                                        publications=result.publications)
        if ready is None:
            return False  # unsubscribed while history was read
        if request.since is not None:
            host.stats.resumed(self.transport, result.recovered, len(result.publications))
        self._send(ready.subscribed)
        connection.replay(ready.replay)
        for publication in ready.live:
            self._send(publication)
        host.presence_live(connection, channel, subscription)
        connection.news = connection.news or ready.news
        return ready.news

    async def _history(self, request: HistoryRequest) -> None:
        host, frame = self._host, request.frame
        try:
            options = host.rules.options(frame.channel)
            await host.check_subscribe(self.identity, frame.channel)
            page = await host.read_page(frame.channel, frame.since, options, frame.limit,
                                        frame.reverse)
        except Exception as exc:
            if not isinstance(exc, ChannelError | BackendError):
                logger.error("%r: history of %r failed", self, frame.channel, exc_info=exc)
            self._send(self.session.history_failed(request, exc))
            return
        self._send(self.session.history_ready(request, page))

    async def _publish(self, request: PublishRequest) -> None:
        host, frame = self._host, request.frame
        try:
            options = host.rules.options(frame.channel)
            await host.check_publish(self.identity, frame.channel, options)
            position = await host.publish_for_client(frame.channel, frame.data, frame.key,
                                                     options)
        except (ChannelError, BackendError) as exc:
            self._send(self.session.publish_failed(request, exc))
            return
        self._send(self.session.published(request, position))

    async def _read_presence(self, request: PresenceRequest) -> None:
        try:
            count, members = await self._host.read_presence(self.identity,
                                                            request.frame.channel)
        except (ChannelError, BackendError) as exc:
            self._send(self.session.presence_failed(request, exc))
            return
        self._send(self.session.presence_result(request, count, members))

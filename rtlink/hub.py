"""The hub: channel rules, auth hooks, the live channel index and fan-out.

One hub serves every transport of a server process. Each client is a
:class:`~rtlink.peer.Peer` (its protocol session and its outbound
:class:`~rtlink.connection.Connection`); the hub never knows which transport carries
it. The channel index maps each channel with local subscribers to their connections;
fan-out encodes a publication once per codec in use among them and hands the same
bytes to every connection's queue — no task and no encoding per recipient — and one
flush per loop iteration writes every connection that has something queued.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeAlias

from .auth import Authenticator, as_authenticator, expires_at_of
from .backends import Backend, HistoryResult, create_backend
from .channels import ChannelOptions, ChannelRules
from .codecs import Codec
from .codes import CloseCode, ErrorCode
from .connection import Connection, Sink
from .control import ControlPlane
from .errors import AuthenticationError, ChannelError, FrameError, InvalidInput
from .limits import AddressSlots, PublishLimits
from .peer import Peer
from .positions import Position
from .presence import MAX_MEMBERS, Diff, Member, PresenceInfo
from .protocol import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    HistoryPage,
    Ping,
    PresenceDiff,
    Publication,
    encode_frame,
    validate_channel,
)
from .roster import Roster
from .server_api import ServerApi
from .session import WEBSOCKET, ConnectionMode, Subscription
from .stats import HubStats

__all__ = ["Hub", "Authenticate", "Authorize"]

logger = logging.getLogger("rtlink.hub")

#: Longest pause between two flushes of the fan-out (see :meth:`Hub.schedule_flush`).
_MAX_FLUSH_GAP = 0.010
#: A channel with at most this many local subscribers is written in line whenever no
#: flush is pending, however busy the hub was, and that fan-out is not timed: its
#: publications go to few connections, so waiting would save no write (per-user
#: channels).
_FEW_SUBSCRIBERS = 4

#: ``authenticate(request) -> identity``: the transport's request object (an
#: ``aiohttp.web.Request``) in, any identity out (None for anonymous); raise
#: :class:`~rtlink.errors.AuthenticationError` to refuse. May be a coroutine function.
#: The hub wraps it in a :class:`~rtlink.auth.CallableAuthenticator`.
Authenticate: TypeAlias = Callable[[Any], Any]
#: ``authorize(identity, channel) -> bool``; may be a coroutine function.
Authorize: TypeAlias = Callable[[Any, str], "bool | Awaitable[bool]"]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _LiveChannel:
    """The connections of this node subscribed to one channel."""

    __slots__ = ("subscribers", "ready")

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.subscribers: dict[Connection, Subscription] = {}
        # Done once the backend delivers this channel to us; None after it succeeded
        # (a per-user channel lives long: the finished task would be ~1 KB of it).
        self.ready: asyncio.Future[None] | None = ready


class Hub:
    """The heart of an rtlink server: publish, subscribe and fan-out over a backend.

    Args:
        backend: a backend URL (``"memory://"``, ``"redis://host:6379/0"``) or object.
        channels: channel pattern → :class:`ChannelOptions`, first match wins. Channels
            matching no pattern are refused. Default: every channel, default options.
        authenticate: hook called with the request of each new connection; returns
            an identity or raises :class:`~rtlink.errors.AuthenticationError`: an
            :class:`~rtlink.auth.Authenticator` (the built-in one is
            :class:`~rtlink.auth.TokenAuth`: JWTs and tickets) or a plain callable. An
            identity with an ``expires_at`` (:func:`~rtlink.auth.expires_at_of`) is
            refused once expired, and its connection is closed with 4003 then.
        authorize_subscribe: hook ``(identity, channel) -> bool`` for subscriptions.
        authorize_publish: hook ``(identity, channel) -> bool`` for client publishes,
            consulted only on channels whose options allow client publishing.
        max_message_size: largest transport message a client may send, in bytes.
        max_subscriptions: subscriptions one connection may hold.
        outbound_limit: bytes queued for one connection before it is closed as a
            slow consumer (it then resumes; nothing is lost).
        ping_interval: seconds between server pings.
        pong_timeout: extra seconds of silence before a client is presumed dead.
        poll_timeout: seconds a long poll is held when there is nothing to send
            (at most ``ping_interval``); keep it below the read timeout of proxies
            in front (often 30-60 s).
        publish_rate: client publishes allowed per second on average, per connection
            (for ``POST {path}/send``: per client address and identity subject), or
            None for no limit. A publish over the limit is refused with ``error`` 429
            (temporary: clients resend it later, in order); the connection stays open.
            See :mod:`rtlink.limits`.
        publish_burst: client publishes allowed at once before ``publish_rate``
            applies (the token bucket's size).
        max_connections_per_ip: WebSocket, SSE and long-poll connections open at
            once from one client address (``request.remote``), or None for no limit;
            beyond it a connection is refused with 1013 (try again later). Behind a
            proxy every client has the proxy's address unless a middleware restores
            the client's (e.g. from ``X-Forwarded-For``): limit at the proxy instead
            (nginx ``limit_conn``).
        websocket_compression: accept permessage-deflate when a client offers it
            (browsers always do). Off by default, as in engine.io 4 and Centrifugo:
            a compressed connection keeps zlib state once it has sent a message
            (up to ~256 KiB for the default window, by zlib's own formula; an idle
            uncompressed connection costs ~14 KiB), and its frames are compressed
            per connection instead of framed once per flush; rtlink's frames are
            small JSON or msgpack, where deflate saves little.
        presence_ttl: seconds a member of a presence channel stays in the backend
            without a refresh (the node refreshes its members every third of it). A
            node that dies without saying so has its members announced as leaves
            within ``presence_ttl * 4/3`` (docs/operations.md, "Presence").
        presence_grace: seconds a client of SSE or long polling stays present after
            its request ended, so that the next request (on any node) finds it still
            there; None: ``pong_timeout``.
        control_timeout: seconds the server API (:meth:`disconnect`,
            :meth:`unsubscribe`, :meth:`subscribe`, :meth:`channels`) waits for the
            answers of the other nodes at most; a node that does not answer in time
            is left out of the result.

    Use it as ``async with Hub() as hub:`` or through :func:`rtlink.attach`, which
    starts and closes it with the aiohttp application.
    """

    def __init__(
        self,
        backend: str | Backend = "memory://",
        *,
        channels: Mapping[str, ChannelOptions] | None = None,
        authenticate: Authenticator | Authenticate | None = None,
        authorize_subscribe: Authorize | None = None,
        authorize_publish: Authorize | None = None,
        max_message_size: int = 64 * 1024,
        max_subscriptions: int = 256,
        outbound_limit: int = 1024 * 1024,
        ping_interval: float = 25.0,
        pong_timeout: float = 10.0,
        poll_timeout: float = 25.0,
        publish_rate: float | None = 50.0,
        publish_burst: int = 100,
        max_connections_per_ip: int | None = None,
        websocket_compression: bool = False,
        presence_ttl: float = 30.0,
        presence_grace: float | None = None,
        control_timeout: float = 2.0,
    ) -> None:
        if publish_rate is not None and not 0 < publish_rate < float("inf"):
            raise ValueError(f"publish_rate must be > 0 (None for no limit), not {publish_rate}")
        if publish_burst < 1:
            raise ValueError(f"publish_burst must be >= 1, not {publish_burst}")
        if max_connections_per_ip is not None and max_connections_per_ip < 1:
            raise ValueError("max_connections_per_ip must be >= 1 (None for no limit), "
                             f"not {max_connections_per_ip}")
        self.backend: Backend = create_backend(backend)
        # The backend's synchronous publish, if it has one (the memory backend's).
        self._publish_now = self.backend.publish_now
        self.rules = ChannelRules(channels)
        self.max_message_size = max_message_size
        self.max_subscriptions = max_subscriptions
        self.outbound_limit = outbound_limit
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.poll_timeout = poll_timeout
        self.publish_limits = PublishLimits(publish_rate, publish_burst)
        self.connection_slots = AddressSlots(max_connections_per_ip)
        self.websocket_compression = websocket_compression
        if not control_timeout > 0:
            raise ValueError(f"control_timeout must be > 0, not {control_timeout}")
        self.control_timeout = control_timeout
        self._api = ServerApi(self)
        self._authenticate = authenticate
        self._authenticator = None if authenticate is None else as_authenticator(authenticate)
        self._authorize_subscribe = authorize_subscribe
        self._authorize_publish = authorize_publish
        self._peers: set[Peer] = set()
        # Peers whose identity expires, each with the timer that closes it (4003).
        self._expiry_timers: dict[Peer, asyncio.TimerHandle] = {}
        self._live: dict[str, _LiveChannel] = {}
        # Backend (un)subscribe calls of one channel run strictly in order.
        self._backend_ops: dict[str, asyncio.Future[None]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._started = False
        # Connections with frames to write at the next flush, in order of arrival.
        self._dirty: list[Connection] = []
        self._flush_handle: asyncio.Handle | None = None
        # True while a publication is handed out to be written in line (see
        # _on_publication): marking a connection dirty then schedules nothing.
        self._in_line = False
        self._flush_ended = 0.0
        self._flush_took = 0.0
        #: What the hub counts about itself (:mod:`rtlink.stats`; shown by
        #: :mod:`rtlink.metrics`).
        self.stats = HubStats()
        #: This node's presence (:mod:`rtlink.roster`).
        self.roster = Roster(self.backend, self._send_diff, ttl=presence_ttl,
                             grace=pong_timeout if presence_grace is None else presence_grace)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend and the heartbeat. Idempotent."""
        if self._started:
            return
        self._started = True
        if self._authenticator is not None:  # e.g. TokenAuth claims tickets in the backend
            self._authenticator.bind(self.backend)
        self.roster.start()
        await self.backend.start(self._on_publication, self._on_lost)
        control = self._api.control = ControlPlane(self.backend, self._api.handlers(),
                                                   timeout=self.control_timeout)
        await control.start()
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._heartbeat_loop(), name="rtlink-heartbeat"
        )

    async def close(self, code: int = CloseCode.GOING_AWAY,
                    reason: str = "server shutting down") -> None:
        """Close every connection (by default telling clients to reconnect), then the backend."""
        if not self._started:
            return
        self._started = False
        await self.close_connections(code, reason)
        if self._api.control is not None:
            await self._api.control.close()
            self._api.control = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self.roster.close()  # after the connections: their leaves are sent
        await self.backend.close()

    async def close_connections(self, code: int = CloseCode.GOING_AWAY,
                                reason: str = "server shutting down") -> None:
        """Close every connection with ``code`` and wait (bounded) until they are closed."""
        connections = [peer.connection for peer in self._peers]
        for connection in connections:
            connection.close(code, reason)
        if connections:
            await asyncio.gather(*(c.wait_closed() for c in connections))

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- public API ------------------------------------------------------------------

    @property
    def connections(self) -> frozenset[Peer]:
        """The clients connected to this node right now."""
        return frozenset(self._peers)

    async def publish(self, channel: str, data: Any, *, key: str | None = None) -> Position:
        """Publish ``data`` to ``channel`` and return its position.

        Args:
            channel: a channel name matching one of the hub's channel patterns.
            data: any JSON value (see :func:`rtlink.protocol.validate_data`).
            key: idempotency key; publishing again with the same key within the
                channel's ``key_ttl`` returns the first position and publishes nothing.

        Raises:
            ChannelError: invalid or unknown channel, data no codec can carry, or a
                key that is not 1-128 characters.
            BackendError: the backend failed; nothing was published.
        """
        options = self.rules.check_publication(channel, data, key)
        if self._publish_now is not None:
            return self._publish_in_process(channel, data, key, options, "server")
        return await self._publish(channel, data, key, options)

    async def presence(self, channel: str, *, limit: int = MAX_MEMBERS) -> PresenceInfo:
        """Who is subscribed to ``channel`` on every node (a channel whose options say
        ``presence=True``).

        Args:
            channel: the channel.
            limit: members listed at most (``count`` is the whole number).

        Raises:
            ChannelError: unknown channel (404), or one that keeps no presence (400).
            BackendError: the backend failed.
        """
        self._presence_options(channel)
        count, members = await self.roster.read(channel, limit)
        return PresenceInfo(channel, count, tuple(members))

    def _presence_options(self, channel: str) -> ChannelOptions:
        options = self.rules.options(channel)
        if not options.presence:
            raise ChannelError(ErrorCode.BAD_REQUEST,
                               f"channel {channel!r} keeps no presence")
        return options

    async def publish_many(self, channels: Iterable[str], data: Any, *,
                           key: str | None = None) -> list[Position]:
        """Publish the same ``data`` to each of ``channels``; their positions, in order.

        Every channel is checked before anything is published: one invalid or
        unknown channel publishes nothing. The publications are then made at once;
        they are independent (one per channel, each with its own position), and
        ``key`` de-duplicates each on its own channel, so a call that failed midway
        is safely made again with the same key.

        Raises:
            ChannelError: an invalid or unknown channel, or data or a key as for
                :meth:`publish`.
            BackendError: the backend failed for a channel (others may have been
                published: repeat with a ``key``).
        """
        names = list(channels)
        checked = [(channel, self.rules.check_publication(channel, data, key))
                   for channel in names]
        if self._publish_now is not None:
            return [self._publish_in_process(channel, data, key, options, "server")
                    for channel, options in checked]
        return list(await asyncio.gather(*(self._publish(channel, data, key, options)
                                           for channel, options in checked)))

    async def channels(self) -> dict[str, int]:
        """The channels with subscribers on any node, each with its number of
        subscribed connections (summed over the nodes that answered within
        ``control_timeout``).

        Raises:
            BackendUnavailable: the backend cannot carry the request to the nodes.
        """
        return await self._api.channels()

    async def disconnect(self, user: str, *, reconnect: bool = False,
                         reason: str = "disconnected by the server") -> int:
        """Close every connection of ``user`` (the subject of their identity), on every
        node; how many were closed.

        With ``reconnect=False`` the close code is 4503 DISCONNECTED: clients stop.
        With ``reconnect=True`` it is 4002 RECONNECT: clients reconnect at once,
        authenticating again (e.g. after their permissions changed). A long-polling
        client is reached only while one of its polls is held: between two polls it
        has no connection (see docs/http-api.md). An unknown user is no error: 0.

        Raises:
            BackendUnavailable: the backend cannot carry the request to the nodes.
        """
        return await self._api.disconnect(user, reconnect=reconnect, reason=reason)

    async def unsubscribe(self, user: str, channel: str, *,
                          code: int = ErrorCode.FORBIDDEN,
                          reason: str = "unsubscribed by the server") -> int:
        """End ``channel``'s subscription of every connection of ``user``, on every
        node; how many connections had it.

        The clients are told with an ``unsubscribed`` frame (``code`` and ``reason``
        are theirs to show) and drop the subscription. It is not a ban: to keep a
        user out of a channel, refuse it in ``authorize_subscribe`` as well.

        Raises:
            ChannelError: an invalid or unknown channel.
            BackendUnavailable: the backend cannot carry the request to the nodes.
        """
        return await self._api.unsubscribe(user, channel, code=code, reason=reason)

    async def subscribe(self, user: str, channel: str) -> int:
        """Subscribe every connection of ``user`` to ``channel`` (a server-side
        subscription), on every node; how many connections hold it afterwards.

        Each client is told with a ``subscribed`` frame marked ``server`` (then the
        channel's live publications) and keeps the subscription as its own: it
        resumes it after a reconnect, with its own ``subscribe``. So the checks of a
        client's subscribe apply here too (the channel's rules, ``{user}`` owners,
        ``authorize_subscribe``): a connection they refuse is left out of the count,
        and is not told. A connection subscribed already counts, unchanged; one at its
        ``max_subscriptions`` is left out. A long-polling client is reached only while
        one of its polls is held.

        Raises:
            ChannelError: an invalid or unknown channel.
            BackendUnavailable: the backend cannot carry the request to the nodes.
        """
        return await self._api.subscribe(user, channel)

    def check_channel(self, channel: str) -> None:
        """Raise :class:`~rtlink.errors.ChannelError` unless ``channel`` is a valid
        name that a channel rule allows (422 or 404)."""
        try:
            validate_channel(channel)
        except FrameError as exc:
            raise ChannelError(exc.error_code, str(exc)) from None
        self.rules.options(channel)

    def local_channels(self) -> dict[str, int]:
        """The channels with subscribers on this node, each with how many."""
        return {channel: len(live.subscribers) for channel, live in self._live.items()}

    @property
    def authenticate_hook(self) -> Authenticator | Authenticate | None:
        """The ``authenticate`` hook the hub was made with (e.g. a
        :class:`~rtlink.auth.TokenAuth`), or None."""
        return self._authenticate

    @property
    def authenticator(self) -> Authenticator | None:
        """The ``authenticate`` hook as an :class:`~rtlink.auth.Authenticator` (a plain
        callable wrapped), or None."""
        return self._authenticator

    async def authenticate(self, request: Any) -> Any:
        """Run the authenticate hook for a new connection's request (None without a hook).

        An identity that expired within the authenticator's ``leeway`` (a
        :class:`~rtlink.auth.TokenAuth`'s; none for plain callables) is returned: the
        transports then refuse the connection with 4003 before accepting it (see
        :func:`rtlink.transports.http.authenticate_or_refuse`), so a client whose token
        ran out between two requests of an HTTP transport reconnects with a fresh one
        instead of stopping. One that expired before that is refused (4500).

        Raises:
            AuthenticationError: the hook refused, or the identity it returned expired
                before that (:func:`~rtlink.auth.expires_at_of`).
        """
        authenticator = self._authenticator
        if authenticator is None:
            return None
        identity = await authenticator.authenticate(request)
        expires_at = expires_at_of(identity)
        if expires_at is not None and expires_at + authenticator.leeway <= time.time():
            raise AuthenticationError("credentials expired")
        return identity

    def accept(self, codec: Codec, identity: Any, sink: Sink, transport: str,
               mode: ConnectionMode = WEBSOCKET, *, address: str | None = None,
               fallback: str | None = None, session_id: str | None = None) -> Peer:
        """Register a new connection and send it ``welcome``. Called by transports, with
        the client's ``address`` if they know it, the ``fallback`` query parameter
        of its request (why the client fell back to this transport; only counted),
        and the session id its client carries over from its previous request (HTTP
        transports: the ``session`` query parameter, protocol.md 6.8)."""
        peer = Peer(self, codec, identity, sink, transport, mode, address, session_id)
        self._peers.add(peer)
        self.stats.connection_accepted(transport, fallback)
        peer.start()
        expires_at = expires_at_of(identity)
        if expires_at is not None and not peer.connection.closing:
            # One timer per expiring peer (cancelled in peer_closed), no scan of all.
            loop = asyncio.get_running_loop()
            self._expiry_timers[peer] = loop.call_at(
                loop.time() + (expires_at - time.time()), self._expire, peer)
        return peer

    # --- for peers (rtlink.peer.PeerHost) ------------------------------------------------

    async def check_subscribe(self, identity: Any, channel: str) -> None:
        """Raise :class:`~rtlink.errors.ChannelError` unless ``identity`` may subscribe
        ``channel``: 404, or 401/403 by the channel's rules, or 403 by the
        ``authorize_subscribe`` hook."""
        self.rules.check_access(identity, channel)  # 404, or 401/403 by the channel's rules
        if self._authorize_subscribe is not None and not await _maybe_await(
            self._authorize_subscribe(identity, channel)
        ):
            raise ChannelError(ErrorCode.FORBIDDEN, f"not allowed to subscribe to {channel!r}")

    async def check_publish(self, identity: Any, channel: str, options: ChannelOptions) -> None:
        """Raise :class:`~rtlink.errors.ChannelError` unless ``identity`` may publish to
        ``channel`` (whose ``options`` are given): the channel's rules, then the
        ``authorize_publish`` hook."""
        if not options.client_publish:
            raise ChannelError(ErrorCode.FORBIDDEN, f"clients may not publish to {channel!r}")
        self.rules.check_access(identity, channel)
        if self._authorize_publish is not None and not await _maybe_await(
            self._authorize_publish(identity, channel)
        ):
            raise ChannelError(ErrorCode.FORBIDDEN, f"not allowed to publish to {channel!r}")

    async def _publish(self, channel: str, data: Any, key: str | None,
                       options: ChannelOptions, source: str = "server") -> Position:
        """Publish through the backend; ``source`` (``"server"`` or ``"client"``) is
        for the counters."""
        started = time.perf_counter()
        try:
            result = await self.backend.publish(channel, data, key=key, policy=options.policy)
        except Exception:
            self.stats.publish_failed(source, time.perf_counter() - started)
            raise
        self.stats.published(source, result.duplicate, time.perf_counter() - started)
        return result.position

    def _publish_in_process(self, channel: str, data: Any, key: str | None,
                            options: ChannelOptions, source: str) -> Position:
        """:meth:`_publish` through the backend's :attr:`~Backend.publish_now`: no
        coroutine and no result object (about 5 % of the instructions of a per-user
        publication, callgrind)."""
        publish_now = self._publish_now
        assert publish_now is not None
        started = time.perf_counter()
        try:
            position, duplicate = publish_now(channel, data, key, options.policy)
        except Exception:
            self.stats.publish_failed(source, time.perf_counter() - started)
            raise
        self.stats.published(source, duplicate, time.perf_counter() - started)
        return position

    async def publish_for_client(self, channel: str, data: Any, key: str | None,
                                 options: ChannelOptions) -> Position:
        """Publish a client's publication (checked already) through the backend."""
        if self._publish_now is not None:
            return self._publish_in_process(channel, data, key, options, "client")
        return await self._publish(channel, data, key, options, source="client")

    async def history(self, channel: str, since: Position | None = None, *,
                      limit: int = DEFAULT_HISTORY_LIMIT, reverse: bool = False
                      ) -> HistoryPage:
        """Read a page of ``channel``'s kept history (server side: no access rules).

        Forward: at most ``limit`` publications after ``since`` (or from the oldest
        kept), oldest first; the next page is after the last one, and there is more
        while its offset is below the page's ``position``. ``reverse``: at most
        ``limit`` before ``since`` (or from the latest), newest first; the next page
        is before the last one. ``recovered`` is False when ``since`` was not a
        position of the channel's current history (another epoch, past its end) or,
        forward, the publications right after it are gone: the page then starts from
        the oldest kept (forward) or the latest (reverse).

        Args:
            channel: a channel name matching one of the hub's channel patterns.
            since: where the page starts (exclusive), or None.
            limit: publications at most, 1 to 1000.
            reverse: read backwards, newest first.

        Raises:
            InvalidInput: ``limit`` is out of range.
            ChannelError: invalid or unknown channel.
            BackendError: the backend failed.
        """
        if not 0 < limit <= MAX_HISTORY_LIMIT:
            raise InvalidInput(f"limit must be from 1 to {MAX_HISTORY_LIMIT}, not {limit}")
        options = self.rules.options(channel)
        return await self.read_page(channel, since, options, limit, reverse)

    async def read_history(self, channel: str, since: Position | None,
                           options: ChannelOptions, last: int | None = None
                           ) -> HistoryResult:
        """Read what a subscription replays through the backend, timed: the gap after
        ``since`` when it can be filled; otherwise, with ``since`` or ``last``, the
        latest publications the channel keeps, at most ``last`` (``recovered`` is False
        when ``since`` was given; protocol.md 6.2)."""
        started = time.perf_counter()
        try:
            return await self.backend.replay(channel, since, policy=options.policy,
                                             last=last)
        finally:
            self.stats.history_read(time.perf_counter() - started)

    async def read_page(self, channel: str, since: Position | None, options: ChannelOptions,
                        limit: int, reverse: bool) -> HistoryPage:
        """Read a page of history through the backend, timed; newest first if
        ``reverse``."""
        started = time.perf_counter()
        try:
            result = await self.backend.page(channel, since, policy=options.policy,
                                             limit=limit, reverse=reverse)
        finally:
            self.stats.history_read(time.perf_counter() - started)
        publications = result.publications[::-1] if reverse else result.publications
        return HistoryPage(channel, tuple(publications), result.position, result.recovered)

    async def join_channel(self, connection: Connection, channel: str,
                           subscription: Subscription) -> None:
        """Add a connection to a channel's live index; the first one subscribes the node.
        Returns once the backend delivers the channel to this node."""
        live = self._live.get(channel)
        if live is None:
            live = self._live[channel] = _LiveChannel(
                self._backend_op(channel, self.backend.subscribe)
            )
        live.subscribers[connection] = subscription
        ready = live.ready
        if ready is None:
            return
        # Shielded: one subscriber giving up must not cancel the others' wait.
        await asyncio.shield(ready)
        if live.ready is ready:
            live.ready = None

    def leave_channel(self, connection: Connection, channel: str,
                      subscription: Subscription | None = None) -> None:
        """Remove a connection from a channel; the last one unsubscribes the node. A
        ``subscription`` that joined the channel's presence leaves it: at once on a
        WebSocket, after the grace period on the HTTP transports."""
        member = subscription.member if subscription is not None else None
        if subscription is not None and member is not None:
            subscription.member = None
            grace = not connection.mode.subscribe_frames
            if subscription.presence and grace:
                self.roster.park(member.client, channel)
            elif subscription.presence:
                self.roster.unwatch(channel)
            self.roster.leave(channel, member, grace=grace)
        live = self._live.get(channel)
        if live is None or live.subscribers.pop(connection, None) is None:
            return
        if not live.subscribers:
            del self._live[channel]
            self._backend_op(channel, self.backend.unsubscribe)

    def peer_closed(self, peer: Peer) -> None:
        """Drop a closing peer from every index (synchronous, idempotent)."""
        if peer in self._peers:
            self._peers.remove(peer)
            self.stats.connection_closed(peer.transport, peer.connection.close_code)
        timer = self._expiry_timers.pop(peer, None)
        if timer is not None:
            timer.cancel()
        subscriptions = peer.session.subscriptions
        for channel, subscription in list(subscriptions.items()):
            self.leave_channel(peer.connection, channel, subscription)
        subscriptions.clear()

    def join_presence(self, connection: Connection, channel: str,
                      subscription: Subscription, member: Member) -> Awaitable[None]:
        """``subscription`` joins ``channel``'s presence as ``member``, and gets its
        events if it asked for them; done once the backend has it."""
        subscription.member = member
        if subscription.presence:
            self.roster.watch(channel)
        return self.roster.join(channel, member)

    def presence_live(self, connection: Connection, channel: str,
                      subscription: Subscription) -> None:
        """``subscription`` went live: send it the diffs kept since its client's
        previous request here ended (HTTP transports, see :meth:`Roster.park`)."""
        member = subscription.member
        if member is None or not subscription.presence:
            return
        for diff in self.roster.unpark(member.client, channel):
            connection.send(PresenceDiff(diff.channel, diff.count, diff.joins, diff.leaves,
                                         diff.truncated))

    async def read_presence(self, identity: Any, channel: str) -> tuple[int, list[Member]]:
        """Who is in ``channel``, for a client with ``identity``: authorized like a
        subscribe (404, 401, 403), then 400 unless the channel keeps presence."""
        await self.check_subscribe(identity, channel)
        self._presence_options(channel)
        return await self.roster.read(channel, MAX_MEMBERS)

    def _send_diff(self, diff: Diff) -> None:
        """Roster listener: one channel's diff to its event subscribers here, encoded
        once per codec."""
        live = self._live.get(diff.channel)
        if live is None:
            return
        frame = PresenceDiff(diff.channel, diff.count, diff.joins, diff.leaves,
                             diff.truncated)
        encoded: dict[Codec, bytes] = {}
        sent = 0
        for connection, subscription in live.subscribers.items():
            # Not before the subscription is live: its client reads presence after it.
            if not subscription.presence or subscription.pending is not None:
                continue
            codec = connection.codec
            data = encoded.get(codec)
            if data is None:
                data = encoded[codec] = encode_frame(codec, frame)
            connection.news = True
            connection.deliver(data)
            sent += 1
        self.stats.presence_diffs_sent += sent

    def _backend_op(self, channel: str,
                    op: Callable[[str], Awaitable[None]]) -> asyncio.Future[None]:
        previous = self._backend_ops.get(channel)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await op(channel)

        task = asyncio.ensure_future(run())
        self._backend_ops[channel] = task

        def done(finished: asyncio.Future[None]) -> None:
            if self._backend_ops.get(channel) is finished:
                del self._backend_ops[channel]
            if not finished.cancelled() and finished.exception() is not None:
                logger.warning("backend %s(%r) failed: %s", op.__name__, channel,
                               finished.exception())

        task.add_done_callback(done)
        return task

    def _expire(self, peer: Peer) -> None:
        """The peer's credentials expired: it reconnects with fresh ones."""
        self._expiry_timers.pop(peer, None)
        peer.connection.close(CloseCode.TOKEN_EXPIRED,
                              "credentials expired; reconnect with fresh ones")

    # --- fan-out ---------------------------------------------------------------------

    def schedule_flush(self, connection: Connection) -> None:
        """Have ``connection``'s queue written at the next flush.

        One flush writes every dirty connection: one ``transport.write`` each, however
        many frames queued since the last. It runs at once when the hub is idle (in
        line, see :meth:`_on_publication`); after a flush that took T it waits until T
        has passed since (at most ``_MAX_FLUSH_GAP``): under load each write then
        carries several publications, and the CPU spent per delivery falls as the rate
        rises, with no delay added at light load.
        """
        self._dirty.append(connection)
        if self._flush_handle is None and not self._in_line:
            loop = asyncio.get_running_loop()
            due = self._flush_ended + self._flush_took
            self._flush_handle = (loop.call_soon(self._flush) if due <= loop.time()
                                  else loop.call_at(due, self._flush))

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        loop = asyncio.get_running_loop()
        began = loop.time()
        framed: dict[bytes | tuple[bytes, ...], bytes] = {}
        for connection in dirty:
            try:
                connection.flush(framed)
            except Exception:  # one broken transport must not starve the others
                logger.exception("%r: flush failed", connection)
                connection.abort()
        ended = loop.time()
        self._flush_ended = ended
        self._flush_took = min(ended - began, _MAX_FLUSH_GAP)

    def _on_publication(self, publication: Publication) -> None:
        """Backend listener: hand one publication to every local subscriber.

        When no flush is pending and either the last one ended long enough ago or the
        channel has few subscribers here, the publication is written in line, before
        this returns: a publish loop over per-user channels reaches each user at once,
        not after the loop (which never yields with the memory backend). Otherwise it
        queues, and the next flush writes what queued meanwhile in one message per
        connection: under load, a write then carries several publications.
        """
        live = self._live.get(publication.channel)
        if live is None:
            return
        if self._flush_handle is None and not self._in_line:
            if len(live.subscribers) <= _FEW_SUBSCRIBERS:
                # A few writes, not timed: the pacing is for fan-outs that take long,
                # and reading the loop's clock twice is ~4 % of a per-user publication.
                self._fan_out_in_line(live, publication)
                if self._dirty:
                    self._flush()
                return
            loop = asyncio.get_running_loop()
            began = loop.time()
            if began >= self._flush_ended + self._flush_took:
                # Timed like a flush: a long one makes the next publications queue.
                self._fan_out_in_line(live, publication)
                if self._dirty:
                    self._flush()
                else:
                    ended = loop.time()
                    self._flush_ended = ended
                    self._flush_took = min(ended - began, _MAX_FLUSH_GAP)
                return
        self._fan_out(live, publication, None)

    def _fan_out_in_line(self, live: _LiveChannel, publication: Publication) -> None:
        """:meth:`_fan_out` writing at once where nothing else waits; what cannot be
        written now is queued without scheduling a flush (the caller flushes it)."""
        self._in_line = True
        try:
            self._fan_out(live, publication, {})
        finally:
            self._in_line = False

    def _fan_out(self, live: _LiveChannel, publication: Publication,
                 framed: dict[bytes | tuple[bytes, ...], bytes] | None) -> None:
        """Hand ``publication`` to every subscriber of ``live``, encoded once per codec:
        written at once where nothing else waits when ``framed`` (the wire bytes of
        this publication, per codec, for :meth:`Connection.deliver_now`) is given,
        else queued for the next flush."""
        # This loop runs once per delivery: locals, and the codec of the previous
        # subscriber (almost always the same one) before the dict.
        position = publication.position
        epoch, offset = position.epoch, position.offset
        encoded: dict[Codec, bytes] = {}
        last_codec: Codec | None = None
        frame = b""
        # Counted once per publication, not per delivery (minus the rare repeat below).
        self.stats.deliveries += len(live.subscribers)
        # A copy, as a delivery may close its connection (which leaves the channel); a
        # dict's copy, as its items then come without a tuple each to allocate.
        for connection, subscription in live.subscribers.copy().items():
            if subscription.pending is not None:
                subscription.pending.append(publication)
                continue
            known = subscription.position
            # positions.is_after, written out: this runs once per delivery.
            if known is not None and known.offset >= offset and known.epoch == epoch:
                self.stats.deliveries -= 1
                continue  # sent already (a backend catching up may repeat the seam)
            codec = connection.codec
            if codec is not last_codec:
                last_codec = codec
                cached = encoded.get(codec)
                if cached is None:
                    cached = encoded[codec] = encode_frame(codec, publication)
                frame = cached
            subscription.position = position
            connection.news = True
            if framed is None:
                connection.deliver(frame)
            else:
                connection.deliver_now(frame, framed)

    def _on_lost(self, channel: str) -> None:
        """Backend listener: publications of ``channel`` were lost on their way to this
        node. Its subscribers are asked to reconnect; resubscribing from their positions
        tells them ``recovered = false`` and carries on with the live stream."""
        live = self._live.get(channel)
        if live is None:
            return
        for connection in list(live.subscribers):
            connection.close(CloseCode.RECONNECT,
                             f"publications of {channel!r} were lost; resubscribe")

    # --- heartbeat -------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """One task for all connections: ping them, and close the silent ones."""
        while True:
            await asyncio.sleep(self.ping_interval)
            deadline = time.monotonic() - self.ping_interval - self.pong_timeout
            pings: dict[Codec, bytes] = {}
            for peer in list(self._peers):
                connection = peer.connection
                mode = connection.mode
                if mode.heartbeat and peer.session.last_seen < deadline:
                    connection.close(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat from client")
                    continue
                if not mode.writer:
                    continue  # a poll is answered soon anyway; a ping would only end it early
                codec = connection.codec
                ping = pings.get(codec)
                if ping is None:
                    ping = pings[codec] = encode_frame(codec, Ping())
                connection.deliver(ping)

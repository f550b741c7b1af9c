"""The asyncio client: connect, subscribe, publish, and survive disconnects.

The client keeps everything needed to resume on its side: each subscription's last
position and an outbox of unacknowledged publishes. When a connection drops it
reconnects with full-jitter backoff, re-subscribes every channel with
``since=position`` (the server replays the gap) and re-sends the outbox with the
same idempotency keys (the server applies each publish once). Nothing about a client
needs to survive on the server, so any node can take the reconnect.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import attrs
from yarl import URL

from ..backoff import full_jitter
from ..codecs import get_codec
from ..codes import CloseCode, ErrorCode, is_temporary, should_reconnect
from ..errors import (
    ClientClosed,
    FrameError,
    ProtocolError,
    PublishError,
    SubscribeError,
)
from ..protocol import (
    PROTOCOL_VERSION,
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
    decode_server_message,
    encode_frame,
    validate_channel,
    validate_data,
    validate_key,
)
from .events import Events
from .outbox import Outbox, OutboxEntry
from .subscription import Subscription
from .transports import TRANSPORTS, ClientTransport, TransportClosed

__all__ = ["Client", "ConnectionState", "StateChange", "forget_transports"]

logger = logging.getLogger("rtlink.client")

TokenSource = str | Callable[[], "str | Awaitable[str]"]


#: How long a transport that worked for an origin is tried first by new clients.
REMEMBER_TRANSPORT_FOR = 600.0
_working_transports: dict[str, tuple[str, float]] = {}


def _remember_transport(url: URL, name: str) -> None:
    _working_transports[str(url.origin())] = (name, time.monotonic() + REMEMBER_TRANSPORT_FOR)


def _remembered_transport(url: URL) -> str | None:
    name, until = _working_transports.get(str(url.origin()), ("", 0.0))
    return name if until > time.monotonic() else None


def forget_transports() -> None:
    """Forget which transports worked for which origins (new clients start at the top)."""
    _working_transports.clear()


class ConnectionState(enum.StrEnum):
    """The client's connection state, with the same names as the JavaScript client."""

    DISCONNECTED = "disconnected"
    """Not connected; waiting before the next attempt (or not started)."""
    CONNECTING = "connecting"
    """Opening a transport and waiting for the server's ``welcome``."""
    CONNECTED = "connected"
    """``welcome`` received; subscriptions and publishes flow."""
    CLOSED = "closed"
    """Stopped for good: :meth:`Client.close` was called or the server said stop."""


@attrs.frozen
class StateChange:
    """Emitted as ``"state"`` on every state change.

    Attributes:
        new_state: the state entered.
        old_state: the state left.
        code: the close code that caused it, if a connection ended.
        reason: the close reason, if any.
        transport: the transport being tried (connecting) or in use (connected).
    """

    new_state: ConnectionState
    old_state: ConnectionState
    code: int | None = None
    reason: str = ""
    transport: str | None = None


def describe_failure(exc: BaseException) -> str:
    """Why a connection attempt failed, in words for state events and logs: the HTTP
    status a server or proxy answered with rather than aiohttp's exception text."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        # 101 with wrong headers (a proxy that answers the upgrade itself) has a message
        # that tells what; other statuses come with a generic one.
        detail = f": {exc.message}" if exc.status == 101 else ""
        return f"WebSocket handshake failed: HTTP {exc.status}{detail}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status} {exc.message}".rstrip()
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Client:
    """An rtlink client for asyncio.

    Args:
        url: where the server mounted rtlink, e.g. ``"http://127.0.0.1:8080/rt"``
            (``ws://`` works too).
        codec: ``"json"`` or ``"msgpack"``.
        token: a token string, or a (coroutine) function returning one, called again
            before every connection attempt (so after 4003, token expired, the client
            reconnects with a fresh one); sent as the ``Authorization: Bearer`` header
            of every request, never in the URL.
        transports: transport names to use, in order of preference: ``"websocket"``,
            ``"sse"``, ``"longpoll"``. The client falls back along this list when a
            transport fails, and moves back up when a better one works again.
        outbox_limit: most publishes waiting for acknowledgement; beyond it
            :meth:`publish` raises :class:`~rtlink.errors.OutboxFull`.
        backoff_base: first reconnect delay bound in seconds (doubles per attempt).
        backoff_cap: largest reconnect delay bound in seconds.
        connect_timeout: seconds to open a transport and receive ``welcome``; a
            transport that does not deliver it in time has failed.
        probe_interval: while on a fallback transport, seconds between attempts to
            get back to a better one.
        session: an aiohttp ``ClientSession`` to use (else one is created and closed).

    Use as ``async with Client(url) as client:``.
    """

    def __init__(
        self,
        url: str,
        *,
        codec: str = "json",
        token: TokenSource | None = None,
        transports: tuple[str, ...] | list[str] = ("websocket", "sse", "longpoll"),
        outbox_limit: int = 1000,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        connect_timeout: float = 3.0,
        probe_interval: float = 60.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = URL(url)
        self.codec = get_codec(codec)
        unknown = [name for name in transports if name not in TRANSPORTS]
        if unknown or not transports:
            raise ValueError(f"unknown transports {unknown}; known: {', '.join(TRANSPORTS)}")
        self.transports = tuple(transports)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.connect_timeout = connect_timeout
        self.probe_interval = probe_interval
        self._worked: set[str] = set()  # transports that got a welcome in this client
        self._switch_to: int | None = None
        self._probe: asyncio.Task[None] | None = None
        self._token = token
        self._session = session
        self._own_session = session is None
        self._outbox = Outbox(outbox_limit)
        self._subscriptions: dict[str, Subscription] = {}
        self._events = Events("client", ("state",))
        self._state = ConnectionState.DISCONNECTED
        self._state_changed = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._reconnect_now = asyncio.Event()
        self._closing = False
        self._closed_by: ClientClosed | None = None
        # Per connection:
        self._transport: ClientTransport | None = None
        self._welcome: Welcome | None = None
        self._requests: dict[int, Subscription | OutboxEntry | None] = {}
        self._outgoing: list[bytes] = []
        self._outgoing_ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._next_id = 0
        # Retries after temporary refusals, per kind ("resend": the outbox, "resubscribe"):
        # the pending timer (at most one per kind, cancelled with the connection) and the
        # backoff attempt (rounds since a request of that kind last succeeded).
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._retry_attempts = {"resend": 0, "resubscribe": 0}

    # --- state -----------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._state

    @property
    def transport(self) -> str | None:
        """Name of the transport in use while connected, else None."""
        return self._transport.name if self._transport and self._welcome else None

    @property
    def session_id(self) -> str | None:
        """The server's session id of the current connection (for logs), else None."""
        return self._welcome.session if self._welcome else None

    def on(self, event: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback`` with a :class:`StateChange` on ``"state"``. Returns a remover."""
        return self._events.on(event, callback)

    def _set_state(self, state: ConnectionState, code: int | None = None, reason: str = "",
                   transport: str | None = None) -> None:
        if state is self._state:
            return
        change = StateChange(state, self._state, code, reason, transport)
        self._state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        logger.debug("client %s -> %s (%s %s)", change.old_state.value, state.value, code, reason)
        self._events.emit("state", change)

    async def wait_for_state(self, *states: ConnectionState) -> ConnectionState:
        """Wait until the client is in one of ``states``; return it."""
        while self._state not in states:
            await self._state_changed.wait()
        return self._state

    # --- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        """Start connecting (and reconnecting) and wait for the first connection.

        Raises:
            ClientClosed: the client stopped before connecting (e.g. unauthorized).
        """
        if self._closed_by is not None:
            raise self._closed_by
        if self._run_task is None:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._run_task = asyncio.get_running_loop().create_task(
                self._run(), name="rtlink-client"
            )
        state = await self.wait_for_state(ConnectionState.CONNECTED, ConnectionState.CLOSED)
        if state is ConnectionState.CLOSED:
            assert self._closed_by is not None
            raise self._closed_by

    async def close(self) -> None:
        """Close the connection and stop. Pending publishes fail with ClientClosed."""
        if self._closing:
            # The server may have stopped the client already (e.g. 4500): the session
            # is still ours to release.
            if self._closed_by is not None and self._own_session and self._session is not None:
                await self._session.close()
            return
        self._closing = True
        transport = self._transport
        if transport is not None:
            try:
                async with asyncio.timeout(2):
                    await transport.close(CloseCode.NORMAL)
            except Exception:
                transport.abort()
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        self._drop_connection()
        self._stop(CloseCode.NORMAL, "client closed")
        if self._own_session and self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def reconnect(self) -> None:
        """Drop the current connection (if any) and reconnect at once, resuming."""
        self._reconnect_now.set()
        if self._transport is not None:
            self._transport.abort()

    # --- subscribe / publish -----------------------------------------------------------

    def subscribe(self, channel: str, *, since: Position | None = None) -> Subscription:
        """Subscribe to ``channel``; with ``since`` resume after that position.

        Returns at once; ``async with`` the subscription (or ``await
        sub.wait_subscribed()``) to wait for the server's confirmation.

        Raises:
            ValueError: invalid channel name, or already subscribed to it.
        """
        try:
            validate_channel(channel)
        except FrameError as exc:
            raise ValueError(str(exc)) from None
        if channel in self._subscriptions:
            raise ValueError(f"already subscribed to {channel!r}")
        subscription = Subscription(self, channel, since)
        if self._closed_by is not None:
            subscription._fail(self._closed_by)
            return subscription
        self._subscriptions[channel] = subscription
        if self._state is ConnectionState.CONNECTED:
            self._subscriptions_changed(subscription)
        return subscription

    def _subscriptions_changed(self, subscription: Subscription | None = None) -> None:
        transport = self._transport
        if transport is not None and transport.carries_subscriptions:
            transport.subscriptions_changed()
        elif subscription is not None:
            self._send_subscribe(subscription)

    async def _unsubscribe(self, subscription: Subscription) -> None:
        if self._subscriptions.get(subscription.channel) is subscription:
            del self._subscriptions[subscription.channel]
            if subscription.request_id is not None:
                self._requests.pop(subscription.request_id, None)
            if self._state is ConnectionState.CONNECTED:
                if self._transport is not None and self._transport.carries_subscriptions:
                    self._transport.subscriptions_changed()
                else:
                    request_id = self._new_request(None)
                    self._send(Unsubscribe(request_id, subscription.channel))
        subscription._end()

    async def publish(self, channel: str, data: Any, *, key: str | None = None) -> Position:
        """Publish ``data`` to ``channel``; return its position once the server acks.

        While disconnected the publish waits in the outbox and is sent on reconnect;
        every attempt carries the same idempotency key (``key`` or a random one), so
        the server applies it exactly once. Cancelling the call withdraws the publish
        if it was not sent yet (if it was, the server may still apply it).

        Raises:
            OutboxFull: too many publishes are waiting already.
            PublishError: the server refused it (e.g. forbidden, too large).
            ClientClosed: the client stopped before the publish was acknowledged.
            ValueError: invalid channel name, data or key (1-128 characters).
        """
        if self._closed_by is not None:
            raise self._closed_by
        try:
            validate_channel(channel)
            validate_data(data)
            validate_key(key)
        except FrameError as exc:
            raise ValueError(str(exc)) from None
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        entry = OutboxEntry(channel, data, key or uuid.uuid4().hex, future)
        self._outbox.add(entry)
        if self._state is ConnectionState.CONNECTED:
            self._send_publish(entry)
        try:
            return await future
        finally:
            self._outbox.remove(entry)
            if entry.request_id is not None:
                self._requests.pop(entry.request_id, None)

    @property
    def outbox_size(self) -> int:
        """Publishes waiting for acknowledgement."""
        return len(self._outbox)

    # --- connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0  # backoff attempts since the last working connection
        strikes = 0  # consecutive failures of the current transport
        index = self._initial_transport()
        fallback: str | None = None  # why the client fell back to transports[index]
        while not self._closing:
            self._reconnect_now.clear()  # a reconnect() asked before this attempt is served
            name = self.transports[index]
            self._set_state(ConnectionState.CONNECTING, transport=name)
            code: int = CloseCode.ABNORMAL
            reason = ""
            try:
                await self._connection(name, fallback)
            except TransportClosed as exc:
                code, reason = exc.code, exc.reason
            except ProtocolError as exc:
                code, reason = CloseCode.ABNORMAL, f"server sent an invalid message: {exc}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = describe_failure(exc)
            except Exception as exc:  # e.g. the token function failed: retry, never die
                logger.exception("rtlink client connection attempt failed")
                reason = f"{type(exc).__name__}: {exc}"
            if self._closing:
                # close() is closing the transport politely (aiohttp ends this read as
                # the close begins): an abort now would cut its close frame off.
                return
            connected = self._welcome is not None
            fallback = None  # said by the attempt it explains, not by later ones
            self._drop_connection()
            if not should_reconnect(code):
                self._stop(code, reason)
                return
            switch_to, self._switch_to = self._switch_to, None
            if switch_to is not None:  # a background probe found a better transport
                self._set_state(ConnectionState.DISCONNECTED, code, "switching transport")
                index, strikes, attempt = switch_to, 0, 0
                continue
            # A transport that never answered, or that went silent, has failed; one
            # that worked before gets a second chance before it is given up.
            failed = not connected or code == CloseCode.HEARTBEAT_TIMEOUT
            strikes = strikes + 1 if failed else 0
            if connected:
                attempt = 0
            self._set_state(ConnectionState.DISCONNECTED, code, reason)
            if failed and (name not in self._worked or strikes >= 2):
                if index + 1 < len(self.transports):
                    logger.info("rtlink: %s failed (%s %s); falling back to %s",
                                name, code, reason, self.transports[index + 1])
                    index, strikes = index + 1, 0
                    # The next transport's first request says why (8.7): servers count it.
                    fallback = "silent" if connected else "health_check"
                    continue  # the next transport at once: no backoff
                index, strikes = self._initial_transport(), 0  # all failed: start over
            delay = full_jitter(attempt, self.backoff_base, self.backoff_cap)
            attempt += 1
            logger.info("rtlink client disconnected (%s %s); reconnecting in %.2fs",
                        code, reason, delay)
            try:
                async with asyncio.timeout(delay):
                    await self._reconnect_now.wait()
            except TimeoutError:
                pass

    def _initial_transport(self) -> int:
        """Index of the transport to try first: the best one known to work here."""
        for index, name in enumerate(self.transports):
            if name in self._worked:
                return index
        remembered = _remembered_transport(self.url)
        if remembered in self.transports:
            return self.transports.index(remembered)
        return 0

    async def _connection(self, name: str, fallback: str | None = None) -> None:
        assert self._session is not None
        # One deadline for opening the transport and receiving the server's first frame.
        async with asyncio.timeout(self.connect_timeout):
            transport = await self._open(name, fallback)
            self._transport = transport
            message = await transport.receive()
        first = decode_server_message(self.codec, message)
        if first and isinstance(first[0], Close):
            # e.g. authentication refused: obey the code (stop or reconnect).
            raise TransportClosed(first[0].code, first[0].reason)
        if not first or not isinstance(first[0], Welcome):
            raise ProtocolError("the first frame from the server must be welcome")
        welcome = first[0]
        if welcome.version != PROTOCOL_VERSION:
            transport.abort()
            raise TransportClosed(CloseCode.UNSUPPORTED_PROTOCOL,
                                  f"server speaks protocol version {welcome.version}")
        self._welcome = welcome
        self._worked.add(name)
        _remember_transport(self.url, name)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(transport))
        # Re-send before announcing CONNECTED: a state callback that subscribes must
        # not have its subscription sent twice (the second would be refused with 409).
        self._on_connected()
        self._set_state(ConnectionState.CONNECTED, transport=name)
        if self.transports.index(name) > 0:
            self._probe = asyncio.get_running_loop().create_task(self._probe_better(name))
        for frame in first[1:]:
            self._handle(frame)
        silence = welcome.ping_interval + welcome.pong_timeout
        while True:
            try:
                async with asyncio.timeout(silence):
                    message = await transport.receive()
            except TimeoutError:
                transport.abort()
                raise TransportClosed(CloseCode.HEARTBEAT_TIMEOUT, "server went silent") from None
            for frame in decode_server_message(self.codec, message):
                self._handle(frame)

    async def _open(self, name: str, fallback: str | None = None) -> ClientTransport:
        """Open transport ``name``; it works only once the server's first frame arrived.

        The caller reads that first message: an ``open`` event alone proves nothing,
        since proxies accept connections and then stay silent. ``fallback`` is why the
        client fell back to this transport, if it did (``"health_check"`` or
        ``"silent"``, protocol.md 8.7).
        """
        assert self._session is not None
        headers = {}
        token = await self._get_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with asyncio.timeout(self.connect_timeout):
            return await TRANSPORTS[name].open(
                self._session, self.url, self.codec, headers, self.connect_timeout,
                self._cursor, fallback,
            )

    def _cursor(self) -> dict[str, Position | None]:
        # A channel refused for now waits out of the cursor until its retry, or every
        # poll would be answered at once with the same error.
        return {channel: sub.position for channel, sub in self._subscriptions.items()
                if not sub.held}

    async def _probe_better(self, current: str) -> None:
        """While on a fallback transport, try the better ones now and then; switch to the
        first that answers (resuming from positions, so the switch loses nothing)."""
        better = self.transports[: self.transports.index(current)]
        while True:
            await asyncio.sleep(self.probe_interval)
            for index, name in enumerate(better):
                try:
                    transport = await self._open(name)
                    try:
                        async with asyncio.timeout(self.connect_timeout):
                            first = decode_server_message(self.codec, await transport.receive())
                    finally:
                        transport.abort()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.debug("rtlink: probe of %s failed: %s", name, exc)
                    continue
                if first and isinstance(first[0], Welcome):
                    logger.info("rtlink: %s works again; switching from %s", name, current)
                    self._switch_to = index
                    if self._transport is not None:
                        self._transport.abort()
                    return

    async def _get_token(self) -> str | None:
        token = self._token
        if token is None or isinstance(token, str):
            return token
        value = token()
        return await value if inspect.isawaitable(value) else value

    def _on_connected(self) -> None:
        transport = self._transport
        assert transport is not None
        if not transport.carries_subscriptions:
            for subscription in self._subscriptions.values():
                self._send_subscribe(subscription)
        elif transport.requested_channels != tuple(self._cursor()):
            # Subscribed (or unsubscribed) while the request was on its way.
            transport.subscriptions_changed()
        for entry in self._outbox.unsent():
            self._send_publish(entry)

    def _drop_connection(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()
        self._welcome = None
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        for timer in self._retry_timers.values():
            timer.cancel()  # the next connection sends everything again after welcome
        self._retry_timers.clear()
        self._outgoing.clear()
        self._requests.clear()
        self._outbox.reset_attempts()
        for subscription in self._subscriptions.values():
            subscription.active = subscription.held = False
            subscription.request_id = None

    def _stop(self, code: int, reason: str) -> None:
        closed = ClientClosed(code, reason)
        self._closed_by = closed
        self._closing = True
        for entry in self._outbox:
            if not entry.future.done():
                entry.future.set_exception(closed)
        for subscription in list(self._subscriptions.values()):
            subscription._fail(closed)
        self._subscriptions.clear()
        self._set_state(ConnectionState.CLOSED, code, reason)

    # --- outbound --------------------------------------------------------------------

    def _new_request(self, target: Subscription | OutboxEntry | None) -> int:
        self._next_id += 1
        self._requests[self._next_id] = target
        return self._next_id

    def _send(self, frame: Frame) -> None:
        self._outgoing.append(encode_frame(self.codec, frame))
        self._outgoing_ready.set()

    def _send_subscribe(self, subscription: Subscription) -> None:
        subscription.request_id = self._new_request(subscription)
        subscription.active = False
        self._send(Subscribe(subscription.request_id, subscription.channel, subscription.position))

    def _send_publish(self, entry: OutboxEntry) -> None:
        assert self._welcome is not None
        request_id = self._new_request(entry)
        frame = Publish(request_id, entry.channel, entry.data, entry.key)
        encoded = encode_frame(self.codec, frame)
        if len(encoded) > self._welcome.max_message_size:
            del self._requests[request_id]
            if not entry.future.done():
                entry.future.set_exception(PublishError(
                    ErrorCode.TOO_LARGE,
                    f"publish of {len(encoded)} bytes exceeds the server's limit of "
                    f"{self._welcome.max_message_size}",
                ))
            return
        entry.request_id = request_id
        self._outgoing.append(encoded)
        self._outgoing_ready.set()

    async def _write_loop(self, transport: ClientTransport) -> None:
        assert self._welcome is not None
        limit = self._welcome.max_message_size
        outgoing = self._outgoing
        try:
            while True:
                await self._outgoing_ready.wait()
                self._outgoing_ready.clear()
                while outgoing:
                    message, _ = self.codec.take_batch(outgoing, limit)
                    await transport.send(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("send failed: %s", exc)
            transport.abort()  # the read loop sees the end and reconnects

    # --- inbound ---------------------------------------------------------------------

    def _handle(self, frame: Frame | FrameError) -> None:
        if isinstance(frame, Publication):
            subscription = self._subscriptions.get(frame.channel)
            if subscription is not None and subscription.active:
                subscription._deliver(frame)
        elif isinstance(frame, Ack):
            target = self._requests.pop(frame.id, None)
            if isinstance(target, OutboxEntry):
                self._retry_attempts["resend"] = 0
                if not target.future.done() and frame.position is not None:
                    target.future.set_result(frame.position)
        elif isinstance(frame, Subscribed):
            if frame.id is None:
                # The transport's request carried the subscription (SSE, long polling).
                target = self._subscriptions.get(frame.channel)
                if target is not None and target.active and frame.recovered:
                    return  # a poll re-confirming what is known: nothing to report
            else:
                target = self._requests.pop(frame.id, None)
            if isinstance(target, Subscription):
                self._retry_attempts["resubscribe"] = 0
                resumed = target.position is not None
                target._confirm(frame.recovered, frame.position, resumed)
        elif isinstance(frame, Error):
            self._on_error(frame)
        elif isinstance(frame, Ping):
            # Over SSE there is no way back on the stream and no need to answer (6.6).
            if self._transport is not None and not self._transport.carries_subscriptions:
                self._send(Pong())
        elif isinstance(frame, Close):
            raise TransportClosed(frame.code, frame.reason)
        elif isinstance(frame, FrameError):
            logger.warning("ignoring an invalid frame from the server: %s", frame)

    def _on_error(self, frame: Error) -> None:
        target: Subscription | OutboxEntry | None = None
        if frame.id is not None:
            target = self._requests.pop(frame.id, None)
        elif frame.channel is not None:
            # On transports that carry subscriptions, their errors have no request id;
            # every request subscribes again, so a confirmed channel can be refused too.
            target = self._subscriptions.get(frame.channel)
        if target is None:
            logger.warning("server error %s: %s", frame.code, frame.message)
            return
        temporary = is_temporary(frame.code)
        if isinstance(target, OutboxEntry):
            target.request_id = None
            if temporary:
                self._retry_later("resend", self._resend_outbox)
            elif not target.future.done():
                target.future.set_exception(PublishError(frame.code, frame.message))
        else:
            target.request_id = None
            if temporary:
                target.active = False
                target.held = True
                self._retry_later("resubscribe", self._resubscribe_pending)
            else:
                if self._subscriptions.get(target.channel) is target:
                    del self._subscriptions[target.channel]
                target._fail(SubscribeError(frame.code, frame.message))

    def _retry_later(self, kind: str, action: Callable[[], None]) -> None:
        """Run ``action`` (a retry of ``kind``) after a full-jitter delay, unless one is
        pending already.

        Refusals come in bursts: a flushed outbox over the publish rate is refused frame
        by frame. One retry round answers the whole burst (``action`` resends everything
        refused so far), so the backoff attempt grows once per round, not per frame.
        """
        if kind in self._retry_timers:
            return
        attempt = self._retry_attempts[kind]
        self._retry_attempts[kind] = attempt + 1

        def retry() -> None:
            del self._retry_timers[kind]
            action()

        delay = full_jitter(attempt, self.backoff_base, self.backoff_cap)
        self._retry_timers[kind] = asyncio.get_running_loop().call_later(delay, retry)

    def _resend_outbox(self) -> None:
        if self._state is ConnectionState.CONNECTED:
            for entry in self._outbox.unsent():
                self._send_publish(entry)

    def _resubscribe_pending(self) -> None:
        for subscription in self._subscriptions.values():
            subscription.held = False
        if self._state is ConnectionState.CONNECTED:
            if self._transport is not None and self._transport.carries_subscriptions:
                self._transport.subscriptions_changed()
                return
            for subscription in self._subscriptions.values():
                if not subscription.active and subscription.request_id is None:
                    self._send_subscribe(subscription)

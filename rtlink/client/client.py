"""The asyncio client: connect, subscribe, publish, and survive disconnects.

The client keeps everything needed to resume on its side: each subscription's last
position and an outbox of unacknowledged publishes. When a connection drops it
reconnects with full-jitter backoff, re-subscribes every channel with
``since=position`` (the server replays the gap) and re-sends the outbox with the
same idempotency keys (the server applies each publish once). Nothing about a client
needs to survive on the server, so any node can take the reconnect.

This module is only the asyncio runner. The decisions are made without I/O, by a
:class:`~rtlink.client.negotiation.Negotiation` (which transport to try next, and
when) and a :class:`~rtlink.client.core.ClientCore` (subscriptions, outbox, requests,
what each frame means); the runner opens transports, reads and writes, keeps the
timers and reports the state.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import aiohttp
import attrs
from yarl import URL

from ..codecs import get_codec
from ..codes import CloseCode
from ..errors import ClientClosed, FrameError, InvalidInput, ProtocolError
from ..positions import Position, validate_last
from ..presence import PresenceInfo
from ..protocol import (
    DEFAULT_HISTORY_LIMIT,
    LAST_ALL,
    HistoryPage,
    Welcome,
    decode_server_message,
)
from .core import ClientCore, HistoryRead, PresenceRead, Read
from .events import Events
from .negotiation import Negotiation
from .subscription import Subscription
from .transports import TRANSPORTS, ClientTransport, TransportClosed

__all__ = ["Client", "ConnectionState", "StateChange", "describe_failure"]

_T = TypeVar("_T")
_R = TypeVar("_R", bound=Read)

logger = logging.getLogger("rtlink.client")

TokenSource = str | Callable[[], "str | Awaitable[str]"]


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
        session: the aiohttp ``ClientSession`` to make the HTTP requests with (else
            the client creates one and closes it).

    Raises:
        InvalidInput: an unknown codec or transport, or an outbox limit below 1.

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
        try:
            self.codec = get_codec(codec)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        unknown = [name for name in transports if name not in TRANSPORTS]
        if unknown or not transports:
            raise InvalidInput(f"unknown transports {unknown}; known: {', '.join(TRANSPORTS)}")
        self.transports = tuple(transports)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.connect_timeout = connect_timeout
        self.probe_interval = probe_interval
        self._negotiation = Negotiation(self.transports, str(self.url.origin()),
                                        backoff_base=backoff_base, backoff_cap=backoff_cap)
        self._core = ClientCore(
            self.codec, send=self._send, subscriptions_changed=self._subscriptions_changed,
            retry_later=self._retry_later, adopt=self._adopt, outbox_limit=outbox_limit,
            backoff_base=backoff_base, backoff_cap=backoff_cap,
        )
        self._token = token
        self._http = session
        self._own_http = session is None
        self._events = Events("client", ("state", "subscription"))
        self._state = ConnectionState.DISCONNECTED
        self._state_changed = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._reconnect_now = asyncio.Event()
        self._closing = False
        # Per connection: the transport, what waits to be written, the task writing
        # it, the probe of better transports, and the timers of retry rounds.
        self._transport: ClientTransport | None = None
        self._last_session: str | None = None  # the latest welcome's session id
        self._outgoing: list[bytes] = []
        self._outgoing_ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}

    # --- state -----------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._state

    @property
    def transport(self) -> str | None:
        """Name of the transport in use while connected, else None."""
        return self._transport.name if self._transport and self._core.connected else None

    @property
    def session_id(self) -> str | None:
        """The id the server gave the current connection (``welcome.session``; for
        logs), else None."""
        welcome = self._core.welcome
        return welcome.session if welcome else None

    def on(self, event: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback`` with a :class:`StateChange` on ``"state"``, or with a new
        :class:`Subscription` on ``"subscription"``: the server subscribed this client
        to a channel (:meth:`rtlink.Hub.subscribe`). Register the subscription's own
        callbacks (or start iterating it) in the callback; the client resumes it across
        reconnects like its own. Returns a remover.

        Raises:
            InvalidInput: ``event`` is not ``"state"`` or ``"subscription"``.
        """
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
        if self._core.closed is not None:
            raise self._core.closed
        if self._run_task is None:
            if self._http is None:
                self._http = aiohttp.ClientSession()
            self._run_task = asyncio.get_running_loop().create_task(
                self._run(), name="rtlink-client"
            )
        state = await self.wait_for_state(ConnectionState.CONNECTED, ConnectionState.CLOSED)
        if state is ConnectionState.CLOSED:
            assert self._core.closed is not None
            raise self._core.closed

    async def close(self) -> None:
        """Close the connection and stop. Pending publishes fail with ClientClosed."""
        if self._closing:
            # The server may have stopped the client already (e.g. 4500): the HTTP
            # client is still ours to release.
            if self._core.closed is not None and self._own_http and self._http is not None:
                await self._http.close()
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
        if self._own_http and self._http is not None:
            await self._http.close()

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

    def subscribe(self, channel: str, *, since: Position | None = None,
                  last: int | Literal["all"] | None = None,
                  presence: bool = False) -> Subscription:
        """Subscribe to ``channel``; with ``since`` resume after that position; with
        ``presence``, also get the channel's join/leave events (``"presence"`` events
        of the subscription; a channel whose options keep presence).

        ``last=N`` replays at most the ``N`` latest publications the channel keeps
        before going live (``"all"``: every one it keeps); with ``since`` it bounds
        the replay when the gap after ``since`` cannot be filled (then everything kept
        is replayed, and ``recovered`` is False). Replayed publications are delivered
        as messages, in order.

        Returns at once; ``async with`` the subscription (or ``await
        sub.wait_subscribed()``) to wait for the server's confirmation.

        Raises:
            InvalidInput: invalid channel name or ``last``, or already subscribed to it
                (a ``ValueError`` too).
        """
        count = LAST_ALL if last == "all" else last
        try:
            validate_last(count)
        except FrameError:
            raise InvalidInput(f'last must be an integer from 1 to 2**53-1 or "all", '
                               f"not {last!r}") from None
        subscription = Subscription(channel, since, self._core.unsubscribe, count,
                                    presence=presence)
        self._core.subscribe(subscription)
        return subscription

    async def history(self, channel: str, since: Position | None = None, *,
                      limit: int = DEFAULT_HISTORY_LIMIT, reverse: bool = False
                      ) -> HistoryPage:
        """Read a page of ``channel``'s kept history (no subscription needed; the
        server authorizes it as a subscription).

        Forward: at most ``limit`` publications after ``since`` (or from the oldest
        kept), oldest first; read on after the last one while its offset is below
        ``page.position.offset``. ``reverse``: at most ``limit`` before ``since`` (or
        from the latest), newest first. ``page.recovered`` is False when ``since`` was
        not honoured (another epoch, or trimmed: the page starts from what is kept).
        While disconnected the read waits for the connection; a temporary refusal
        (503) is retried after a delay.

        Raises:
            ReadError: the server refused it (404, 401, 403).
            ClientClosed: the client stopped first.
            InvalidInput: invalid channel name, or ``limit`` not from 1 to 1000.
        """
        future: asyncio.Future[HistoryPage] = asyncio.get_running_loop().create_future()
        return await self._read(HistoryRead(channel, since, limit, reverse, future), future,
                                self._core.history)

    async def presence(self, channel: str) -> PresenceInfo:
        """Who is subscribed to ``channel`` (a channel whose options keep presence): its
        member count and up to 1,000 members. Waits for a connection if there is none;
        sent again on a new one if the connection ends first, and after a delay if
        refused for now (503).

        Raises:
            ReadError: the server refused (unknown channel 404, not allowed 401/403,
                no presence kept 400).
            ClientClosed: the client stopped first.
            InvalidInput: invalid channel name.
        """
        future: asyncio.Future[PresenceInfo] = asyncio.get_running_loop().create_future()
        return await self._read(PresenceRead(channel, future), future, self._core.presence)

    async def _read(self, read: _R, future: asyncio.Future[_T],
                    start: Callable[[_R], None]) -> _T:
        start(read)
        try:
            return await future
        finally:
            self._core.forget_read(read)

    def _adopt(self, channel: str) -> Subscription:
        """The server subscribed this client to ``channel``: its subscription, made
        known to the application (the core keeps it)."""
        subscription = Subscription(channel, None, self._core.unsubscribe)
        self._events.emit("subscription", subscription)
        return subscription

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
            InvalidInput: invalid channel name, data or key (1-128 characters), or a
                publish with this key is waiting already (a ``ValueError`` too).
        """
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        entry = self._core.publish(channel, data, key, future)
        try:
            return await future
        finally:
            self._core.withdraw(entry)

    @property
    def outbox_size(self) -> int:
        """Publishes waiting for acknowledgement."""
        return len(self._core.outbox)

    # --- connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        negotiation = self._negotiation
        negotiation.restart()
        while not self._closing:
            self._reconnect_now.clear()  # a reconnect() asked before this attempt is served
            name = negotiation.transport
            self._set_state(ConnectionState.CONNECTING, transport=name)
            code: int = CloseCode.ABNORMAL
            reason = ""
            try:
                await self._connection(name, negotiation.fallback)
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
            connected = self._core.connected
            self._drop_connection()
            switching = negotiation.switching  # a background probe found a better one
            delay = negotiation.ended(code, connected, requested=self._reconnect_now.is_set())
            if delay is None:
                self._stop(code, reason)
                return
            if switching:
                reason = "switching transport"
            self._set_state(ConnectionState.DISCONNECTED, code, reason)
            if negotiation.fallback is not None:
                logger.info("rtlink: %s failed (%s %s); falling back to %s",
                            name, code, reason, negotiation.transport)
            if not delay:
                continue  # the next transport, or a better one, at once
            logger.info("rtlink client disconnected (%s %s); reconnecting in %.2fs",
                        code, reason, delay)
            try:
                async with asyncio.timeout(delay):
                    await self._reconnect_now.wait()
            except TimeoutError:
                pass

    async def _connection(self, name: str, fallback: str | None = None) -> None:
        """One connection on transport ``name``, until it ends (by an exception)."""
        # One deadline for opening the transport and receiving the server's first frame.
        async with asyncio.timeout(self.connect_timeout):
            transport = await self._open(name, fallback)
            self._transport = transport
            message = await transport.receive()
        frames = decode_server_message(self.codec, message)
        if not frames:
            raise ProtocolError("the first frame must be welcome")
        refused = self._core.start(frames[0], transport.carries_subscriptions,
                                   transport.requested_channels)
        if refused is not None:
            raise TransportClosed(*refused)
        welcome = self._core.welcome
        assert welcome is not None
        # Carried over to the next stream or poll request: the client stays one member
        # of its presence channels across requests (protocol.md 6.8).
        self._last_session = welcome.session
        self._negotiation.connected()
        # The core sent the subscriptions and the outbox before CONNECTED is announced:
        # a state callback that subscribes must not have its subscription sent twice
        # (the second would be refused with 409).
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(transport))
        self._set_state(ConnectionState.CONNECTED, transport=name)
        if self._negotiation.better():
            self._probe = asyncio.get_running_loop().create_task(self._probe_better(name))
        self._receive(frames[1:])
        silence = welcome.ping_interval + welcome.pong_timeout
        while True:
            try:
                async with asyncio.timeout(silence):
                    message = await transport.receive()
            except TimeoutError:
                transport.abort()
                raise TransportClosed(CloseCode.HEARTBEAT_TIMEOUT, "server went silent") from None
            self._receive(decode_server_message(self.codec, message))

    def _receive(self, frames: list[Any]) -> None:
        for frame in frames:
            closed = self._core.receive(frame)
            if closed is not None:
                raise TransportClosed(*closed)

    async def _open(self, name: str, fallback: str | None = None) -> ClientTransport:
        """Open transport ``name``; it works only once the server's first frame arrived.

        The caller reads that first message: an ``open`` event alone proves nothing,
        since proxies accept connections and then stay silent. ``fallback`` is why the
        client fell back to this transport, if it did (``"health_check"`` or
        ``"silent"``, protocol.md 8.7).
        """
        assert self._http is not None
        headers = {}
        token = await self._get_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with asyncio.timeout(self.connect_timeout):
            return await TRANSPORTS[name].open(
                self._http, self.url, self.codec, headers, self.connect_timeout,
                self._core.request_cursor, fallback, presence=self._core.presence_channels,
                session=lambda: self._last_session,
            )

    async def _probe_better(self, current: str) -> None:
        """While on a fallback transport, try the better ones now and then; switch to the
        first that answers (resuming from positions, so the switch loses nothing)."""
        better = self._negotiation.better()
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
                    self._negotiation.probe_passed(index)
                    if self._transport is not None:
                        self._transport.abort()
                    return

    async def _get_token(self) -> str | None:
        token = self._token
        if token is None or isinstance(token, str):
            return token
        value = token()
        return await value if inspect.isawaitable(value) else value

    def _drop_connection(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()
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
        self._core.end()

    def _stop(self, code: int, reason: str) -> None:
        self._closing = True
        self._core.stop(ClientClosed(code, reason))
        self._set_state(ConnectionState.CLOSED, code, reason)

    # --- what the core asks for --------------------------------------------------------

    def _send(self, message: bytes) -> None:
        self._outgoing.append(message)
        self._outgoing_ready.set()

    def _subscriptions_changed(self) -> None:
        if self._transport is not None:
            self._transport.subscriptions_changed()

    def _retry_later(self, kind: str, delay: float) -> None:
        self._retry_timers[kind] = asyncio.get_running_loop().call_later(
            delay, self._retry, kind)

    def _retry(self, kind: str) -> None:
        del self._retry_timers[kind]
        self._core.retry(kind)

    async def _write_loop(self, transport: ClientTransport) -> None:
        welcome = self._core.welcome
        assert welcome is not None
        limit = welcome.max_message_size
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

"""Client transports: each opens one connection to the server and moves messages.

A transport knows nothing about frames; the client decodes what :meth:`receive`
returns. Transports are found by name in :data:`TRANSPORTS`.

The contract (:class:`ClientTransport`) has the same names in the JavaScript client
(``js-client/src/transports.js``), there with a leading underscore (the build shortens
those): ``send``/``_send``, ``close``/``_close``, ``subscriptions_changed``/
``_subscriptionsChanged``, ``requested_channels``/``_requestedChannels``.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from ..aiohttp_internals import client_websocket_transport
from ..codecs import Codec
from ..codes import CloseCode
from ..positions import Cursor, format_cursor

__all__ = [
    "ClientTransport",
    "WebSocketTransport",
    "EventSourceTransport",
    "LongPollTransport",
    "TRANSPORTS",
    "TransportClosed",
    "CursorSource",
    "PresenceSource",
    "SessionSource",
]

logger = logging.getLogger("rtlink.client")


class TransportClosed(Exception):
    """The transport ended. ``code`` is the close code seen (1006 if none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"transport closed with {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


#: Returns the client's cursor: its subscriptions with the position each one reached,
#: and the ``last`` of those that have one (protocol.md 4.2).
CursorSource = Callable[[], tuple[Cursor, Mapping[str, int]]]
#: Returns the channels whose presence events the client's subscriptions ask for.
PresenceSource = Callable[[], Collection[str]]
#: Returns the session id to carry over to the next stream or poll request, if any.
SessionSource = Callable[[], "str | None"]


class ClientTransport(abc.ABC):
    """One open connection to an rtlink server.

    Attributes:
        name: the transport's name, as in ``Client(transports=[...])``.
        carries_subscriptions: True when subscriptions travel in the transport's
            requests (SSE, long polling) instead of ``subscribe`` frames; the client
            then calls :meth:`subscriptions_changed` when they change.
    """

    name: ClassVar[str]
    carries_subscriptions: ClassVar[bool] = False
    #: For transports that carry subscriptions: the channels of the latest request.
    requested_channels: tuple[str, ...] = ()

    @classmethod
    @abc.abstractmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        base_url: URL,
        codec: Codec,
        headers: Mapping[str, str],
        timeout: float,
        cursor: CursorSource,
        fallback: str | None = None,
        *,
        presence: PresenceSource = frozenset,
        session: SessionSource = lambda: None,
    ) -> ClientTransport:
        """Open a connection to the server mounted at ``base_url``.

        Args:
            http: the aiohttp client session to make the requests with.
            base_url: where the server mounted rtlink.
            codec: the codec of the connection.
            headers: go with every request of the connection (``Authorization``:
                credentials never travel in URLs).
            timeout: seconds a graceful close may take.
            cursor: gives the subscriptions to carry, for transports that carry them.
            fallback: when the client fell back to this transport, why (protocol.md
                8.7): it goes in the ``fallback`` query parameter of the connection's
                first request only.
            presence: gives the channels whose presence events the subscriptions ask
                for, for transports that carry them.
            session: gives the session id to carry over to a stream or poll request
                (the last ``welcome``'s), for transports that carry subscriptions:
                the server keeps the client's presence under it (protocol.md 6.8).
        """

    def subscriptions_changed(self) -> None:  # noqa: B027 - deliberately a no-op here
        """The client's subscription set changed (transports that carry it re-request)."""

    @abc.abstractmethod
    async def send(self, message: bytes) -> None:
        """Send one transport message."""

    @abc.abstractmethod
    async def receive(self) -> bytes | str:
        """Wait for the next transport message.

        Raises:
            TransportClosed: the connection ended.
        """

    @abc.abstractmethod
    async def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close gracefully."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the connection at once."""


class WebSocketTransport(ClientTransport):
    """rtlink over WebSocket at ``{base_url}/ws``, codec chosen by subprotocol."""

    name = "websocket"

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, codec: Codec) -> None:
        self._ws = ws
        self._opcode = aiohttp.WSMsgType.BINARY if codec.binary else aiohttp.WSMsgType.TEXT
        # aiohttp has no public abort for client websockets; keep the socket's
        # transport so abort() can drop it the way a dead network would.
        self._socket = client_websocket_transport(ws)

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        base_url: URL,
        codec: Codec,
        headers: Mapping[str, str],
        timeout: float,
        cursor: CursorSource,
        fallback: str | None = None,
        *,
        presence: PresenceSource = frozenset,
        session: SessionSource = lambda: None,
    ) -> WebSocketTransport:
        scheme = {"http": "ws", "https": "wss"}.get(base_url.scheme, base_url.scheme)
        url = base_url.with_scheme(scheme).with_path(base_url.path.rstrip("/") + "/ws")
        if fallback:
            url = url.with_query(fallback=fallback)
        ws = await http.ws_connect(
            url,
            headers=headers,
            protocols=(codec.subprotocol,),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=timeout),
            max_msg_size=0,  # the server bounds what it sends; a client never refuses it
            autoping=True,
            autoclose=True,
        )
        if ws.protocol != codec.subprotocol:
            await ws.close(code=CloseCode.UNSUPPORTED_PROTOCOL)
            raise TransportClosed(CloseCode.UNSUPPORTED_PROTOCOL,
                                  f"server did not accept {codec.subprotocol}")
        return cls(ws, codec)

    async def send(self, message: bytes) -> None:
        if self._ws.closed:
            raise TransportClosed(self._ws.close_code or CloseCode.ABNORMAL)
        await self._ws.send_frame(message, self._opcode)

    async def receive(self) -> bytes | str:
        message = await self._ws.receive()
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            data: bytes | str = message.data
            return data
        code = self._ws.close_code
        if message.type is aiohttp.WSMsgType.CLOSE and code is None:
            code = message.data
        reason = message.extra if isinstance(message.extra, str) else ""
        raise TransportClosed(code or CloseCode.ABNORMAL, reason)

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        await self._ws.close(code=code)

    def abort(self) -> None:
        if self._socket is not None:
            self._socket.abort()


_END = object()


def _has_frames(response: aiohttp.ClientResponse, content_type: str) -> bool:
    """Whether an answer of the server carries rtlink frames for the client: a 200, or a
    refusal (401, 403, the 400 of an undecodable send...) in the expected
    ``content_type``, whose ``close`` frame says what to do (protocol.md 2.6). Other
    answers (a proxy's 502 page, a 413) have none: the connection failed (1006)."""
    return response.status == 200 or response.content_type == content_type


class _HttpTransport(ClientTransport):
    """What SSE and long polling share: a queue of received messages, POST /send."""

    carries_subscriptions = True

    def __init__(self, http: aiohttp.ClientSession, base_url: URL, codec: Codec,
                 headers: Mapping[str, str], cursor: CursorSource,
                 fallback: str | None = None, *, presence: PresenceSource = frozenset,
                 session: SessionSource = lambda: None) -> None:
        self._http = http
        self._presence = presence
        self._session = session
        self._base = base_url.with_path(base_url.path.rstrip("/"))
        self._codec = codec
        self._headers = dict(headers)
        self._cursor = cursor
        self._fallback = fallback  # for the first request only (see open())
        self._received: asyncio.Queue[object] = asyncio.Queue()
        self._closed: TransportClosed | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        base_url: URL,
        codec: Codec,
        headers: Mapping[str, str],
        timeout: float,
        cursor: CursorSource,
        fallback: str | None = None,
        *,
        presence: PresenceSource = frozenset,
        session: SessionSource = lambda: None,
    ) -> _HttpTransport:
        transport = cls(http, base_url, codec, headers, cursor, fallback,
                        presence=presence, session=session)
        await transport._start()
        return transport

    @abc.abstractmethod
    async def _start(self) -> None:
        """Start receiving (open the stream, or send the first poll)."""

    def _url(self, endpoint: str, with_cursor: bool, **extra: str) -> URL:
        query = {**extra, "codec": self._codec.name}
        if self._fallback:
            # Said once: a stream reopened or a poll repeated is no new fallback.
            query["fallback"], self._fallback = self._fallback, None
        if with_cursor:
            cursor, last = self._cursor()
            self.requested_channels = tuple(cursor)
            query["subs"] = format_cursor(cursor, last, self._presence())
            session = self._session()
            if session is not None:
                query["session"] = session
        return self._base.with_path(self._base.path + endpoint).with_query(query)

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _end(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = TransportClosed(code, reason)
            self._received.put_nowait(_END)

    async def send(self, message: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        async with self._http.post(self._url("/send", with_cursor=False), data=message,
                                      headers={**self._headers,
                                               "Content-Type": self._codec.content_type}) as r:
            body = await r.read()
            if not _has_frames(r, self._codec.content_type) or (r.status != 200 and not body):
                raise TransportClosed(CloseCode.ABNORMAL, f"send: HTTP {r.status}")
        # Answers (acks, errors, pongs) reach the client like frames from the server.
        # An empty body is a complete answer: no frame of the request needed one.
        if body:
            self._received.put_nowait(body)

    async def receive(self) -> bytes | str:
        item = await self._received.get()
        if item is _END:
            self._received.put_nowait(_END)
            assert self._closed is not None
            raise self._closed
        assert isinstance(item, bytes)
        return item

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        self.abort()

    def abort(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._end(CloseCode.ABNORMAL, "closed by the client")


class EventSourceTransport(_HttpTransport):
    """rtlink over server-sent events at ``{base_url}/sse``; client frames by POST."""

    name = "sse"
    _reader: asyncio.Task[None]

    async def _start(self) -> None:
        self._reader = self._spawn(self._read(await self._connect()))

    async def _connect(self) -> aiohttp.ClientResponse:
        response = await self._http.get(
            self._url("/sse", with_cursor=True),
            headers={**self._headers, "Accept": "text/event-stream"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )
        # A refused stream (401, 403) is still an event stream: its one event, the close
        # frame, is read like any other.
        if not _has_frames(response, "text/event-stream"):
            response.close()
            raise TransportClosed(CloseCode.ABNORMAL, f"sse: HTTP {response.status}")
        return response

    async def _read(self, response: aiohttp.ClientResponse,
                    on_first: Callable[[], None] | None = None) -> None:
        data: list[bytes] = []
        try:
            async for raw_line in response.content:
                line = raw_line.rstrip(b"\r\n")
                if line:
                    field, _, value = line.partition(b":")
                    if field == b"data":
                        data.append(value[1:] if value.startswith(b" ") else value)
                    continue
                if not data:
                    continue  # a comment or id-only event
                payload = b"\n".join(data)
                data = []
                if self._codec.binary:
                    payload = base64.b64decode(payload)
                if on_first is not None:
                    on_first()
                    on_first = None
                self._received.put_nowait(payload)
            self._end(CloseCode.ABNORMAL, "event stream ended")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._end(CloseCode.ABNORMAL, f"event stream failed: {exc}")
        finally:
            response.close()

    def subscriptions_changed(self) -> None:
        # Open a stream with the new subscription set; the old one keeps delivering
        # until the new one speaks, so nothing is missed (duplicates at the seam are
        # dropped by offset).
        old = self._reader
        self._reader = self._spawn(self._switch(old))

    async def _switch(self, old: asyncio.Task[None]) -> None:
        try:
            response = await self._connect()
        except Exception as exc:
            self._end(CloseCode.ABNORMAL, f"event stream failed: {exc}")
            return
        def stop_old_stream() -> None:
            old.cancel()

        await self._read(response, on_first=stop_old_stream)


class LongPollTransport(_HttpTransport):
    """rtlink over long polling at ``{base_url}/poll``; client frames by POST.

    The next poll is sent only once the client has handled the previous answer, so
    it carries the positions that answer reached.
    """

    name = "longpoll"
    _poller: asyncio.Task[None]

    def __init__(self, http: aiohttp.ClientSession, base_url: URL, codec: Codec,
                 headers: Mapping[str, str], cursor: CursorSource,
                 fallback: str | None = None, *, presence: PresenceSource = frozenset,
                 session: SessionSource = lambda: None) -> None:
        super().__init__(http, base_url, codec, headers, cursor, fallback,
                         presence=presence, session=session)
        # Set while the client waits for a message with nothing queued: it has
        # handled everything, so the cursor is up to date for the next poll.
        self._idle = asyncio.Event()

    async def _start(self) -> None:
        self._poller = self._spawn(self._poll_loop())

    async def receive(self) -> bytes | str:
        # The client calls receive() again only after handling the previous message.
        if self._received.empty():
            self._idle.set()
        try:
            return await super().receive()
        finally:
            self._idle.clear()

    async def _poll_loop(self) -> None:
        first = {"connect": "1"}  # answered at once: the health check of a new connection
        try:
            while True:
                url = self._url("/poll", with_cursor=True, **first)
                first = {}
                async with self._http.get(url, headers=self._headers) as response:
                    body = await response.read()
                    if not body or not _has_frames(response, self._codec.content_type):
                        raise TransportClosed(CloseCode.ABNORMAL,
                                              f"poll: HTTP {response.status}")
                self._idle.clear()
                self._received.put_nowait(body)
                await self._idle.wait()  # positions now include this answer
        except asyncio.CancelledError:
            raise
        except TransportClosed as exc:
            self._end(exc.code, exc.reason)
        except Exception as exc:
            self._end(CloseCode.ABNORMAL, f"poll failed: {type(exc).__name__}: {exc}")

    def subscriptions_changed(self) -> None:
        # Drop the poll in flight (its answer, if any, is replayed from history by
        # the next one, which carries the unchanged positions) and poll at once.
        self._poller.cancel()
        self._poller = self._spawn(self._poll_loop())


#: Client transports by name, in the default order of preference.
TRANSPORTS: dict[str, type[ClientTransport]] = {
    transport.name: transport
    for transport in (WebSocketTransport, EventSourceTransport, LongPollTransport)
}

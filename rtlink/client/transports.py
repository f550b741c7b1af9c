"""Client transports: each opens one connection to the server and moves messages.

A transport knows nothing about frames; the client decodes what :meth:`receive`
returns. Transports are found by name in :data:`TRANSPORTS`.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import aiohttp
from yarl import URL

from ..codecs import Codec
from ..codes import CloseCode

__all__ = ["ClientTransport", "WebSocketTransport", "TRANSPORTS", "TransportClosed"]


class TransportClosed(Exception):
    """The transport ended. ``code`` is the close code seen (1006 if none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"transport closed with {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ClientTransport(abc.ABC):
    """One open connection to an rtlink server."""

    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    async def open(
        cls,
        session: aiohttp.ClientSession,
        base_url: URL,
        codec: Codec,
        params: dict[str, str],
        timeout: float,
    ) -> ClientTransport:
        """Open a connection to the server mounted at ``base_url``."""

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
        connection = ws._response.connection  # noqa: SLF001
        self._socket = connection.transport if connection is not None else None

    @classmethod
    async def open(
        cls,
        session: aiohttp.ClientSession,
        base_url: URL,
        codec: Codec,
        params: dict[str, str],
        timeout: float,
    ) -> WebSocketTransport:
        scheme = {"http": "ws", "https": "wss"}.get(base_url.scheme, base_url.scheme)
        url = base_url.with_scheme(scheme).with_path(base_url.path.rstrip("/") + "/ws")
        ws = await session.ws_connect(
            url.with_query(params) if params else url,
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


#: Client transports by name, in the default order of preference.
TRANSPORTS: dict[str, type[ClientTransport]] = {WebSocketTransport.name: WebSocketTransport}

"""The asyncio floor: what delivering costs when nothing but the socket write is left.

A hand-written ``asyncio.Protocol`` HTTP server (no aiohttp in the data path): the
WebSocket handshake (``/ws``) or the SSE response head (``/sse``, close-delimited, no
chunked encoding) is written by hand, then the transport joins a set. A publication is
encoded once (``json.dumps``) into one prebuilt WebSocket frame and one prebuilt SSE
event, and each is written with ``transport.write`` to every socket of its kind. The
control routes are answered by the same protocol. Frames from clients are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import urllib.parse
from typing import Any

from bench.servers import CHANNEL, burst, parse_args

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBSCRIBED = json.dumps({"type": "subscribed", "channel": CHANNEL}).encode()


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (server to client) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", 0x81, length) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


def sse_event(payload: bytes) -> bytes:
    """One server-sent event whose data is ``payload`` (a single line)."""
    return b"data: " + payload + b"\n\n"


class Floor:
    """The subscribers and the publication path."""

    def __init__(self) -> None:
        self.sockets: set[asyncio.Transport] = set()
        self.streams: set[asyncio.Transport] = set()

    async def publish(self, data: dict[str, Any]) -> None:
        encoded = json.dumps({"channel": CHANNEL, "data": data}).encode()
        if self.sockets:
            frame = ws_frame(encoded)
            for transport in self.sockets:
                transport.write(frame)
        if self.streams:
            event = sse_event(encoded)
            for transport in self.streams:
                transport.write(event)


class HttpProtocol(asyncio.Protocol):
    """Reads one request head, then becomes a subscriber or answers a control route."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            return  # client frames are ignored
        self.buffer += data
        while b"\r\n\r\n" in self.buffer and not self.upgraded:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.handle(head)

    def handle(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/ws" and "sec-websocket-key" in headers:
            accept = base64.b64encode(
                hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                                 + accept + b"\r\n\r\n" + ws_frame(SUBSCRIBED))
            self.upgraded = True
            self.floor.sockets.add(self.transport)
        elif url.path == "/sse":
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
                                 + sse_event(SUBSCRIBED))
            self.upgraded = True
            self.floor.streams.add(self.transport)
        elif url.path == "/control/burst":
            rate = float(query["rate"]) if "rate" in query else None
            count = int(query.get("count", "200"))
            task = asyncio.ensure_future(burst(self.floor.publish, count,
                                               int(query.get("size", "100")), rate))
            task.add_done_callback(lambda _: self.respond(f"published {count}"))
        elif url.path == "/control/subscribers":
            self.respond(str(len(self.floor.sockets) + len(self.floor.streams)))
        else:
            self.respond("not found", status="404 Not Found")

    def respond(self, text: str, status: str = "200 OK") -> None:
        assert self.transport is not None
        body = text.encode()
        self.transport.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                             f"Content-Type: text/plain\r\n\r\n".encode() + body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.floor.sockets.discard(self.transport)
            self.floor.streams.discard(self.transport)


async def serve(port: int) -> None:
    floor = Floor()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(floor), "127.0.0.1", port,
                                      backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    args = parse_args(__doc__ or "")
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()

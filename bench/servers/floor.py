"""The asyncio floor: what delivering costs when nothing but the socket write is left.

A hand-written ``asyncio.Protocol`` HTTP server (no aiohttp in the data path): the
WebSocket handshake (``/ws``) or the SSE response head (``/sse``, close-delimited, no
chunked encoding) is written by hand, then the transport joins the set of its channel
(``?channel=``, "bench" without one; a dict of channel name → set of transports). A
publication is encoded once (``json.dumps``) into one prebuilt WebSocket frame and one
prebuilt SSE event, and each is written with ``transport.write`` to every socket of its
kind subscribed to the channel. The control routes are answered by the same protocol.
Frames from clients are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import urllib.parse
from collections import defaultdict
from typing import Any

from bench.servers import burst, channel_of, memory_only, parse_args, users

__all__ = ["Floor", "HttpProtocol", "ws_frame", "sse_event", "main"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


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
        self.sockets: defaultdict[str, set[asyncio.Transport]] = defaultdict(set)
        self.streams: defaultdict[str, set[asyncio.Transport]] = defaultdict(set)
        self.count = 0

    async def publish(self, channel: str, data: dict[str, Any]) -> None:
        encoded = json.dumps({"channel": channel, "data": data}).encode()
        sockets = self.sockets.get(channel)
        if sockets:
            frame = ws_frame(encoded)
            for transport in sockets:
                transport.write(frame)
        streams = self.streams.get(channel)
        if streams:
            event = sse_event(encoded)
            for transport in streams:
                transport.write(event)

    def leave(self, transport: asyncio.Transport, channel: str) -> None:
        for index in (self.sockets, self.streams):
            members = index.get(channel)
            if members is not None and transport in members:
                members.discard(transport)
                self.count -= 1
                if not members:
                    del index[channel]


class HttpProtocol(asyncio.Protocol):
    """Reads one request head, then becomes a subscriber or answers a control route."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.channel = ""

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
        size = int(query.get("size", "100"))
        channel = channel_of(query)
        subscribed = json.dumps({"type": "subscribed", "channel": channel}).encode()
        if url.path == "/ws" and "sec-websocket-key" in headers:
            accept = base64.b64encode(
                hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                                 + accept + b"\r\n\r\n" + ws_frame(subscribed))
            self.join(self.floor.sockets, channel)
        elif url.path == "/sse":
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
                                 + sse_event(subscribed))
            self.join(self.floor.streams, channel)
        elif url.path == "/control/burst":
            rate = float(query["rate"]) if "rate" in query else None
            count = int(query.get("count", "200"))
            task = asyncio.ensure_future(burst(self.floor.publish, count, size, rate))
            task.add_done_callback(lambda _: self.respond(f"published {count}"))
        elif url.path == "/control/users":
            channels = int(query.get("channels", "1000"))
            count = int(query.get("count", str(channels)))
            task = asyncio.ensure_future(users(self.floor.publish, channels, count, size))
            task.add_done_callback(lambda _: self.respond(f"published {count}"))
        elif url.path == "/control/subscribers":
            self.respond(str(self.floor.count))
        else:
            self.respond("not found", status="404 Not Found")

    def join(self, index: defaultdict[str, set[asyncio.Transport]], channel: str) -> None:
        assert self.transport is not None
        self.upgraded = True
        self.channel = channel
        index[channel].add(self.transport)
        self.floor.count += 1

    def respond(self, text: str, status: str = "200 OK") -> None:
        assert self.transport is not None
        body = text.encode()
        self.transport.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                             f"Content-Type: text/plain\r\n\r\n".encode() + body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None and self.upgraded:
            self.floor.leave(self.transport, self.channel)


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
    memory_only(args.backend)
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()

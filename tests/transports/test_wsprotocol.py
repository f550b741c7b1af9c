"""rtlink's WebSocket protocol (rtlink.transports.wsprotocol) on a real socket: outbound
backpressure, which the hub's writer relies on."""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import web

from rtlink.aiohttp_internals import TakeoverWebSocketResponse, take_over_websocket
from rtlink.codecs import get_codec
from rtlink.transports.wsprotocol import WebSocketProtocol
from tests.support import seconds

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


async def test_drained_waits_while_writing_is_paused_and_not_otherwise() -> None:
    """Writes pile up against a client that reads nothing until asyncio pauses the
    protocol (write_now then refuses); drained() returns only once the client has read
    them, at once when nothing is paused, and raises (rather than hanging) when the
    client is gone."""
    steps: asyncio.Queue[str] = asyncio.Queue()
    go_on = asyncio.Event()
    codec = get_codec("json")
    chunk = b"x" * 65536

    async def pause(protocol: WebSocketProtocol) -> None:
        """Write until the protocol is paused and stays paused (the kernel's buffers on
        both sides are full too)."""
        for _ in range(10_000):
            if not protocol.write_now([chunk], codec, {}):
                await asyncio.sleep(0.02)
                if not protocol.write_now([chunk], codec, {}):
                    return
            await asyncio.sleep(0)
        raise AssertionError("writing never paused against a client that reads nothing")

    async def steps_of(protocol: WebSocketProtocol) -> None:
        async with asyncio.timeout(seconds(1)):
            await protocol.drained()  # not paused: returns at once
        await pause(protocol)
        waiting = asyncio.ensure_future(protocol.drained())
        await asyncio.sleep(seconds(0.1))
        await steps.put("waiting" if not waiting.done() else "returned while paused")
        await waiting
        await steps.put("resumed")
        await go_on.wait()
        await pause(protocol)
        await steps.put("paused again")
        try:
            async with asyncio.timeout(seconds(5)):
                await protocol.drained()
        except ConnectionError:
            await steps.put("raised")
        except TimeoutError:
            await steps.put("hung after the client left")
        else:
            await steps.put("returned")

    async def run(protocol: WebSocketProtocol) -> None:
        try:
            await steps_of(protocol)
        except Exception as exc:  # said to the test, which would only time out
            await steps.put(f"the server failed: {exc!r}")

    tasks: list[asyncio.Task[None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = TakeoverWebSocketResponse()
        await ws.prepare(request)
        protocol = WebSocketProtocol(False, 1000, request.protocol.writing_paused)
        taken = take_over_websocket(request, protocol)
        assert taken is not None
        protocol.start(*taken, None)
        tasks.append(asyncio.create_task(run(protocol)))
        return ws

    async def read_all(client: socket.socket) -> None:
        while await asyncio.get_running_loop().sock_recv(client, 1 << 16):
            pass

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    # A plain socket: asyncio's streams would read ahead into their own buffer.
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setblocking(False)
    try:
        await loop.sock_connect(client, ("127.0.0.1", runner.addresses[0][1]))
        await loop.sock_sendall(client, HANDSHAKE)
        async with asyncio.timeout(seconds(10)):
            assert await steps.get() == "waiting"
            reading = asyncio.ensure_future(read_all(client))
            assert await steps.get() == "resumed"
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            go_on.set()
            assert await steps.get() == "paused again"
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        client.close()  # with SO_LINGER 0: a reset, as a peer that vanished
        async with asyncio.timeout(seconds(10)):
            # A lost connection ends the wait with ConnectionError.
            assert await steps.get() == "raised"
        await asyncio.gather(*tasks)
        await runner.cleanup()

"""The private aiohttp names rtlink relies on (rtlink.aiohttp_internals), on the installed
aiohttp: that each still exists, and that it still behaves as relied on, against a real
server on loopback.

When one of these fails after an aiohttp upgrade, read the docstring of the function it
names in rtlink/aiohttp_internals.py: it says what rtlink needs and what breaks without it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from rtlink.aiohttp_internals import (
    MaskCheck,
    TakeoverWebSocketResponse,
    client_websocket_transport,
    take_over_websocket,
)
from tests.support import seconds

VERSION = aiohttp.__version__


def renamed(name: str, user: str) -> str:
    return (f"aiohttp {VERSION} has no {name}, which rtlink.aiohttp_internals.{user} "
            f"relies on: see its docstring, and find what replaced it in aiohttp")


@asynccontextmanager
async def serve(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                ) -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1:0 with one GET route; yields its base URL."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --- the names exist -------------------------------------------------------------------


def test_a_websocket_response_installs_its_reader_in_post_start() -> None:
    post_start = getattr(web.WebSocketResponse, "_post_start", None)
    assert post_start is not None, renamed("WebSocketResponse._post_start()",
                                           "MaskedWebSocketResponse")
    assert list(inspect.signature(post_start).parameters) == [
        "self", "request", "protocol", "writer"], (
        f"aiohttp {VERSION}: WebSocketResponse._post_start() takes other arguments now; "
        "see rtlink.aiohttp_internals.MaskedWebSocketResponse")
    for name in ("_message_tail", "_payload_parser"):
        assert name in web.RequestHandler.__slots__, renamed(
            f"RequestHandler.{name}", "MaskedWebSocketResponse")


async def test_a_client_websocket_has_a_private_response_holding_its_connection() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async with serve("/ws", handler) as url, aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "/ws") as ws:
            response = getattr(ws, "_response", None)
            assert isinstance(response, aiohttp.ClientResponse), renamed(
                "ClientWebSocketResponse._response (a ClientResponse)",
                "client_websocket_transport")
            connection = response.connection
            assert connection is not None, (
                f"aiohttp {VERSION}: ClientWebSocketResponse._response.connection is None "
                "on an open WebSocket (rtlink.aiohttp_internals.client_websocket_transport "
                "takes the socket's transport from it)")
            assert isinstance(connection.transport, asyncio.Transport)


# --- they behave as relied on ----------------------------------------------------------


HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: p\r\n\r\n")


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_take_over_websocket_hands_the_socket_and_what_followed_the_handshake(
        handler_cancellation: bool) -> None:
    """After a TakeoverWebSocketResponse's handshake, the bytes the client sent stay
    unread (no aiohttp reader); take_over_websocket hands them and the socket to a
    protocol; aiohttp's server forgets the connection, writes nothing more on it
    (no close frame when the handler returns) and does not close it on cleanup."""
    received = bytearray()
    arrived, lost = asyncio.Event(), asyncio.Event()
    taken: list[tuple[asyncio.Transport, bytes]] = []

    class Recorder(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            received.extend(data)
            arrived.set()

        def connection_lost(self, exc: Exception | None) -> None:
            lost.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = TakeoverWebSocketResponse(protocols=("p",))
        await ws.prepare(request)
        assert ws.subprotocol == "p" and not ws.compress
        await asyncio.sleep(seconds(0.2))  # the client's first bytes arrive meanwhile
        result = take_over_websocket(request, Recorder())
        assert result is not None, renamed("a way to take over", "take_over_websocket")
        taken.append(result)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, shutdown_timeout=1, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
    try:
        writer.write(HANDSHAKE + b"early")
        async with asyncio.timeout(seconds(5)):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            while not taken:
                await asyncio.sleep(0.01)
        transport, tail = taken[0]
        assert tail == b"early", (
            f"aiohttp {VERSION}: the bytes sent after the handshake were not kept in "
            "RequestHandler._message_tail (see TakeoverWebSocketResponse)")
        writer.write(b"late")
        async with asyncio.timeout(seconds(5)):
            await arrived.wait()
        assert bytes(received) == b"late"
        await asyncio.sleep(seconds(0.1))  # the handler has returned: nothing written
        transport.write(b"from-us")
        async with asyncio.timeout(seconds(5)):
            assert await reader.readexactly(7) == b"from-us", (
                f"aiohttp {VERSION} wrote on a connection taken over (a close frame?)")
        assert runner.server is not None and not runner.server.connections, (
            f"aiohttp {VERSION}'s server still counts a connection taken over")
        await runner.cleanup()
        assert not lost.is_set() and not transport.is_closing(), (
            f"aiohttp {VERSION} closed a connection taken over")
        transport.close()
        async with asyncio.timeout(seconds(5)):
            await lost.wait()
            assert await reader.read() == b""
    finally:
        writer.close()
        await runner.cleanup()


async def test_client_websocket_transport_is_the_socket_and_abort_drops_it() -> None:
    """The transport found is the WebSocket's own socket; aborting it ends the
    connection at once on both sides, without a close handshake."""
    server_saw: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        server_saw.set_result(ws.close_code)
        return ws

    async with serve("/ws", handler) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url + "/ws", autoclose=False)
        transport = client_websocket_transport(ws)
        assert transport is not None
        assert transport.get_extra_info("sockname") == ws.get_extra_info("sockname")
        assert transport.get_extra_info("peername")[1] == int(url.rsplit(":", 1)[1])
        transport.abort()
        async with asyncio.timeout(seconds(5)):
            message = await ws.receive()
            assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR,
                                    aiohttp.WSMsgType.CLOSE)
            # No close frame reached the server: it saw the connection drop (1006).
            assert await server_saw in (aiohttp.WSCloseCode.ABNORMAL_CLOSURE, None)
        await ws.close()


# --- MaskCheck: finding unmasked client frames (pure) ---------------------------------


def frame(payload_size: int, masked: bool = True) -> bytes:
    """A binary client frame of ``payload_size`` bytes (7, 16 or 64-bit length)."""
    bit = 0x80 if masked else 0
    if payload_size < 126:
        header = bytes([0x82, bit | payload_size])
    elif payload_size < 65536:
        header = bytes([0x82, bit | 126]) + payload_size.to_bytes(2, "big")
    else:
        header = bytes([0x82, bit | 127]) + payload_size.to_bytes(8, "big")
    return header + (b"mask" if masked else b"") + b"x" * payload_size


def fed(chunks: list[bytes]) -> tuple[bytes, bool]:
    """Everything a MaskCheck hands on for ``chunks``, and whether it found an unmasked
    frame (after which nothing is fed)."""
    check, passed = MaskCheck(), b""
    for chunk in chunks:
        out, unmasked = check.feed(chunk)
        passed += out
        if unmasked:
            return passed, True
    return passed, False


def test_mask_check_passes_masked_frames_cut_anywhere() -> None:
    stream = frame(0) + frame(5) + frame(125) + frame(126) + frame(65535) + frame(65536)
    assert fed([stream]) == (stream, False)
    assert fed([bytes([byte]) for byte in stream[:300]] + [stream[300:]]) == (stream, False)
    for cut in range(1, 20):  # headers cut at every place
        assert fed([stream[:cut], stream[cut:]]) == (stream, False)


def test_mask_check_stops_at_an_unmasked_frame() -> None:
    good = frame(3) + frame(200)
    for bad in (frame(3, masked=False), frame(300, masked=False), frame(70000, masked=False)):
        stream = good + bad + frame(1)
        assert fed([stream]) == (good, True)
        # Its header's first byte is held until the mask bit comes: not handed on.
        assert fed([stream[:len(good) + 1], stream[len(good) + 1:]]) == (good, True)
        chunks = [stream[i:i + 7] for i in range(0, len(stream), 7)]
        assert fed(chunks) == (good, True)


def test_mask_check_holds_a_lone_first_header_byte() -> None:
    check = MaskCheck()
    assert check.feed(b"\x82") == (b"", False)
    assert check.feed(b"\x81mask") == (b"\x82\x81mask", False)
    assert check.feed(b"x") == (b"x", False)
    assert check.feed(b"\x82\x00") == (b"", True)  # unmasked: nothing more passes

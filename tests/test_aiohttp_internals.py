"""The private aiohttp names rtlink relies on (rtlink.aiohttp_internals), on the installed
aiohttp: that each still exists, and that it still behaves as relied on, against a real
server on loopback.

When one of these fails after an aiohttp upgrade, read the docstring of the function it
names in rtlink/aiohttp_internals.py: it says what rtlink needs and what breaks without it.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol

from rtlink.aiohttp_internals import (
    FrameWriter,
    MaskCheck,
    client_websocket_transport,
    wait_writable,
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


def test_the_server_protocol_has_a_private_drain_helper() -> None:
    assert issubclass(web.RequestHandler, BaseProtocol), (
        f"aiohttp {VERSION}: web.RequestHandler is no longer a BaseProtocol, whose "
        "_drain_helper() rtlink.aiohttp_internals.wait_writable relies on")
    helper = getattr(web.RequestHandler, "_drain_helper", None)
    assert helper is not None, renamed("RequestHandler._drain_helper()", "wait_writable")
    assert inspect.iscoroutinefunction(helper), (
        f"aiohttp {VERSION}: RequestHandler._drain_helper is no longer a coroutine "
        "function (rtlink.aiohttp_internals.wait_writable awaits it)")
    assert isinstance(inspect.getattr_static(web.RequestHandler, "writing_paused"),
                      property), renamed("RequestHandler.writing_paused", "wait_writable")


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


def test_the_properties_frame_writer_reads_around_are_plain_attributes() -> None:
    assert "_paused" in BaseProtocol.__slots__, renamed("BaseProtocol._paused",
                                                        "FrameWriter")
    assert inspect.getsource(BaseProtocol.writing_paused.fget).rstrip().endswith(
        "return self._paused"), renamed("BaseProtocol.writing_paused as _paused",
                                        "FrameWriter")
    assert inspect.getsource(web.WebSocketResponse.closed.fget).rstrip().endswith(
        "return self._closed"), renamed("WebSocketResponse.closed as _closed",
                                        "FrameWriter")


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


async def test_wait_writable_waits_while_writing_is_paused_and_not_otherwise() -> None:
    """Writes pile up against a client that reads nothing until asyncio pauses the
    protocol; wait_writable returns only once the client has read them, at once when
    nothing is paused, and raises (rather than hanging) when the client is gone."""
    steps: asyncio.Queue[str] = asyncio.Queue()
    go_on = asyncio.Event()
    chunk = b"x" * 65536

    async def pause(request: web.Request) -> None:
        """Write until asyncio pauses the protocol and it stays paused (the kernel's
        buffers on both sides are full too)."""
        transport = request.transport
        assert transport is not None
        for _ in range(10_000):
            if request.protocol.writing_paused:
                await asyncio.sleep(0.02)
                if request.protocol.writing_paused:
                    return
            transport.write(chunk)
            await asyncio.sleep(0)
        raise AssertionError("writing never paused against a client that reads nothing")

    async def steps_of(request: web.Request) -> None:
        async with asyncio.timeout(seconds(1)):
            await wait_writable(request.protocol)  # not paused: returns at once
        await pause(request)
        waiting = asyncio.ensure_future(wait_writable(request.protocol))
        await asyncio.sleep(seconds(0.1))
        await steps.put("waiting" if not waiting.done() else "returned while paused")
        await waiting
        await steps.put("resumed")
        await go_on.wait()
        await pause(request)
        await steps.put("paused again")
        try:
            async with asyncio.timeout(seconds(5)):
                await wait_writable(request.protocol)
        except ConnectionError:
            await steps.put("raised")
        except TimeoutError:
            await steps.put("hung after the client left")
        else:
            await steps.put("returned")

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            await steps_of(request)
        except Exception as exc:  # said to the test, which would only time out
            await steps.put(f"the server failed: {exc!r}")
            raise
        return response

    async def read_all(client: socket.socket) -> None:
        while await asyncio.get_running_loop().sock_recv(client, 1 << 16):
            pass

    async with serve("/stream", handler) as url:
        # A plain socket: asyncio's streams would read ahead into their own buffer.
        loop = asyncio.get_running_loop()
        client = socket.socket()
        client.setblocking(False)
        try:
            await loop.sock_connect(client, ("127.0.0.1", int(url.rsplit(":", 1)[1])))
            await loop.sock_sendall(client, b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
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
            # A lost connection ends the wait: with ConnectionError, or at once if
            # aiohttp woke the waiter without an error (both end rtlink's writer).
            assert await steps.get() in ("raised", "returned")


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


class _Writer(FrameWriter):
    """FrameWriter over one server WebSocket; frames are written as they are (a text
    frame header is put in front)."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self._transport = request.transport
        self._protocol = request.protocol
        self._ws = ws

    def _framed(self, message: bytes) -> bytes:
        return bytes([0x81, len(message)]) + message


async def test_frame_writer_writes_exactly_when_the_public_properties_allow() -> None:
    """write_one agrees with ``transport.is_closing() or protocol.writing_paused or
    ws.closed`` while writing is paused and resumed and once the WebSocket closes, and
    what it writes reaches the client as a message."""
    answers: asyncio.Queue[tuple[bool, bool]] = asyncio.Queue()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        writer = _Writer(request, ws)
        transport = request.transport
        assert transport is not None

        async def probe(frame: bytes) -> None:
            blocked = (transport.is_closing() or request.protocol.writing_paused
                       or ws.closed)
            await answers.put((writer.write_one(frame, {}), not blocked))

        await probe(b"one")
        request.protocol.pause_writing()  # what asyncio calls at the high-water mark
        await probe(b"paused")
        request.protocol.resume_writing()
        await probe(b"two")
        await ws.close()
        await probe(b"closed")
        return ws

    async with serve("/ws", handler) as url, aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "/ws") as ws:
            received = [(await ws.receive(timeout=seconds(5))).data for _ in range(2)]
            assert received == ["one", "two"]
        async with asyncio.timeout(seconds(5)):
            results = [await answers.get() for _ in range(4)]
        assert results == [(True, True), (False, False), (True, True), (False, False)]


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

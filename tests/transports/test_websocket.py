"""The WebSocket transport against raw WebSocket clients: bad input and close codes.

These tests speak the wire protocol by hand (aiohttp's WebSocket client, no rtlink
client) so that what the server does with malformed input is what is tested.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import rtlink
from rtlink.codecs import get_codec
from rtlink.transports.wsprotocol import WebSocketProtocol
from tests.support import eventually, find_binary, missing_component, run_server, seconds


class RawClient:
    """A WebSocket speaking rtlink frames by hand, with one codec."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, codec: str) -> None:
        self.ws = ws
        self.codec = get_codec(codec)

    async def send(self, *frames: dict[str, Any]) -> None:
        message = self.codec.join(self.codec.encode(frame) for frame in frames)
        if self.codec.binary:
            await self.ws.send_bytes(message)
        else:
            await self.ws.send_str(message.decode())

    async def frames(self, count: int) -> list[dict[str, Any]]:
        """Receive until ``count`` frames arrived (frames may come batched)."""
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(seconds(5)):
            while len(received) < count:
                message = await self.ws.receive()
                assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message
                received.extend(self.codec.decode(message.data))
        return received

    async def frame(self) -> dict[str, Any]:
        return (await self.frames(1))[0]

    async def close_code(self) -> int | None:
        """Read until the server closes; return its close code."""
        async with asyncio.timeout(seconds(5)):
            while True:
                message = await self.ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING):
                    return self.ws.close_code


@pytest.fixture
async def raw(codec: str) -> AsyncIterator[Any]:
    """Open raw WebSocket connections to a server: ``await raw(server)``."""
    session = aiohttp.ClientSession()

    async def connect(server: Any, protocols: tuple[str, ...] | None = None,
                      welcome: bool = True) -> RawClient:
        ws = await session.ws_connect(
            server.url.replace("http://", "ws://") + "/ws",
            protocols=protocols if protocols is not None else (f"rtlink.v1.{codec}",),
        )
        client = RawClient(ws, codec)
        if welcome:
            frame = await client.frame()
            assert frame["type"] == "welcome" and frame["version"] == 1
        return client

    yield connect
    await session.close()


async def test_welcome_comes_first_with_the_limits(raw) -> None:
    async with run_server(max_message_size=4096, ping_interval=7, pong_timeout=3) as server:
        client = await raw(server, welcome=False)
        welcome = await client.frame()
        assert welcome["type"] == "welcome"
        assert welcome["max_message_size"] == 4096
        assert welcome["ping_interval"] == 7 and welcome["pong_timeout"] == 3
        assert isinstance(welcome["session"], str) and welcome["session"]


async def test_message_over_the_size_limit_closes_with_1009(raw, codec) -> None:
    async with run_server(max_message_size=1024) as server:
        client = await raw(server)
        # exactly at the limit is fine ...
        frame = {"type": "ping", "pad": "x" * 1024}
        while len(client.codec.encode(frame)) > 1024:  # string headers vary in size
            frame["pad"] = frame["pad"][:-1]
        assert len(client.codec.encode(frame)) == 1024
        await client.send(frame)
        assert (await client.frame())["type"] == "pong"
        # ... one byte more is not.
        frame["pad"] += "x"
        await client.send(frame)
        assert await client.close_code() == rtlink.CloseCode.MESSAGE_TOO_BIG


async def test_compression_is_refused_unless_enabled(codec) -> None:
    # Browsers always offer permessage-deflate; by default the server declines it (the
    # handshake answer has no extension) and the connection works uncompressed.
    async with run_server() as server, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("http://", "ws://") + "/ws",
                                   protocols=(f"rtlink.v1.{codec}",), compress=15)
        try:
            assert ws.compress == 0
            client = RawClient(ws, codec)
            assert (await client.frame())["type"] == "welcome"
            await client.send({"type": "ping"})
            assert (await client.frame())["type"] == "pong"
        finally:
            await ws.close()


async def test_the_size_limit_holds_for_deflated_messages_too(codec) -> None:
    # Found by fuzzing (tests/transports/test_fuzz_http.py): with permessage-deflate,
    # aiohttp let an inflated message of max_message_size + 1 bytes through.
    async with run_server(max_message_size=1024, websocket_compression=True) as server, \
            aiohttp.ClientSession() as http:
        for extra in (0, 1):
            ws = await http.ws_connect(server.url.replace("http://", "ws://") + "/ws",
                                       protocols=(f"rtlink.v1.{codec}",), compress=15)
            assert ws.compress == 15
            client = RawClient(ws, codec)
            assert (await client.frame())["type"] == "welcome"
            frame = {"type": "ping", "pad": "x" * 1024}
            while len(client.codec.encode(frame)) > 1024:
                frame["pad"] = frame["pad"][:-1]
            frame["pad"] += "x" * extra
            assert len(client.codec.encode(frame)) == 1024 + extra
            await client.send(frame)
            if extra:
                assert await client.close_code() == rtlink.CloseCode.MESSAGE_TOO_BIG
            else:
                assert (await client.frame())["type"] == "pong"
                await ws.close()


@pytest.mark.parametrize("garbage", [b"\xc1\xff\x00", b"{not json", b"", b"\x92\x01"])
async def test_undecodable_message_closes_with_1007(raw, codec, garbage: bytes) -> None:
    async with run_server() as server:
        client = await raw(server)
        try:
            text = garbage.decode()
        except UnicodeDecodeError:
            text = None
        if codec == "json" and text is not None:
            await client.ws.send_str(text)
        else:
            await client.ws.send_bytes(garbage)  # msgpack, or bytes that are not UTF-8
        assert await client.close_code() == rtlink.CloseCode.INVALID_PAYLOAD


async def test_a_value_that_is_not_a_frame_closes_with_1007(raw) -> None:
    async with run_server() as server:
        client = await raw(server)
        await client.ws.send_bytes(client.codec.encode([1, 2, 3]))  # type: ignore[arg-type]
        assert await client.close_code() == rtlink.CloseCode.INVALID_PAYLOAD


async def test_unknown_frame_type_is_answered_and_the_connection_stays_usable(raw) -> None:
    async with run_server() as server:
        client = await raw(server)
        await client.send({"type": "teleport", "id": 5})
        error = await client.frame()
        assert error["type"] == "error"
        assert error["code"] == rtlink.ErrorCode.BAD_REQUEST and error["id"] == 5
        await client.send({"type": "subscribe", "id": 6, "channel": "news"})
        subscribed = await client.frame()
        assert subscribed["type"] == "subscribed" and subscribed["id"] == 6


@pytest.mark.parametrize("channel", ["", "has space", "star*", "x" * 256])
async def test_invalid_channel_name_is_answered_with_422(raw, channel: str) -> None:
    async with run_server() as server:
        client = await raw(server)
        await client.send({"type": "subscribe", "id": 1, "channel": channel})
        error = await client.frame()
        assert error["type"] == "error"
        assert error["code"] == rtlink.ErrorCode.INVALID_CHANNEL and error["id"] == 1
        await client.send({"type": "ping"})
        assert (await client.frame())["type"] == "pong"


async def test_a_batch_is_handled_in_order_with_bad_frames_answered_in_place(raw) -> None:
    options = {"*": rtlink.ChannelOptions(client_publish=True)}
    async with run_server(channels=options) as server:
        client = await raw(server)
        await client.send(
            {"type": "subscribe", "id": 1, "channel": "a"},
            {"type": "publish", "id": 2, "channel": "a"},  # no data
            {"type": "publish", "id": 3, "channel": "a", "data": {"x": 1}, "key": "k1"},
        )
        frames = await client.frames(4)
        kinds = [(f["type"], f.get("id")) for f in frames]
        assert kinds[0] == ("subscribed", 1)
        assert kinds[1] == ("error", 2)
        # the publication and its ack may come in either order; both arrive
        assert sorted(kinds[2:], key=str) == [("ack", 3), ("publication", None)]


async def test_errors_for_unknown_channel_and_forbidden_publish(raw) -> None:
    options = {"chat:*": rtlink.ChannelOptions(client_publish=False)}
    async with run_server(channels=options) as server:
        client = await raw(server)
        await client.send({"type": "subscribe", "id": 1, "channel": "other"})
        error = await client.frame()
        assert (error["code"], error["id"], error["channel"]) == (404, 1, "other")
        await client.send({"type": "publish", "id": 2, "channel": "chat:x", "data": 1})
        error = await client.frame()
        assert (error["code"], error["id"]) == (rtlink.ErrorCode.FORBIDDEN, 2)
        await client.send({"type": "subscribe", "id": 3, "channel": "chat:x"},
                          {"type": "subscribe", "id": 4, "channel": "chat:x"})
        first, second = await client.frames(2)
        assert first["type"] == "subscribed"
        assert (second["code"], second["id"]) == (rtlink.ErrorCode.ALREADY_SUBSCRIBED, 4)


async def test_subscription_limit_per_connection(raw) -> None:
    async with run_server(max_subscriptions=2) as server:
        client = await raw(server)
        await client.send(*({"type": "subscribe", "id": n, "channel": f"c{n}"} for n in (1, 2, 3)))
        frames = await client.frames(3)
        assert [f["type"] for f in frames] == ["subscribed", "subscribed", "error"]
        assert frames[2]["code"] == rtlink.ErrorCode.LIMIT_EXCEEDED


async def test_unsubscribe_is_acked_and_stops_delivery(raw) -> None:
    async with run_server() as server:
        client = await raw(server)
        await client.send({"type": "subscribe", "id": 1, "channel": "n"})
        await client.frame()
        await client.send({"type": "unsubscribe", "id": 2, "channel": "n"},
                          {"type": "unsubscribe", "id": 3, "channel": "never"})
        assert [(f["type"], f["id"]) for f in await client.frames(2)] == [("ack", 2), ("ack", 3)]
        await server.hub.publish("n", "dropped")
        await client.send({"type": "ping"})
        assert (await client.frame())["type"] == "pong"  # and no publication before it


async def test_unsupported_subprotocol_closes_with_4502(raw) -> None:
    async with run_server() as server:
        client = await raw(server, protocols=("rtlink.v9.json",), welcome=False)
        assert await client.close_code() == rtlink.CloseCode.UNSUPPORTED_PROTOCOL


async def test_no_subprotocol_means_json() -> None:
    async with run_server() as server, aiohttp.ClientSession() as session:
        async with session.ws_connect(server.url.replace("http", "ws") + "/ws") as ws:
            message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.TEXT
            assert get_codec("json").decode(message.data)[0]["type"] == "welcome"


async def test_failed_authentication_closes_with_4500(raw, codec) -> None:
    def authenticate(request: Any) -> str:
        raise rtlink.AuthenticationError("token expired")

    async with run_server(authenticate=authenticate) as server:
        client = await raw(server, welcome=False)
        close = await client.frame()
        assert close == {"type": "close", "code": 4500, "reason": "token expired"}
        assert await client.close_code() == rtlink.CloseCode.UNAUTHORIZED


async def test_a_crashing_authenticate_hook_closes_with_1011(raw) -> None:
    def authenticate(request: Any) -> str:
        raise RuntimeError("database down")

    async with run_server(authenticate=authenticate) as server:
        client = await raw(server, welcome=False)
        assert (await client.frame())["code"] == rtlink.CloseCode.INTERNAL_ERROR
        assert await client.close_code() == rtlink.CloseCode.INTERNAL_ERROR


async def test_plain_http_request_gets_400() -> None:
    async with run_server() as server, aiohttp.ClientSession() as session:
        async with session.get(server.url + "/ws") as response:
            assert response.status == 400
            assert "WebSocket" in await response.text()


async def test_server_pings_and_closes_a_silent_client_with_4000(raw) -> None:
    async with run_server(ping_interval=0.1, pong_timeout=0.1) as server:
        client = await raw(server)
        assert (await client.frame())["type"] == "ping"
        # never answer: closed within 2 * ping_interval + pong_timeout (+ slack)
        assert await client.close_code() == rtlink.CloseCode.HEARTBEAT_TIMEOUT
        assert not server.hub.connections


@pytest.mark.slow
async def test_a_client_that_answers_pings_stays_connected(raw) -> None:
    async with run_server(ping_interval=0.05, pong_timeout=0.05) as server:
        client = await raw(server)
        for _ in range(8):  # 8 pings = several timeout windows
            assert (await client.frame())["type"] == "ping"
            await client.send({"type": "pong"})
        assert len(server.hub.connections) == 1


async def test_shutdown_closes_connections_with_1001(raw) -> None:
    async with run_server() as server:
        client = await raw(server)
        stopping = asyncio.create_task(server.stop())
        close = await client.frame()
        assert close["type"] == "close" and close["code"] == rtlink.CloseCode.GOING_AWAY
        assert await client.close_code() == rtlink.CloseCode.GOING_AWAY
        await stopping


# --- frames without a mask (RFC 6455 5.1), over a raw socket ------------------------------


def ws_frame(payload: bytes, opcode: int = 0x1, mask: bytes | None = b"\x0f\xa5\x3c\x96",
             fin: bool = True) -> bytes:
    """One WebSocket frame (final unless ``fin`` is false), masked with ``mask`` (None:
    unmasked, as only a server may send)."""
    size = len(payload)
    bit = 0x80 if mask else 0
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        header = bytes([first, bit | size])
    elif size < 65536:
        header = bytes([first, bit | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, bit | 127]) + size.to_bytes(8, "big")
    if mask is None:
        return header + payload
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


async def raw_socket(server: Any, then: bytes = b"") -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]:
    """A WebSocket handshake over a raw socket (followed at once by ``then``, in the same
    write); returns once the server accepted it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {server.path}/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode() + then)
    async with asyncio.timeout(seconds(5)):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_ws_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The opcode and payload of the server's next frame (servers do not mask)."""
    async with asyncio.timeout(seconds(5)):
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size >= 126:
            size = int.from_bytes(await reader.readexactly(2 if size == 126 else 8), "big")
        return first & 0x0F, await reader.readexactly(size)


PING = b'{"type":"ping"}'


@pytest.mark.parametrize("pipelined", [False, True])
async def test_an_unmasked_client_frame_fails_the_connection_with_1002(pipelined: bool) -> None:
    # RFC 6455 5.1: "a server MUST close the connection upon receiving a frame that is
    # not masked" with 1002. aiohttp alone handled it like a masked one. Also when it
    # came in the handshake's own write, before the server's reader existed.
    publish = b'{"type":"publish","id":1,"channel":"room","data":1}'
    channels = {"*": rtlink.ChannelOptions(client_publish=True)}
    async with run_server(channels=channels) as server:
        reader, writer = await raw_socket(server, ws_frame(publish, mask=None)
                                          if pipelined else b"")
        if not pipelined:
            opcode, welcome = await read_ws_frame(reader)
            assert opcode == 0x1 and b'"welcome"' in welcome
            writer.write(ws_frame(PING))  # masked: answered
            assert await read_ws_frame(reader) == (0x1, b'{"type":"pong"}')
            writer.write(ws_frame(publish, mask=None))
        opcode, payload = await read_ws_frame(reader)
        while opcode == 0x1:  # a welcome may come first when the frame was pipelined
            assert b'"welcome"' in payload, payload
            opcode, payload = await read_ws_frame(reader)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1002), payload
        writer.write(ws_frame(payload[:2], opcode=0x8))  # the closing handshake
        async with asyncio.timeout(seconds(5)):
            assert await reader.read() == b""
        writer.close()
        # Nothing of the unmasked frame was handled.
        history = await server.hub.backend.history("room", None,
                                                  policy=rtlink.ChannelOptions().policy)
        assert history.position.offset == 0
        assert not server.hub.connections


async def test_masked_frames_pass_whatever_the_reads_cut_them_into() -> None:
    # The check walks frame headers ahead of aiohttp's reader: frames of every length
    # form (7, 16 and 64-bit), cut into one-byte writes, all still reach the session.
    channels = {"*": rtlink.ChannelOptions(client_publish=True)}
    async with run_server(channels=channels, max_message_size=100_000) as server:
        reader, writer = await raw_socket(server)
        await read_ws_frame(reader)  # welcome
        sizes = (10, 300, 70_000)
        stream = b"".join(ws_frame(json.dumps({"type": "publish", "id": n, "channel": "c",
                                               "data": "x" * size}).encode())
                          for n, size in enumerate(sizes, 1))
        for start in range(0, 400):  # headers cut anywhere in the first frames
            writer.write(stream[start:start + 1])
            await writer.drain()
        writer.write(stream[400:])
        acks: list[dict[str, Any]] = []
        while len(acks) < len(sizes):  # answers may come batched, one per line
            acks.extend(json.loads(line) for line in (await read_ws_frame(reader))[1].split(b"\n"))
        assert [(ack["type"], ack["id"]) for ack in acks] == [("ack", 1), ("ack", 2), ("ack", 3)]
        writer.close()


# --- after the handshake: rtlink's own protocol (rtlink.transports.wsprotocol) -----------


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each whole server frame in ``data``."""
    frames = []
    while len(data) >= 2:
        size, start = data[1] & 0x7F, 2
        if size >= 126:
            start = 4 if size == 126 else 10
            size = int.from_bytes(data[2:start], "big")
        frames.append((data[0] & 0x0F, data[start:start + size]))
        data = data[start + size:]
    return frames


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_idle_connections_hold_no_task_and_aiohttp_lets_them_go(
        handler_cancellation: bool, caplog: pytest.LogCaptureFixture) -> None:
    # Taken away from aiohttp after the handshake: no handler task, no request, nothing
    # aiohttp's server counts; each gets its access line (status 101) meanwhile.
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with run_server(handler_cancellation=handler_cancellation) as server:
        tasks = len(asyncio.all_tasks())
        sockets = [await raw_socket(server) for _ in range(5)]
        for reader, _ in sockets:
            assert b'"welcome"' in (await read_ws_frame(reader))[1]
        assert len(server.hub.connections) == 5
        assert len(asyncio.all_tasks()) == tasks
        assert server.runner.server is not None and not server.runner.server.connections
        lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
        assert sum("GET /rt/ws HTTP/1.1" in line and " 101 " in line for line in lines) == 5
        for reader, writer in sockets:  # and they work
            writer.write(ws_frame(PING))
            assert await read_ws_frame(reader) == (0x1, b'{"type":"pong"}')
            writer.close()
        await eventually(lambda: not server.hub.connections)


async def test_a_websocket_ping_is_answered_and_a_client_close_ends_the_connection() -> None:
    async with run_server() as server:
        reader, writer = await raw_socket(server)
        await read_ws_frame(reader)  # welcome
        writer.write(ws_frame(b"hi", opcode=0x9))
        assert await read_ws_frame(reader) == (0xA, b"hi")
        writer.write(ws_frame((4321).to_bytes(2, "big") + b"bye", opcode=0x8))
        opcode, payload = await read_ws_frame(reader)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 4321)
        async with asyncio.timeout(seconds(5)):
            assert await reader.read() == b""  # the server closes the TCP connection
        writer.close()
        await eventually(lambda: not server.hub.connections)


async def test_a_client_close_without_a_code_is_answered_without_one() -> None:
    async with run_server() as server:
        reader, writer = await raw_socket(server)
        await read_ws_frame(reader)  # welcome
        writer.write(ws_frame(b"", opcode=0x8))
        assert await read_ws_frame(reader) == (0x8, b"")
        async with asyncio.timeout(seconds(5)):
            assert await reader.read() == b""
        writer.close()
        await eventually(lambda: not server.hub.connections)


async def test_a_message_cut_into_frames_counts_whole_against_the_size_limit() -> None:
    async with run_server(max_message_size=100) as server:
        reader, writer = await raw_socket(server)
        await read_ws_frame(reader)  # welcome
        message = b'{"type":"ping","pad":"' + b"x" * 76 + b'"}'
        assert len(message) == 100  # exactly the limit, in three frames: accepted
        writer.write(ws_frame(message[:40], fin=False) + ws_frame(message[40:70], 0x0, fin=False)
                     + ws_frame(message[70:], opcode=0x0))
        assert await read_ws_frame(reader) == (0x1, b'{"type":"pong"}')
        # One byte more, in the last of two frames: refused.
        writer.write(ws_frame(message, fin=False) + ws_frame(b"x", opcode=0x0))
        opcode, payload = await read_ws_frame(reader)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1009)
        writer.close()
        await eventually(lambda: not server.hub.connections)


async def test_a_text_frame_that_is_not_utf8_fails_the_connection_with_1007() -> None:
    # Cut inside a character across two frames first (valid), then invalid bytes.
    async with run_server() as server:
        reader, writer = await raw_socket(server)
        await read_ws_frame(reader)  # welcome
        ping = '{"type":"ping","pad":"é"}'.encode()
        cut = ping.index("é".encode()) + 1
        writer.write(ws_frame(ping[:cut], fin=False) + ws_frame(ping[cut:], opcode=0x0))
        assert await read_ws_frame(reader) == (0x1, b'{"type":"pong"}')
        writer.write(ws_frame(b'{"type":"ping","pad":"\xc1\xff"}'))
        opcode, payload = await read_ws_frame(reader)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1007)
        writer.close()
        await eventually(lambda: not server.hub.connections)


async def test_reading_stops_while_messages_wait_and_resumes_in_order() -> None:
    # The peer handles one message at a time; while over 64 KiB of them wait, the socket
    # is not read (the client's writes back up), and nothing is lost or reordered.
    gate = asyncio.Event()

    async def authorize(identity: Any, channel: str) -> bool:
        await gate.wait()
        return True

    async with run_server(authorize_subscribe=authorize, max_message_size=4096) as server:
        reader, writer = await raw_socket(server)
        await read_ws_frame(reader)  # welcome
        writer.write(ws_frame(b'{"type":"subscribe","id":1,"channel":"c"}'))
        pad = "x" * 1000
        for n in range(2, 202):  # ~200 KB behind the subscribe that waits
            writer.write(ws_frame(json.dumps({"type": "ping", "id": n, "pad": pad}).encode()))
        (peer,) = server.hub.connections
        # The connection's sink is the WebSocketProtocol (no public way to it).
        protocol = peer.connection._sink
        assert isinstance(protocol, WebSocketProtocol)
        await eventually(lambda: not protocol.reading)
        gate.set()
        answers: list[dict[str, Any]] = []
        async with asyncio.timeout(seconds(10)):
            while len(answers) < 201:
                opcode, payload = await read_ws_frame(reader)
                answers.extend(json.loads(line) for line in payload.split(b"\n"))
        assert answers[0]["type"] == "subscribed"
        assert [answer["type"] for answer in answers[1:]] == ["pong"] * 200
        assert protocol.reading
        writer.close()


async def test_shutdown_ends_every_taken_over_socket() -> None:
    # aiohttp's runner no longer knows these sockets: the hub's close (1001) ends them.
    async with run_server() as server:
        sockets = [await raw_socket(server) for _ in range(3)]
        for reader, _ in sockets:
            await read_ws_frame(reader)  # welcome
        stopping = asyncio.create_task(server.stop())
        for reader, writer in sockets:  # clients that close their end on the server's
            async with asyncio.timeout(seconds(5)):
                received = await reader.read()
            frames = frames_of(received)
            assert frames[0][0] == 0x1 and b'"code":1001' in frames[0][1]
            assert frames[-1][0] == 0x8 and int.from_bytes(frames[-1][1][:2], "big") == 1001
            writer.close()
        async with asyncio.timeout(seconds(5)):
            await stopping
        assert not server.hub.connections


async def test_over_tls_the_taken_over_connection_works_and_closes(tmp_path: Any) -> None:
    # A TLS transport cannot half-close: the server's close ends the connection at once.
    openssl = find_binary("openssl")
    if openssl is None:
        missing_component("openssl (Debian package openssl) is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    hub = rtlink.Hub()
    app = web.Application()
    rtlink.attach(app, hub)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
    url = f"wss://127.0.0.1:{runner.addresses[0][1]}/rt/ws"
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(cert)))
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            client = RawClient(await http.ws_connect(url, protocols=("rtlink.v1.json",)),
                               "json")
            assert (await client.frame())["type"] == "welcome"
            await client.send({"type": "ping"})
            assert (await client.frame())["type"] == "pong"
            other = RawClient(await http.ws_connect(url, protocols=("rtlink.v1.json",)),
                              "json")
            assert (await other.frame())["type"] == "welcome"
            await other.ws.close()  # the client's close, answered
            await eventually(lambda: len(hub.connections) == 1)
            stopping = asyncio.create_task(runner.cleanup())
            assert (await client.frame())["code"] == rtlink.CloseCode.GOING_AWAY
            assert await client.close_code() == rtlink.CloseCode.GOING_AWAY
            async with asyncio.timeout(seconds(5)):
                await stopping
            assert not hub.connections
        finally:
            await runner.cleanup()


class _HubFailingToAccept(rtlink.Hub):
    def accept(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("accept failed")


async def test_a_connection_the_hub_fails_to_accept_is_closed_with_1011(
        caplog: pytest.LogCaptureFixture) -> None:
    # Taken over already: rtlink closes it (aiohttp no longer would).
    async with run_server(hub=_HubFailingToAccept()) as server:
        reader, writer = await raw_socket(server)
        async with asyncio.timeout(seconds(5)):
            frames = frames_of(await reader.read())
        assert frames[0][0] == 0x1 and b'"code":1011' in frames[0][1]
        assert frames[-1][0] == 0x8 and int.from_bytes(frames[-1][1][:2], "big") == 1011
        writer.close()
    assert "accepting a WebSocket failed" in caplog.text

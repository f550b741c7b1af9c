"""The nginx harness (tests/support/proxy.py) does what each mode claims.

A tiny aiohttp server (not rtlink) stands behind nginx with a WebSocket echo (/ws),
a Server-Sent Events stream (/sse: event 1 at once, event 2 after 0.3 s, end after
1 s) and a slow endpoint (/slow: answers after 3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.support import seconds
from tests.support.proxy import run_nginx

pytestmark = pytest.mark.proxy

SSE_SECOND_EVENT = 0.3
SSE_END = 1.0
SLOW = 3.0


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def _sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        # What an SSE server sends to disable nginx buffering; the buffering mode
        # must hold events anyway (proxy_ignore_headers X-Accel-Buffering).
        "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    await response.write(b"data: 1\n\n")
    await asyncio.sleep(SSE_SECOND_EVENT)
    await response.write(b"data: 2\n\n")
    await asyncio.sleep(SSE_END - SSE_SECOND_EVENT)
    await response.write_eof()
    return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(SLOW)
    return web.Response(text="slow")


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"echo": await request.json()})


@contextlib.asynccontextmanager
async def _upstream() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/ws", _ws)
    app.router.add_get("/sse", _sse)
    app.router.add_get("/slow", _slow)
    app.router.add_post("/echo", _echo)
    # handler_cancellation: /slow stops when nginx gives up on it, so cleanup is quick.
    runner = web.AppRunner(app, shutdown_timeout=1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _ws_echo(session: aiohttp.ClientSession, url: str) -> str:
    async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
        await ws.send_str("ping")
        message = await asyncio.wait_for(ws.receive(), seconds(2))
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return str(message.data)


async def _sse_timings(session: aiohttp.ClientSession,
                       url: str) -> tuple[float, list[tuple[float, bytes]], float]:
    """(seconds to headers, [(seconds, data line)], seconds to end), from the request."""
    start = time.monotonic()
    events: list[tuple[float, bytes]] = []
    async with asyncio.timeout(seconds(5)):
        async with session.get(url) as response:
            assert response.status == 200, response.status
            headers = time.monotonic() - start
            while line := await response.content.readline():
                if line.startswith(b"data:"):
                    events.append((time.monotonic() - start, line.strip()))
            end = time.monotonic() - start
    return headers, events, end


async def test_transparent_passes_websocket_and_streams_events() -> None:
    async with _upstream() as port, run_nginx(port, "transparent") as proxy, \
            aiohttp.ClientSession() as session:
        assert await _ws_echo(session, proxy.url("/ws")) == "ping"
        _, events, end = await _sse_timings(session, proxy.url("/sse"))
    assert [data for _, data in events] == [b"data: 1", b"data: 2"]
    assert events[0][0] < seconds(0.25), events
    assert events[1][0] < SSE_SECOND_EVENT + seconds(0.25), events
    assert end >= SSE_END - 0.05


async def test_strip_upgrade_breaks_websocket_but_streams_events() -> None:
    async with _upstream() as port, run_nginx(port, "strip_upgrade") as proxy, \
            aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await _ws_echo(session, proxy.url("/ws"))
        _, events, _ = await _sse_timings(session, proxy.url("/sse"))
    assert [data for _, data in events] == [b"data: 1", b"data: 2"]
    assert events[0][0] < seconds(0.25), events
    assert events[1][0] < SSE_SECOND_EVENT + seconds(0.25), events


@pytest.mark.parametrize("accept_encoding", ["gzip, deflate", "identity"])
async def test_strip_upgrade_buffering_holds_events_until_the_end(accept_encoding: str) -> None:
    async with _upstream() as port, run_nginx(port, "strip_upgrade_buffering") as proxy, \
            aiohttp.ClientSession(headers={"Accept-Encoding": accept_encoding}) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await _ws_echo(session, proxy.url("/ws"))
        headers, events, end = await _sse_timings(session, proxy.url("/sse"))
        # Ordinary requests (long-polling, commands) still pass.
        async with session.post(proxy.url("/echo"), json={"n": 1}) as response:
            assert response.status == 200
            assert await response.json() == {"echo": {"n": 1}}
    assert [data for _, data in events] == [b"data: 1", b"data: 2"]
    # Nothing, not even the headers, before the upstream ended the response (at SSE_END).
    assert headers >= SSE_END - 0.05, headers
    assert events[0][0] >= SSE_END - 0.05, events
    assert end >= SSE_END - 0.05


async def test_short_read_timeout_cuts_idle_responses() -> None:
    async with _upstream() as port, run_nginx(port, "short_read_timeout") as proxy, \
            aiohttp.ClientSession() as session:
        assert await _ws_echo(session, proxy.url("/ws")) == "ping"
        start = time.monotonic()
        async with asyncio.timeout(seconds(5)), session.get(proxy.url("/slow")) as response:
            assert response.status == 504
        elapsed = time.monotonic() - start
        assert 1.9 <= elapsed < SLOW, elapsed
        assert "upstream timed out" in proxy.error_log


async def test_config_errors_fail_with_the_error_log() -> None:
    with pytest.raises(AssertionError, match="unknown directive"):
        async with run_nginx(1, "transparent", extra="no_such_directive on;"):
            pass

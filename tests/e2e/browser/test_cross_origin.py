"""The browser client on a page of another origin than the rtlink server, in Chromium:
the allow-list and the CORS answers (rtlink/transports/guard.py) as a browser
enforces them, preflights included."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import rtlink
from tests.support import Server, seconds
from tests.support.browser import Chromium, page_html, page_url, serve_app

pytestmark = pytest.mark.asyncio(loop_scope="module")

PUBLISH = {"*": rtlink.ChannelOptions(client_publish=True)}
TRANSPORTS = ("websocket", "sse", "longpoll")


@contextlib.asynccontextmanager
async def two_origins(allowed: list[str] | None,
                      authenticate: Any = None) -> AsyncIterator[tuple[Server, Server]]:
    """An rtlink server, and a page server on another port (so another origin) whose
    test page uses it. ``allowed`` may name the page's origin as ``PAGE``."""
    hub = rtlink.Hub(channels=PUBLISH, authenticate=authenticate)
    body: list[str] = []  # the page, once the server's URL is known

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=body[0], content_type="text/html")

    pages = web.Application()
    pages.router.add_get("/test.html", page)
    async with serve_app(pages, hub, "/rt") as page_server:
        page_origin = f"http://127.0.0.1:{page_server.port}"
        app = web.Application()
        origins = None if allowed is None else [
            page_origin if entry == "PAGE" else entry for entry in allowed]
        rtlink.attach(app, hub, path="/rt", allowed_origins=origins)
        async with serve_app(app, hub, "/rt") as server:
            body.append(page_html(server.url))  # absolute URLs: script and RT_PATH
            yield server, page_server


@pytest.mark.parametrize("tokens", ["TokenAuth", "no hook"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_page_of_an_allowed_origin_subscribes_and_publishes(
    chromium: Chromium, transport: str, tokens: str,
) -> None:
    # With a token the browser sends Authorization: preflighted requests. With
    # TokenAuth, WebSocket and SSE first get a ticket (POST /ticket); without a hook
    # that answers 404, which the page must be able to read to go on without one.
    auth = rtlink.TokenAuth("s" * 32) if tokens == "TokenAuth" else None
    async with two_origins(["PAGE"], auth) as (server, page_server):
        async with chromium.page(page_url(page_server.port)) as page:
            await page.start(["room"], transports=[transport],
                             token=auth.mint("alice") if auth else "t",
                             connectTimeout=seconds(3))
            await page.wait_connected(["room"])
            assert await page.eval("client.transport") == transport
            position = await server.hub.publish("room", "from python")
            await page.until("T.messages.room.length >= 1")
            acked = await page.eval("() => client.publish('room', 'from the page')")
            assert acked["offset"] == position.offset + 1
            await page.until("T.messages.room.length >= 2")
            assert [m["data"] for m in await page.messages("room")] == [
                "from python", "from the page"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_page_of_another_origin_gets_nothing(chromium: Chromium, transport: str) -> None:
    calls: list[str] = []

    def authenticate(request: web.Request) -> None:
        calls.append(request.path)

    # Same origin only (the default): the page's port differs from the server's.
    async with two_origins(None, authenticate) as (server, page_server):
        async with chromium.page(page_url(page_server.port)) as page:
            await page.start(["room"], transports=[transport], connectTimeout=seconds(2),
                             backoffBase=0.05, backoffCap=0.2)
            if transport == "websocket":
                # The close frame reaches the page: the client stops on 4501.
                await page.until("client.state == 'closed'", message="the client to stop")
                assert (await page.states())[-1]["code"] == rtlink.CloseCode.FORBIDDEN
            else:
                # Without CORS headers the browser hides the answer: every attempt
                # fails, and the client keeps trying (with backoff).
                await page.until("T.states.filter((s) => s.newState == 'disconnected')"
                                 ".length >= 2", message="two failed attempts")
                assert await page.eval("client.state") != "connected"
            assert await page.eval("T.messages.room.length") == 0
        assert calls == []  # refused before authentication
        assert not server.hub.connections

"""History in Chromium: ``subscribe`` with ``last`` on every transport, in tabs that share
one connection, and the opt-in module ``rtlink-client/history`` (dist/history.mjs on
the main build, as npm users get them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import rtlink
from tests.support import ROOT, Server
from tests.support.browser import Chromium, add_test_page, page_url, serve_app

# One event loop for the module: the browser (conftest.py) is shared by its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")

DIST = ROOT / "js-client" / "dist"
KEEP_5 = {"private:*": rtlink.ChannelOptions(subscribe="authenticated"),
          "*": rtlink.ChannelOptions(history_size=5)}


@contextlib.asynccontextmanager
async def history_server() -> AsyncIterator[Server]:
    """The test page, and the package's ES modules at /js/ (the built client and
    history module, which imports it as ./rtlink.mjs)."""
    hub = rtlink.Hub(channels=KEEP_5)
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")
    add_test_page(app)

    async def module(request: web.Request) -> web.Response:
        body = (DIST / request.match_info["name"]).read_bytes()
        return web.Response(body=body, content_type="text/javascript")

    app.router.add_get(r"/js/{name:(rtlink|history)\.mjs}", module)
    async with serve_app(app, hub) as server:
        yield server


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_last_replays_the_latest_kept_then_live(chromium: Chromium,
                                                      transport: str) -> None:
    async with history_server() as server:
        for n in range(7):
            await server.hub.publish("news", n)
        async with chromium.page(page_url(server.port)) as page:
            await page.start(transports=[transport])
            await page.eval("() => T.subscribe('news', null, 3)")
            await page.until("T.messages.news.length == 3")
            live = await server.hub.publish("news", "live")
            await page.until("T.messages.news.length == 4")
            messages = await page.messages("news")
            assert [m["data"] for m in messages] == [4, 5, 6, "live"]
            assert messages[-1]["position"] == live.to_wire()
            [event] = await page.eval("T.subscribed.news")
            assert event["recovered"] and event["since"]["offset"] == 4


async def test_a_tab_joining_with_last_gets_it_over_the_shared_connection(
        chromium: Chromium) -> None:
    async with history_server() as server, chromium.tabs() as tabs:
        first = await tabs.open(page_url(server.port))
        await first.start(["news"])
        await first.wait_connected(["news"])
        for n in range(6):
            await server.hub.publish("news", n)
        await first.until("T.messages.news.length == 6")
        second = await tabs.open(page_url(server.port))
        await second.start()
        await second.eval("() => T.subscribe('news', null, 2)")
        await second.until("T.messages.news.length == 2")
        await server.hub.publish("news", "live")
        await first.until("T.messages.news.length == 7")
        await second.until("T.messages.news.length == 3")
        assert [m["data"] for m in await second.messages("news")] == [4, 5, "live"]
        assert [m["data"] for m in await first.messages("news")] == [0, 1, 2, 3, 4, 5, "live"]
        # One connection for both tabs (the leader's WebSocket).
        assert len(server.hub.connections) == 1


async def test_the_history_module_reads_pages(chromium: Chromium) -> None:
    async with history_server() as server:
        positions = [await server.hub.publish("news", n) for n in range(8)]  # 3..7 kept
        async with chromium.page(page_url(server.port)) as page:
            await page.start()
            await page.wait_connected()
            page_ = await page.eval("""async () => {
                const { history } = await import('/js/history.mjs');
                const latest = await history(client, 'news', { limit: 2, reverse: true });
                const older = await history(client, 'news', {
                    since: latest.publications.at(-1).position, reverse: true });
                const refused = await history(client, 'private:x').catch((e) => T.describe(e));
                return { latest, older, refused };
            }""")
            assert [p["data"] for p in page_["latest"]["publications"]] == [7, 6]
            assert page_["latest"]["position"] == positions[-1].to_wire()
            assert [p["data"] for p in page_["older"]["publications"]] == [5, 4, 3]
            assert page_["refused"]["name"] == "ReadError"
            assert page_["refused"]["code"] == rtlink.ErrorCode.UNAUTHORIZED

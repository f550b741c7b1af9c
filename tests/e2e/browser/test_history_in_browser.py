"""History in Chromium: ``subscribe`` with ``last`` on every transport, in tabs that share
one connection, and the opt-in modules ``rtlink-client/history`` and
``rtlink-client/presence`` (dist/history.mjs and dist/presence.mjs on the main build, as
npm users get them): their reads go on the client's connection, from any tab sharing it."""

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
          "room": rtlink.ChannelOptions(presence=True),
          "*": rtlink.ChannelOptions(history_size=5)}


@contextlib.asynccontextmanager
async def history_server() -> AsyncIterator[Server]:
    """The test page, and the package's ES modules at /js/ (the built client, and the
    history and presence modules, which import it as ./rtlink.mjs)."""
    hub = rtlink.Hub(channels=KEEP_5)
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")
    add_test_page(app)

    async def module(request: web.Request) -> web.Response:
        body = (DIST / request.match_info["name"]).read_bytes()
        return web.Response(body=body, content_type="text/javascript")

    app.router.add_get(r"/js/{name:(rtlink|history|presence)\.mjs}", module)
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


#: In a page: import the opt-in modules, subscribe to 'room' with presence, record its
#: presence_diff events in window.diffs.
WATCH_ROOM = """async () => {
    window.modules = {...await import('/js/history.mjs'), ...await import('/js/presence.mjs')};
    window.diffs = [];
    client.subscribe('room', { presence: true });
    modules.onPresence(client, 'room', (diff) => diffs.push(diff.count));
}"""

#: In a page: a history page, a presence list and a refused read.
READ = """async () => {
    const latest = await modules.history(client, 'news', { limit: 2, reverse: true });
    const room = await modules.presence(client, 'room');
    const refused = await modules.history(client, 'private:x').catch((e) => T.describe(e));
    return { latest: latest.publications.map((p) => p.data), count: room.count, refused };
}"""


async def test_reads_and_presence_events_in_tabs_sharing_a_connection(
        chromium: Chromium) -> None:
    async with history_server() as server, chromium.tabs() as tabs:
        for n in range(4):
            await server.hub.publish("news", n)
        pages = []
        for _ in range(2):
            page = await tabs.open(page_url(server.port))
            await page.start()
            await page.wait_connected()
            await page.eval(WATCH_ROOM)
            pages.append(page)
        assert len(server.hub.connections) == 1  # the leader's, for both tabs
        async with rtlink.Client(server.url) as other, other.subscribe("room", presence=True):
            for page in pages:  # its join, relayed to both tabs
                await page.until("diffs.includes(2)", message="the other client's join")
            for page in pages:
                read = await page.eval(READ)
                assert read["latest"] == [3, 2]
                assert read["count"] == 2  # the shared connection and the other client
                assert read["refused"]["name"] == "ReadError"
                assert read["refused"]["code"] == rtlink.ErrorCode.UNAUTHORIZED
        assert len(server.hub.connections) == 1

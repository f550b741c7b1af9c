"""Tabs sharing one connection (js-client/src/tabs.js) in a real Chromium.

Every test opens several pages in one browser context -- the tabs of one browser:
they share storage, BroadcastChannel, Web Locks and the browser's HTTP/1.1
connections, at most 6 per host (the server is plain aiohttp: HTTP/1.1, no TLS). Over
SSE or long polling each unshared tab would hold one of those 6 for good; shared, the
browser holds one for all tabs. The leader hands over when it is closed, crashes or is
frozen, and no tab loses or repeats a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import pytest

import rtlink
from rtlink.cli import build_app
from tests.support import Server, collect, relay_to, seconds
from tests.support.browser import (
    BrowserPage,
    Chromium,
    Tabs,
    expect,
    page_url,
    run_page_server,
    serve_app,
)

# One event loop for the module: the browser (conftest.py) is shared by its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")

HISTORY = {"*": rtlink.ChannelOptions(history_size=5000, client_publish=True)}
FAST_RECONNECT = {"backoffBase": 0.02, "backoffCap": 0.2}

#: Run in every page before its scripts: records whether the page holds the shared
#: connection (the client's Web Lock) in ``window.leading``, and when each message
#: arrived (``window.arrivals``: channel -> [[data, offset, Date.now()]]).
WATCH = """
window.leading = false;
window.arrivals = {};
if (navigator.locks) {
  const request = navigator.locks.request.bind(navigator.locks);
  navigator.locks.request = (name, options, callback) => request(name, options, async (lock) => {
    window.leading = true;
    try { return await callback(lock); } finally { window.leading = false; }
  });
}
"""

#: Records arrival times of a subscription's messages (after T.start()).
RECORD_ARRIVALS = """(channels) => { for (const channel of channels) {
  window.arrivals[channel] = [];
  T.subscriptions[channel].on('message', ({data, position}) =>
    window.arrivals[channel].push([data, position.offset, Date.now()]));
} }"""


async def open_tabs(tabs: Tabs, url: str, count: int) -> tuple[list[BrowserPage], list[float]]:
    """Open ``count`` pages at ``url`` one after the other; also returns how long each
    took to load (each must load: the page itself needs a free connection)."""
    pages, loads = [], []
    for _ in range(count):
        started = time.monotonic()
        pages.append(await tabs.open(url))
        loads.append(time.monotonic() - started)
    return pages, loads


async def leaders(pages: list[BrowserPage]) -> list[BrowserPage]:
    return [page for page in pages if await page.eval("window.leading")]


async def the_leader(pages: list[BrowserPage]) -> BrowserPage:
    """The one page holding the shared connection (waits for it)."""
    found: list[BrowserPage] = []
    deadline = time.monotonic() + seconds(10)
    while len(found) != 1 and time.monotonic() < deadline:
        found = await leaders(pages)
        await asyncio.sleep(0.05)
    assert len(found) == 1, f"{len(found)} leaders"
    return found[0]


def stream_count(server: Server) -> int:
    """Connections the hub has open now (SSE streams, held polls, WebSockets)."""
    return len(server.hub.connections)


# --- 1. many tabs over HTTP/1.1 ------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
async def test_ten_tabs_all_load_and_all_receive(chromium: Chromium, transport: str) -> None:
    async with run_page_server(channels=HISTORY) as server, chromium.tabs(WATCH) as tabs:
        pages: list[BrowserPage] = []
        loads: list[float] = []
        for n in range(10):
            # Each page loads while the ones before hold their connection: a page
            # that could not load would fail goto() here.
            more, took = await open_tabs(tabs, page_url(server.port), 1)
            pages += more
            loads += took
            await more[0].start(["feed", f"own{n}"], transports=[transport], **FAST_RECONNECT)
            await more[0].wait_connected(["feed", f"own{n}"])
        await the_leader(pages)
        sent = [await server.hub.publish("feed", n) for n in range(20)]
        for n in range(10):
            await server.hub.publish(f"own{n}", n)
        for n, page in enumerate(pages):
            await page.until("(own) => T.messages.feed.length >= 20 && T.messages[own].length",
                             message=f"page {n + 1}'s messages", arg=f"own{n}")
        await asyncio.sleep(0.2)  # and nothing more
        for n, page in enumerate(pages):
            assert [m["data"] for m in await page.messages("feed")] == list(range(20))
            assert [m["position"]["offset"] for m in await page.messages("feed")] == \
                [p.offset for p in sent]
            assert [m["data"] for m in await page.messages(f"own{n}")] == [n]
            assert await page.eval("client.state") == "connected"
            assert await page.eval("client.transport") == transport
        assert len(await leaders(pages)) == 1
        assert stream_count(server) <= 1, "one stream (or held poll) for every tab"
        print(f"\n[tabs] 10 tabs on {transport}: page loads {min(loads) * 1000:.0f}-"
              f"{max(loads) * 1000:.0f} ms, {stream_count(server)} connection(s) at the server")
        for page in pages:
            await page.eval("client.close()")


async def test_eight_tabs_of_the_demo_page_on_sse_load_and_deliver(chromium: Chromium) -> None:
    # The run of issue 22: `rtlink serve`'s demo page in 8 tabs on ?transport=sse.
    app, hub = build_app()
    async with serve_app(app, hub) as server, chromium.tabs() as tabs:
        timeout = seconds(10) * 1000
        pages, loads = await open_tabs(tabs, page_url(server.port, "/?transport=sse"), 8)
        for page in pages:
            await expect(page.page.locator("#state")).to_have_text("connected", timeout=timeout)
            await expect(page.page.locator("#transport")).to_have_text("sse", timeout=timeout)
        await hub.publish("chat:lobby", {"text": "hello, every tab", "from": "py"})
        for page in pages:
            await expect(page.page.locator("#log")).to_contain_text("hello, every tab",
                                                                    timeout=timeout)
        assert stream_count(server) == 1
        print(f"\n[tabs] the demo page in 8 tabs on SSE: loads {min(loads) * 1000:.0f}-"
              f"{max(loads) * 1000:.0f} ms, every tab delivered")


async def test_without_sharing_the_seventh_tab_does_not_even_load(chromium: Chromium) -> None:
    # What the tests above guard against (issue 22): six SSE streams take the
    # browser's six HTTP/1.1 connections to the host, and a seventh page waits.
    async with run_page_server() as server, chromium.tabs() as tabs:
        pages, _ = await open_tabs(tabs, page_url(server.port), 6)
        for page in pages:
            await page.start(["feed"], transports=["sse"], shareConnection=False)
            await page.wait_connected(["feed"])
        assert stream_count(server) == 6
        seventh = await tabs.open()
        with pytest.raises(Exception, match="Timeout"):
            await seventh.page.goto(page_url(server.port), timeout=2000)
        for page in pages:
            await page.eval("client.close()")


# --- 2. handover ---------------------------------------------------------------------------


async def act_on(tabs: Tabs, page: BrowserPage, how: str) -> Callable[[], Awaitable[None]]:
    """Close, crash or freeze ``page``; returns what thaws a frozen page (else nothing).

    Frozen: paused in the debugger. Headless Chromium does not freeze a visible page
    (Page.setWebLifecycleState leaves it running), and to the other tabs a paused page
    is what a frozen one is: it runs no task, answers nothing, and keeps its lock."""
    cdp = await tabs.context.new_cdp_session(page.page)
    if how == "close":
        await tabs.close(page)
    elif how == "crash":
        tabs.pages.remove(page)
        with contextlib.suppress(Exception):  # the answer dies with the page
            await asyncio.wait_for(cdp.send("Page.crash"), 0.5)
    else:
        await cdp.send("Debugger.enable")
        await cdp.send("Debugger.pause")

        async def thaw() -> None:
            await cdp.send("Debugger.resume")
        return thaw

    async def nothing() -> None:
        pass
    return nothing


@pytest.mark.parametrize(("how", "transport"), [
    ("close", "sse"), ("close", "longpoll"), ("crash", "sse"), ("freeze", "sse"),
])
async def test_leader_gone_mid_stream_hands_over_and_loses_and_repeats_nothing(
    chromium: Chromium, how: str, transport: str
) -> None:
    rate = 100  # messages per second, published all along
    async with run_page_server(channels=HISTORY) as server, chromium.tabs(WATCH) as tabs:
        pages, _ = await open_tabs(tabs, page_url(server.port), 4)
        for page in pages:
            await page.start(["feed"], transports=[transport], connectTimeout=2, **FAST_RECONNECT)
            await page.wait_connected(["feed"])
            await page.eval(RECORD_ARRIVALS, ["feed"])
        leader = await the_leader(pages)
        others = [page for page in pages if page is not leader]

        published: list[float] = []  # when each n was published (ms)

        async def feed() -> None:
            while True:
                published.append(time.time() * 1000)
                await server.hub.publish("feed", len(published) - 1)
                await asyncio.sleep(1 / rate)

        feeding = asyncio.create_task(feed())
        try:
            await asyncio.sleep(1)
            acted = time.time() * 1000
            thaw = await act_on(tabs, leader, how)
            await asyncio.sleep(4 if how == "freeze" else 2)  # a frozen one: 3 checks of 1 s
            if how == "freeze":
                await thaw()
                others.append(leader)  # it follows, and must end with everything too
                await asyncio.sleep(1)
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
        end = await server.hub.publish("feed", "end")
        for page in others:
            await page.until(f"T.messages.feed.at(-1)?.position.offset >= {end.offset}",
                             timeout=15, message="the end marker")
        await asyncio.sleep(0.2)

        new_leader = await the_leader(others)
        assert new_leader is not leader
        lost = duplicated = 0
        gaps = []
        for page in others:
            arrivals = await page.eval("window.arrivals.feed")
            offsets = [offset for _, offset, _ in arrivals]
            duplicated += len(offsets) - len(set(offsets))
            lost += len(set(range(1, end.offset + 1)) - set(offsets))
            assert [value for value, _, _ in arrivals] == [*range(len(published)), "end"]
            if page is not leader:
                # The handover: the longest a message published after the leader went
                # took to arrive.
                gaps.append(max(at - published[value] for value, _, at in arrivals
                                if value != "end" and published[value] >= acted))
        assert (lost, duplicated) == (0, 0)
        # (The server may hold the old leader's last poll until its poll_timeout.)
        assert stream_count(server) <= (1 if transport == "sse" else 2)
        print(f"\n[tabs] leader {how} on {transport}: handover {max(gaps):.0f} ms (the longest "
              f"a message published after it took to arrive; per tab: "
              f"{', '.join(f'{gap:.0f}' for gap in gaps)}); {len(published)} messages, "
              f"lost {lost}, duplicated {duplicated}")
        assert max(gaps) < seconds(4500 if how == "freeze" else 1500)
        for page in others:
            await page.eval("client.close()")


# --- 3. the persisted outbox ----------------------------------------------------------------

OUTBOX_KEY = "outbox-test"
#: The entries persisted under OUTBOX_KEY: each client writes an item of its own, named
#: the key and a suffix, and takes over one named the key alone (js-client/src/outbox.js).
STORED = f"""Object.keys(localStorage)
  .filter((name) => name == '{OUTBOX_KEY}' || name.startsWith('{OUTBOX_KEY} '))
  .flatMap((name) => JSON.parse(localStorage.getItem(name)))"""


async def test_offline_outbox_of_several_tabs_survives_reloads_and_lands_once(
    chromium: Chromium,
) -> None:
    publish_rules = {"*": rtlink.ChannelOptions(client_publish=True)}
    async with run_page_server(channels=publish_rules) as server, relay_to(server) as relay:
        listener = rtlink.Client(server.url, transports=["websocket"])
        await asyncio.wait_for(listener.connect(), seconds(5))
        heard = listener.subscribe("notes")
        await asyncio.wait_for(heard.wait_subscribed(), seconds(5))
        try:
            origin = f"http://127.0.0.1:{relay.port}"
            options = {"persist": OUTBOX_KEY, **FAST_RECONNECT}
            relay.refuse = True  # offline; the pages themselves come from the server
            async with chromium.tabs(WATCH) as tabs:
                pages = []
                for _ in range(3):
                    page = await tabs.open()
                    await page.load_bypassing(origin, f"http://127.0.0.1:{server.port}")
                    await page.goto(page_url(relay.port))
                    await page.start([], **options)
                    pages.append(page)
                first, second, third = pages
                for n in range(3):
                    await first.eval("(n) => T.publish('notes', {tab: 1, n})", n)
                    await second.eval("(n) => T.publish('notes', {tab: 2, n})", n)
                # One storage key for the tabs, an item each (the browser passes the
                # items of one tab to the others a moment later).
                await third.until(f"{STORED}.length == 6", message="6 entries in storage")
                saved = await third.eval(STORED)

                # Still offline: the first tab (the leader) goes, the second reloads.
                assert await the_leader(pages) is first
                await tabs.close(first)
                await second.reload()
                await second.start([], **options)
                assert await second.eval("client.outboxSize") == 6  # its own and the first's
                assert relay.connections_made == 0

                relay.refuse = False
                notes = await collect(heard, 6)
                assert sorted((m.data["tab"], m.data["n"]) for m in notes) == \
                    [(tab, n) for tab in (1, 2) for n in range(3)]
                await second.until(f"{STORED}.length == 0",
                                   message="the outbox removed from storage")
                assert await second.eval("client.outboxSize") == 0

                # The same publishes again (pages closed after the server applied them,
                # before the acks arrived): the keys make them land once.
                await third.eval(f"(saved) => localStorage.setItem('{OUTBOX_KEY} x', saved)",
                                 json.dumps(saved))  # as a closed tab left it
                await third.reload()
                await third.start([], **options)
                await third.until(f"{STORED}.length == 0",
                                  message="the replayed outbox acknowledged")
                marker = await server.hub.publish("notes", "marker")
                (after,) = await collect(heard, 1)
                assert (after.data, after.position) == ("marker", marker), \
                    f"a publish landed twice: {after}"
                for page in (second, third):
                    await page.eval("client.close()")
        finally:
            await listener.close()


# --- 4. idle channels on long polling --------------------------------------------------------


@pytest.mark.slow
async def test_eight_tabs_on_long_polling_idle_for_a_minute_none_stalls(
    chromium: Chromium,
) -> None:
    # The server's default poll_timeout (25 s): every held poll is answered and
    # renewed twice while the channels are idle.
    idle = 60
    async with run_page_server(channels=HISTORY) as server, chromium.tabs(WATCH) as tabs:
        pages, _ = await open_tabs(tabs, page_url(server.port), 8)
        for n, page in enumerate(pages):
            await page.start(["common", f"own{n}"], transports=["longpoll"], **FAST_RECONNECT)
            await page.wait_connected(["common", f"own{n}"])
        await asyncio.sleep(idle)

        started = time.monotonic()
        await server.hub.publish("common", "after the idle minute")
        for n in range(8):
            await server.hub.publish(f"own{n}", n)
        for n, page in enumerate(pages):
            await page.until(f"T.messages.common.length && T.messages.own{n}.length",
                             timeout=5, message=f"page {n + 1} after the idle minute")
        delivered = time.monotonic() - started
        # And a ninth page still loads at once.
        started = time.monotonic()
        ninth = await tabs.open(page_url(server.port))
        loaded = time.monotonic() - started
        await ninth.start(["common"], transports=["longpoll"], **FAST_RECONNECT)
        await ninth.wait_connected(["common"])
        for page in pages:
            # Connected all along (a tab that joins a connected leader goes straight to
            # 'connected').
            assert [s["newState"] for s in await page.states()][-1:] == ["connected"]
            assert "disconnected" not in [s["newState"] for s in await page.states()]
            assert [m["data"] for m in await page.messages("common")] == ["after the idle minute"]
        print(f"\n[tabs] 8 tabs on long polling idle {idle} s: none stalled, all delivered "
              f"{delivered * 1000:.0f} ms after publishing; a 9th page loaded in "
              f"{loaded * 1000:.0f} ms")
        assert loaded < seconds(3)
        for page in [*pages, ninth]:
            await page.eval("client.close()")


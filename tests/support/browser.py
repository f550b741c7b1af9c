"""A real Chromium, driven by Playwright, running the browser client against real servers.

Tests get a :class:`Chromium` from the ``chromium`` fixture (tests/e2e/browser/conftest.py)
and open pages with it::

    async with run_page_server(channels=...) as server:
        async with chromium.page(page_url(server.port)) as page:
            await page.start(transports=["sse"], codec="json", channels=["news"])
            await page.until("client.state == 'connected'")

:func:`run_page_server` is :func:`tests.support.run_server` plus a blank test page at
``/test.html`` that loads ``{path}/client.js`` (the build the server ships), so pages
are same-origin with the server -- also when loaded through a relay or an nginx in
front of it, which forward every path. The page defines ``window.T``, a few helpers
that record everything the client reports (state changes, messages, publish
outcomes) for the tests to read with ``page.eval(...)``; the client itself is
``window.client``.

Every page gets a fresh browser context, so its storage (the client's memory of the
working transport per origin, a persisted outbox) starts empty. Console errors and
warnings of the page are printed (pytest shows them when a test fails); an uncaught
error in the page fails the test.

Needs Chromium (Debian package ``chromium``) and the ``playwright`` Python package
(the ``dev`` extras; its own browser downloads are not used). When either is missing
the browser tests are skipped -- under ``CI=true`` they fail instead (``.ci/test``
installs Chromium), like :func:`tests.support.proxy.require_nginx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from aiohttp import web

import rtlink
from tests.support import Server, find_binary, missing_component, seconds

try:
    from playwright import async_api as playwright_api
except ImportError:  # reported by require_browser()
    playwright_api = None  # type: ignore[assignment]


CHROMIUM = find_binary("chromium", "chromium-browser")

#: Flags that keep a headless Chromium quiet and self-contained (no sandbox: tests may
#: run as root in a container; no QUIC, background downloads or sync).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: The blank page tests drive, served by :func:`run_page_server` next to rtlink.
TEST_PAGE = "/test.html"


def require_browser() -> str:
    """The Chromium binary; skip the test when Chromium or Playwright is missing (fail
    under ``CI=true``)."""
    missing = []
    if CHROMIUM is None:
        missing.append("chromium not installed (Debian package chromium)")
    if playwright_api is None:
        missing.append("the playwright Python package not installed "
                       "(pip install 'playwright>=1.45', part of the dev extras)")
    if missing:
        missing_component("; ".join(missing) + ": cannot run the browser tests")
    assert CHROMIUM is not None
    return CHROMIUM


def expect(target: Any) -> Any:
    """Playwright's ``expect`` (assertions that retry until they hold or time out)."""
    return playwright_api.expect(target)


def client_script() -> bytes:
    """The script-tag build of the browser client, as the server serves it."""
    page = importlib.resources.files("rtlink").joinpath("static/client.js")
    try:
        return page.read_bytes()
    except FileNotFoundError:
        pytest.fail("rtlink/static/client.js is missing: build it with "
                    "`cd js-client && node build.mjs`", pytrace=False)


# --- the test page ----------------------------------------------------------------------

_PAGE_SCRIPT = """
// Records what the client reports, for the tests to read (tests/support/browser.py).

/** The browser's WebSocket, recording what each socket negotiated and how it closed. */
class RecordingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    const record = {url: args[0], protocol: null, extensions: null, close: null};
    T.sockets.push(record);
    this.addEventListener('open', () => {
      Object.assign(record, {protocol: this.protocol, extensions: this.extensions});
    });
    this.addEventListener('close', ({code, reason, wasClean}) => {
      record.close = {code, reason, wasClean};
    });
  }
}

const T = (window.T = {
  states: [],         // every StateChange, in order
  messages: {},       // channel -> [{data, position}] delivered
  subscriptions: {},  // channel -> Subscription
  subscribed: {},     // channel -> [SubscribedEvent]
  subscribeErrors: {},// channel -> error (refused for good)
  publishes: [],      // T.publish() outcomes: {state: pending|acked|failed, position, error}
  connectError: null, // why connect() rejected (the client stopped)
  sockets: [],        // with start({recordSockets: true}): each WebSocket as the page saw it
  describe: (error) => ({name: error.name, code: error.code ?? null, message: error.message}),

  /** Create window.client with `options`, subscribe to `channels` (names, or an
   * object channel -> since), connect. */
  start(options = {}, channels = []) {
    if (options.recordSockets) options.WebSocket = RecordingWebSocket;
    delete options.recordSockets;
    const client = (window.client = new rtlink.Client(RT_PATH, options));
    client.on('state', (change) => T.states.push(change));
    const since = Array.isArray(channels)
      ? Object.fromEntries(channels.map((channel) => [channel, null])) : channels;
    for (const channel in since) T.subscribe(channel, since[channel]);
    client.connect().catch((error) => { T.connectError = T.describe(error); });
  },

  subscribe(channel, since = null, last = undefined) {
    const subscription = window.client.subscribe(channel, {since, last});
    T.subscriptions[channel] = subscription;
    T.messages[channel] = [];
    T.subscribed[channel] = [];
    subscription.on('message', ({data, position}) => T.messages[channel].push({data, position}));
    subscription.on('subscribed', (event) => T.subscribed[channel].push(event));
    subscription.on('error', (error) => { T.subscribeErrors[channel] = T.describe(error); });
    return subscription;
  },

  /** Publish without waiting; the outcome lands in T.publishes[returned index]. */
  publish(channel, data, key = null) {
    const outcome = {state: 'pending', position: null, error: null};
    T.publishes.push(outcome);
    window.client.publish(channel, data, key ? {key} : {}).then(
      (position) => Object.assign(outcome, {state: 'acked', position}),
      (error) => Object.assign(outcome, {state: 'failed', error: T.describe(error)}));
    return T.publishes.length - 1;
  },

  /** The transports tried, in order (from the 'connecting' state changes). */
  tried: () => T.states.filter((s) => s.newState == 'connecting').map((s) => s.transport),

  /** A summary for failure messages. */
  summary() {
    const client = window.client;
    const counts = {};
    for (const channel in T.messages) counts[channel] = T.messages[channel].length;
    return {
      state: client?.state, transport: client?.transport, outboxSize: client?.outboxSize,
      states: T.states.map((s) => `${s.newState}(${s.transport ?? s.code ?? ''})`).join(' '),
      messages: counts, connectError: T.connectError, subscribeErrors: T.subscribeErrors,
    };
  },
});
"""


def page_html(path: str = "/rt") -> str:
    """The test page for rtlink mounted at ``path``."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>rtlink browser test</title>
<script src="{path}/client.js"></script>
<script>
"use strict";
const RT_PATH = {json.dumps(path)};
{_PAGE_SCRIPT}
</script>
</head>
<body></body>
</html>
"""


def add_test_page(app: web.Application, path: str = "/rt") -> None:
    """Serve the test page at :data:`TEST_PAGE` on ``app`` (rtlink mounted at ``path``)."""
    body = page_html(path)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    app.router.add_get(TEST_PAGE, page)


def page_url(port: int, page: str = TEST_PAGE) -> str:
    """The URL of a page of the server (or relay, or proxy) listening on ``port``."""
    return f"http://127.0.0.1:{port}{page}"


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, hub: rtlink.Hub,
                    path: str = "/rt") -> AsyncIterator[Server]:
    """Serve an application (with ``hub`` attached at ``path``) on a free loopback port."""
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = Server(hub, runner, runner.addresses[0][1], path)
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def run_page_server(hub: rtlink.Hub | None = None, path: str = "/rt",
                          **hub_options: Any) -> AsyncIterator[Server]:
    """Like :func:`tests.support.run_server`, plus the test page at :data:`TEST_PAGE`."""
    if hub is None:
        hub = rtlink.Hub(**hub_options)
    app = web.Application()
    rtlink.attach(app, hub, path=path)
    add_test_page(app, path)
    async with serve_app(app, hub, path) as server:
        yield server


# --- pages ------------------------------------------------------------------------------


class PageError(AssertionError):
    """An uncaught error (or unhandled rejection) happened in the page."""


class BrowserPage:
    """A Playwright page with the helpers the tests need; ``page`` is the raw one."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            print(f"[{self.name} console.{message.type}] {message.text}")

    def _on_page_error(self, error: Any) -> None:
        text = getattr(error, "stack", None) or str(error)
        print(f"[{self.name} uncaught] {text}")
        self.errors.append(text)

    def check(self) -> None:
        """Fail if an uncaught error happened in the page so far."""
        if self.errors:
            raise PageError(f"uncaught error in the page: {self.errors[0]}")

    async def goto(self, url: str) -> None:
        response = await self.page.goto(url, timeout=seconds(15) * 1000)
        assert response is None or response.ok, f"GET {url}: HTTP {response.status}"
        self.check()

    async def reload(self) -> None:
        await self.page.reload(timeout=seconds(15) * 1000)
        self.check()

    async def eval(self, expression: str, arg: Any = None) -> Any:
        """``page.evaluate``: an expression, or a function called with ``arg``; a
        promise is awaited."""
        result = await self.page.evaluate(expression, arg)
        self.check()
        return result

    async def summary(self) -> Any:
        """What the test page's recorder saw (for failure messages)."""
        with contextlib.suppress(Exception):
            return await self.page.evaluate("typeof T == 'object' ? T.summary() : null")
        return None

    async def until(self, expression: str, timeout: float = 5.0, message: str = "",
                    arg: Any = None) -> Any:
        """Evaluate ``expression`` until it is truthy and return its value; fail after
        ``timeout`` seconds (scaled), or at once on an uncaught error in the page."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds(timeout)
        while True:
            value = await self.eval(expression, arg)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {message or expression}; "
                    f"page: {await self.summary()}"
                )
            await asyncio.sleep(0.02)

    async def start(self, channels: Iterable[str] | dict[str, Any] = (),
                    **options: Any) -> None:
        """``T.start(options, channels)``: create ``window.client``, subscribe to
        ``channels`` (names, or a dict name -> ``since`` position), connect."""
        channels = dict(channels) if isinstance(channels, dict) else list(channels)
        await self.eval("([options, channels]) => T.start(options, channels)",
                        [options, channels])

    async def wait_connected(self, channels: list[str] | tuple[str, ...] = (),
                             timeout: float = 10.0) -> None:
        """Wait until the client is connected and every channel is confirmed."""
        await self.until(
            "(channels) => client.state == 'connected'"
            " && channels.every((c) => T.subscribed[c]?.length)",
            timeout, f"connected and subscribed to {list(channels)}", arg=list(channels),
        )

    async def states(self) -> list[dict[str, Any]]:
        return list(await self.eval("T.states"))

    async def messages(self, channel: str) -> list[dict[str, Any]]:
        return list(await self.eval("(channel) => T.messages[channel]", channel))

    async def load_bypassing(self, origin: str, direct: str, path: str = "/rt") -> None:
        """Fetch the test page and the client script of ``origin`` (a relay, say) from
        ``direct`` (the server itself) instead: the page loads, and reloads, even while
        ``origin`` refuses connections. Everything else (rtlink's endpoints) still goes
        to ``origin``.

        (A page answered by ``route.fulfill`` would have no address; Chromium's local
        network access checks then block its WebSockets to 127.0.0.1.)
        """

        async def bypass(route: Any) -> None:
            await route.continue_(url=direct + route.request.url[len(origin):])

        await self.page.route(origin + TEST_PAGE, bypass)
        await self.page.route(f"{origin}{path}/client.js", bypass)


class Chromium:
    """A running headless Chromium; :meth:`page` opens pages in fresh contexts."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self._pages = 0

    @contextlib.asynccontextmanager
    async def page(self, url: str | None = None) -> AsyncIterator[BrowserPage]:
        """A new page in a new browser context (clean storage), at ``url`` if given.
        The page is closed at the end; an uncaught error in it fails the test."""
        context = await self.browser.new_context()
        try:
            self._pages += 1
            page = BrowserPage(await context.new_page(), f"page {self._pages}")
            if url is not None:
                await page.goto(url)
            yield page
            page.check()
        finally:
            await context.close()

    @contextlib.asynccontextmanager
    async def tabs(self, init_script: str | None = None) -> AsyncIterator[Tabs]:
        """A new browser context for several pages (:class:`Tabs`), each running
        ``init_script`` first if given. Closed at the end; an uncaught error in any of
        its pages fails the test."""
        context = await self.browser.new_context()
        try:
            if init_script is not None:
                await context.add_init_script(init_script)
            tabs = Tabs(self, context)
            yield tabs
            for page in tabs.pages:
                page.check()
        finally:
            await context.close()


class Tabs:
    """Pages of one browser context, as the tabs of one browser: they share storage,
    BroadcastChannel, Web Locks and the HTTP connections (at most 6 per host over
    HTTP/1.1). From :meth:`Chromium.tabs`."""

    def __init__(self, chromium: Chromium, context: Any) -> None:
        self.chromium = chromium
        self.context = context
        self.pages: list[BrowserPage] = []

    async def open(self, url: str | None = None) -> BrowserPage:
        """A new page (tab), at ``url`` if given."""
        self.chromium._pages += 1
        page = BrowserPage(await self.context.new_page(), f"page {self.chromium._pages}")
        self.pages.append(page)
        if url is not None:
            await page.goto(url)
        return page

    async def close(self, page: BrowserPage) -> None:
        """Close one tab, as the user does (its unload handlers run)."""
        self.pages.remove(page)
        await page.page.close(run_before_unload=True)


@contextlib.asynccontextmanager
async def launch_chromium() -> AsyncIterator[Chromium]:
    """Start Playwright and a headless Chromium (the system one); conftest.py shares
    one per test module."""
    executable = require_browser()
    client_script()  # fail early, before any server starts, if the build is missing
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            timeout=seconds(30) * 1000,
        )
        try:
            yield Chromium(browser)
        finally:
            await browser.close()

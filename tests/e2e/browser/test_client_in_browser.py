"""The browser client (js-client, as the server ships it) in a real Chromium.

Each test loads a page same-origin with a real rtlink server -- directly, through the
fault-injecting relay, or through a real nginx -- creates ``window.client`` there and
checks what the page saw against what Python published or received. The scenarios
mirror the Python client's (tests/e2e/test_fallback.py, tests/e2e/test_resume.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

import rtlink
from rtlink.cli import build_app
from tests.support import Feed, Server, collect, eventually, relay_to, seconds
from tests.support.browser import (
    Chromium,
    add_test_page,
    expect,
    page_url,
    run_page_server,
    serve_app,
)
from tests.support.proxy import run_nginx

# One event loop for the module: the browser (conftest.py) is shared by its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")

PUBLISH = {"*": rtlink.ChannelOptions(client_publish=True)}
HISTORY = {"*": rtlink.ChannelOptions(history_size=5000, client_publish=True)}
#: Reconnect quickly: the backoff itself is tested elsewhere.
FAST_RECONNECT = {"backoffBase": 0.02, "backoffCap": 0.2}
TRANSPORTS = ("websocket", "sse", "longpoll")
CODECS = ("json", "msgpack")
#: Data both codecs carry the same way (protocol.md 3.4).
SAMPLE = {"text": "héllo ✓", "n": 42, "x": 2.5, "ok": True, "none": None,
          "list": [1, "two", [3]], "nested": {"deep": {"er": -7}}}


def wire(position: rtlink.Position) -> dict[str, Any]:
    """A position as the browser client reports it."""
    return {"epoch": position.epoch, "offset": position.offset}


def new_states(states: list[dict[str, Any]]) -> list[str]:
    return [change["newState"] for change in states]


async def listen(url: str, channel: str, codec: str = "json") -> tuple[rtlink.Client,
                                                                       rtlink.Subscription]:
    """A Python client subscribed to ``channel`` (confirmed); close the client after."""
    client = rtlink.Client(url, codec=codec, transports=["websocket"])
    await asyncio.wait_for(client.connect(), seconds(5))
    subscription = client.subscribe(channel)
    await asyncio.wait_for(subscription.wait_subscribed(), seconds(5))
    return client, subscription


async def exactly(server: Server, subscription: rtlink.Subscription, count: int,
                  channel: str) -> list[rtlink.Message]:
    """Collect ``count`` messages, then check that the next one is a marker published
    now: nothing was delivered twice meanwhile (what came in between would be)."""
    messages = await collect(subscription, count) if count else []
    marker = await server.hub.publish(channel, "marker")
    (after,) = await collect(subscription, 1)
    assert (after.data, after.position) == ("marker", marker), \
        f"a duplicate or stray message arrived: {after}"
    return messages


# --- 1. every transport and codec -------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscribe_and_publish_on_each_transport_and_codec(
    chromium: Chromium, transport: str, codec: str
) -> None:
    async with run_page_server(channels=PUBLISH) as server:
        listener, heard = await listen(server.url, "room", codec)
        try:
            async with chromium.page(page_url(server.port)) as page:
                await page.start(["room"], transports=[transport], codec=codec,
                                 connectTimeout=seconds(3))
                await page.wait_connected(["room"])
                assert await page.eval("client.transport") == transport
                assert await page.eval("client.sessionId")

                # Python -> page.
                position = await server.hub.publish("room", SAMPLE)
                await page.until("T.messages.room.length >= 1")
                assert await page.messages("room") == [{"data": SAMPLE,
                                                        "position": wire(position)}]

                # page -> Python (and back to the page, which is subscribed too).
                acked = await page.eval(
                    "([channel, data]) => client.publish(channel, data)",
                    ["room", {"from": "page", "codec": codec}],
                )
                assert acked["offset"] == position.offset + 1
                first, second = await exactly(server, heard, 2, "room")
                assert (first.data, first.position) == (SAMPLE, position)
                assert second.data == {"from": "page", "codec": codec}
                assert wire(second.position) == acked
                await page.until("T.messages.room.length >= 3")  # ... the marker too
                assert [m["data"] for m in await page.messages("room")] == [
                    SAMPLE, {"from": "page", "codec": codec}, "marker"
                ]

                states = await page.states()
                assert [(s["newState"], s["transport"]) for s in states] == [
                    ("connecting", transport), ("connected", transport)
                ]
                await page.eval("client.close()")
                assert await page.eval("client.state") == "closed"
        finally:
            await listener.close()


# --- 2. negotiation and fallback behind real proxies -------------------------------------

#: Health-check deadline in the pages (connectTimeout): silent this long = failed.
DEADLINE = 1.0


async def negotiate(page: Any, feed: Feed, transport: str,
                    **options: Any) -> tuple[list[str], float]:
    """Start the page's client preferring WebSocket, subscribed to the feed after its
    start; wait for the first message and check the transport it ended on. Returns
    the transports tried and the seconds from start to the first message."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await page.start({feed.channel: wire(feed.start)}, connectTimeout=DEADLINE,
                     backoffBase=0.05, backoffCap=0.5, **options)
    await page.until(f"T.messages[{json.dumps(feed.channel)}].length >= 1",
                     timeout=DEADLINE * 4 + 5, message="the first message")
    elapsed = loop.time() - started
    tried = await page.eval("T.tried()")
    assert await page.eval("client.transport") == transport, f"tried {tried}"
    print(f"\n[browser fallback] {transport} via {tried}: first message {elapsed * 1000:.0f} ms "
          f"after start")
    return list(tried), elapsed


async def drain_exactly_once(page: Any, feed: Feed) -> None:
    """Stop the feed, then check the page got every message once, in order."""
    await asyncio.sleep(0.3)  # keep publishing for a while on the chosen transport
    await feed.__aexit__()
    end = await feed.server.hub.publish(feed.channel, "end")
    await page.until(f"T.messages.feed.at(-1)?.position.offset >= {end.offset}",
                     timeout=15, message="the end marker")
    data = [m["data"] for m in await page.messages(feed.channel)]
    assert data == [*range(feed.published), "end"]


@pytest_asyncio.fixture(loop_scope="module")
async def feed_server() -> AsyncIterator[Server]:
    # Short heartbeats so that a stream that went quiet is noticed within the test.
    async with run_page_server(channels=HISTORY, ping_interval=1.0, pong_timeout=1.0,
                               poll_timeout=1.0) as running:
        yield running


def transitions(states: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(new state, transport) of each change; the transport is None when disconnected."""
    return [(s["newState"], s["transport"]) for s in states]


@pytest.mark.proxy
async def test_proxy_stripping_upgrade_ends_on_sse_and_is_remembered(
    chromium: Chromium, feed_server: Server
) -> None:
    server = feed_server
    async with run_nginx(server.port, "strip_upgrade") as proxy, Feed(server) as feed:
        async with chromium.page(proxy.url("/test.html")) as page:
            tried, elapsed = await negotiate(page, feed, "sse")
            assert tried == ["websocket", "sse"]
            assert elapsed < seconds(DEADLINE + 2)  # WebSocket fails at once (400)
            assert transitions(await page.states()) == [
                ("connecting", "websocket"), ("disconnected", None),
                ("connecting", "sse"), ("connected", "sse"),
            ]
            await drain_exactly_once(page, feed)
            # The page remembers the working transport for the origin: after a
            # reload, a new client starts on SSE, without a failed WebSocket first.
            remembered = json.loads(await page.eval("localStorage['rtlink:transports']"))
            assert remembered[proxy.url("").rstrip("/")][0] == "sse"
            await page.reload()
            await page.start(["feed"], connectTimeout=DEADLINE)
            await page.wait_connected(["feed"])
            assert await page.eval("T.tried()") == ["sse"]
            await page.eval("client.close()")


@pytest.mark.proxy
async def test_proxy_stripping_upgrade_and_buffering_ends_on_long_polling(
    chromium: Chromium, feed_server: Server
) -> None:
    server = feed_server
    async with run_nginx(server.port, "strip_upgrade_buffering") as proxy, \
            Feed(server) as feed:
        async with chromium.page(proxy.url("/test.html")) as page:
            tried, elapsed = await negotiate(page, feed, "longpoll")
            assert tried == ["websocket", "sse", "longpoll"]
            # WebSocket fails at once (400); SSE is held by the proxy: one deadline.
            assert elapsed < seconds(DEADLINE + 2)
            assert transitions(await page.states()) == [
                ("connecting", "websocket"), ("disconnected", None),
                ("connecting", "sse"), ("disconnected", None),
                ("connecting", "longpoll"), ("connected", "longpoll"),
            ]
            states = await page.states()
            # SSE opened (200) but its first frame was held by the proxy: it failed
            # the health check after the deadline (no close code: 1006).
            assert states[3]["code"] == 1006
            await drain_exactly_once(page, feed)
            await page.eval("client.close()")


@pytest.mark.proxy
async def test_transparent_proxy_keeps_websocket(
    chromium: Chromium, feed_server: Server
) -> None:
    server = feed_server
    async with run_nginx(server.port, "transparent") as proxy, Feed(server) as feed:
        async with chromium.page(proxy.url("/test.html")) as page:
            tried, _ = await negotiate(page, feed, "websocket")
            assert tried == ["websocket"]
            assert transitions(await page.states()) == [
                ("connecting", "websocket"), ("connected", "websocket"),
            ]
            await drain_exactly_once(page, feed)
            await page.eval("client.close()")


async def test_websocket_that_opens_then_goes_silent_falls_back_and_switches_back(
    chromium: Chromium, feed_server: Server
) -> None:
    server = feed_server
    async with relay_to(server) as relay, Feed(server) as feed:
        relay.silence_websockets = True
        async with chromium.page(page_url(relay.port)) as page:
            tried, elapsed = await negotiate(page, feed, "sse", probeInterval=0.5)
            assert tried[:2] == ["websocket", "sse"]
            assert elapsed < seconds(DEADLINE + 2)
            # The proxy is fixed: the background probe finds WebSocket working again
            # and the client switches to it without losing or doubling a message.
            relay.silence_websockets = False
            await page.until("client.transport == 'websocket'", timeout=10,
                             message="the switch back to websocket")
            await drain_exactly_once(page, feed)
            await page.eval("client.close()")


# --- 3. cuts mid-stream -------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "codec"), [
    ("websocket", "json"), ("websocket", "msgpack"), ("sse", "json"), ("longpoll", "json"),
])
async def test_cuts_mid_stream_lose_and_repeat_nothing(
    chromium: Chromium, transport: str, codec: str
) -> None:
    # Three network cuts (the relay aborts every connection), then a client-side drop.
    count, rate = 300, 150
    cuts, drop = (75, 150, 225), 262
    async with run_page_server(channels=HISTORY) as server, relay_to(server) as relay:
        # Through the relay, page included (same origin): the cuts hit the page's
        # connections, whatever they are.
        async with chromium.page(page_url(relay.port)) as page:
            await page.start(["feed"], transports=[transport], codec=codec,
                             connectTimeout=2, **FAST_RECONNECT)
            await page.wait_connected(["feed"])
            made = relay.connections_made
            for n in range(count):
                if n in cuts or n == drop:
                    # Cut a working connection, not one still reconnecting.
                    await page.until("client.state == 'connected'", timeout=10)
                    if n == drop:
                        await page.eval("client.reconnect()")
                    else:
                        relay.cut()
                await server.hub.publish("feed", {"n": n})
                await asyncio.sleep(1 / rate)
            end = await server.hub.publish("feed", "end")
            await page.until(f"T.messages.feed.at(-1)?.position.offset >= {end.offset}",
                             timeout=20, message="the end marker")
            messages = await page.messages("feed")
            assert [m["data"] for m in messages] == [*({"n": n} for n in range(count)), "end"]
            offsets = [m["position"]["offset"] for m in messages]
            assert offsets == list(range(1, count + 2))
            assert len({m["position"]["epoch"] for m in messages}) == 1
            # Every cut forced new connections through the relay. On long polling a cut
            # between two polls finds the connection idle in Chromium's pool, and the
            # next poll may take a connection opened for a send: count at least two.
            assert relay.connections_made >= made + (
                2 if transport == "longpoll" else len(cuts) + 1)
            drops = new_states(await page.states()).count("disconnected")
            print(f"\n[browser cuts] {transport}/{codec}: {drops} disconnects seen, "
                  f"{relay.connections_made - made} new connections")
            # A cut stream or socket is a disconnect. Chromium re-sends a poll whose
            # reused connection was reset before any answer on a new connection by
            # itself, so on long polling the client may see only its own drop.
            assert drops >= (1 if transport == "longpoll" else len(cuts) + 1)
            await page.eval("client.close()")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscription_changes_mid_stream_lose_and_repeat_nothing(
    chromium: Chromium, transport: str
) -> None:
    # On SSE every change of the subscription set opens a new stream, and the old one
    # keeps delivering until the new one speaks: the repeats at that seam must be
    # dropped. On long polling the poll in flight is dropped and made again.
    async with run_page_server(channels=HISTORY) as server:
        async with chromium.page(page_url(server.port)) as page:
            await page.start(["feed"], transports=[transport], **FAST_RECONNECT)
            await page.wait_connected(["feed"])
            async with Feed(server, rate=300) as feed:
                for n in range(6):
                    await asyncio.sleep(0.1)
                    if n % 3 == 2:
                        await page.eval(f"T.subscriptions.side{n - 1}.unsubscribe()")
                    else:
                        await page.eval(f"T.subscribe('side{n}')")
                        await page.until(f"T.subscribed.side{n}.length", message=f"side{n}")
                        await server.hub.publish(f"side{n}", n)
                await asyncio.sleep(0.1)
            end = await server.hub.publish("feed", "end")
            await page.until(f"T.messages.feed.at(-1)?.position.offset >= {end.offset}",
                             timeout=15, message="the end marker")
            data = [m["data"] for m in await page.messages("feed")]
            assert data == ["start", *range(feed.published), "end"]
            for n in (0, 3, 4):
                assert [m["data"] for m in await page.messages(f"side{n}")] == [n]
            assert new_states(await page.states()) == ["connecting", "connected"]
            await page.eval("client.close()")


# --- 4. the persisted outbox --------------------------------------------------------------

OUTBOX_KEY = "outbox-test"
#: The entries persisted under OUTBOX_KEY, as JSON: the client writes an item named the
#: key and a suffix of its own (several tabs may share the key; js-client/src/outbox.js),
#: and takes over one named the key alone too (written by older clients).
STORED = f"""JSON.stringify(Object.keys(localStorage)
  .filter((name) => name == '{OUTBOX_KEY}' || name.startsWith('{OUTBOX_KEY} '))
  .flatMap((name) => JSON.parse(localStorage.getItem(name))))"""


async def test_offline_outbox_survives_a_reload_and_lands_once(chromium: Chromium) -> None:
    async with run_page_server(channels=PUBLISH) as server, relay_to(server) as relay:
        listener, heard = await listen(server.url, "notes")
        try:
            origin = f"http://127.0.0.1:{relay.port}"
            async with chromium.page() as page:
                # The server is unreachable through the relay from the start; the page
                # itself (and its reloads) comes from the server, past the relay.
                relay.refuse = True
                await page.load_bypassing(origin, f"http://127.0.0.1:{server.port}")
                await page.goto(page_url(relay.port))
                options = {"persist": OUTBOX_KEY, **FAST_RECONNECT}
                await page.start([], **options)
                for n in range(3):
                    await page.eval("(n) => T.publish('notes', {n})", n)
                assert await page.eval("client.outboxSize") == 3
                assert await page.eval("client.state") != "connected"
                saved = await page.eval(STORED)
                assert saved is not None and len(json.loads(saved)) == 3

                # Reload while still offline: the outbox comes back from storage.
                await page.reload()
                await page.start([], **options)
                assert await page.eval("client.outboxSize") == 3
                assert relay.connections_made == 0
                relay.refuse = False
                notes = await exactly(server, heard, 3, "notes")
                assert [m.data for m in notes] == [{"n": 0}, {"n": 1}, {"n": 2}]
                await page.until(f"{STORED} == '[]'",
                                 message="the outbox removed from storage")
                assert await page.eval("client.outboxSize") == 0

                # The same publishes again (a page closed after the server applied them
                # but before the acks arrived): the keys make them land once.
                await page.eval("(saved) => { client.close();"
                                f" localStorage.setItem('{OUTBOX_KEY}', saved) }}", saved)
                await page.reload()
                await page.start([], **options)
                await page.until("client.state == 'connected'")
                await page.until(f"{STORED} == '[]'",
                                 message="the replayed outbox acknowledged")
                assert await page.eval("client.outboxSize") == 0
                await exactly(server, heard, 0, "notes")  # nothing new before a marker
                await page.eval("client.close()")
        finally:
            await listener.close()


# --- 5. the demo page ---------------------------------------------------------------------


@pytest.mark.parametrize(("query", "transport"), [("", "websocket"),
                                                  ("?transport=longpoll", "longpoll")])
async def test_demo_page_connects_and_chats(
    chromium: Chromium, query: str, transport: str
) -> None:
    app, hub = build_app()
    async with serve_app(app, hub) as server:
        listener, heard = await listen(server.url, "chat:lobby")
        try:
            async with chromium.page(page_url(server.port, "/" + query)) as browser_page:
                page = browser_page.page
                timeout = seconds(10) * 1000
                await expect(page.locator("#state")).to_have_text("connected", timeout=timeout)
                await expect(page.locator("#transport")).to_have_text(transport,
                                                                      timeout=timeout)
                await page.fill("#text", f"hello over {transport}")
                await page.press("#text", "Enter")  # submits the #send form
                await expect(page.locator("#log")).to_contain_text(f"hello over {transport}",
                                                                   timeout=timeout)
                (said,) = await collect(heard, 1)
                assert said.data["text"] == f"hello over {transport}"
                # And what others say shows up too.
                await hub.publish("chat:lobby", {"text": "hi from python", "from": "py"})
                await expect(page.locator("#log")).to_contain_text("hi from python",
                                                                   timeout=timeout)
                await expect(page.locator("#state")).to_have_text("connected", timeout=timeout)
        finally:
            await listener.close()


# --- 6. close codes -------------------------------------------------------------------------


async def first_websocket_close(page: Any, compressed: bool) -> dict[str, Any]:
    """How the page's first WebSocket (started with ``recordSockets``) closed, once it
    did; checks that permessage-deflate was negotiated on it if and only if
    ``compressed`` (the hub's ``websocket_compression``): Chromium always offers it."""
    socket = await page.until("T.sockets[0]?.close && T.sockets[0]",
                              message="the WebSocket to close")
    assert ("permessage-deflate" in (socket["extensions"] or "")) == compressed, socket
    return dict(socket["close"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_credentials_close_the_client_with_4500(
    chromium: Chromium, transport: str
) -> None:
    calls: list[str | None] = []

    def authenticate(request: Any) -> str:
        # Long polling sends the token in a header; WebSocket and SSE find no /ticket
        # route on this server (a custom hook) and fall back to the URL.
        header = request.headers.get("Authorization", "")
        calls.append(header.removeprefix("Bearer ") or request.query.get("token"))
        raise rtlink.AuthenticationError("bad token")

    # Compressed: the close code must survive permessage-deflate too.
    async with run_page_server(authenticate=authenticate, websocket_compression=True) as server:
        async with chromium.page(page_url(server.port)) as page:
            await page.start(["news"], transports=[transport], token="bad",
                             recordSockets=True, **FAST_RECONNECT)
            await page.until("client.state == 'closed'", message="the client to stop")
            states = await page.states()
            assert [(s["newState"], s["code"]) for s in states] == [
                ("connecting", None), ("closed", 4500)
            ]
            assert "bad token" in states[-1]["reason"]
            error = await page.until("T.connectError")
            assert (error["name"], error["code"]) == ("ClientClosed", 4500)
            assert await page.eval("T.subscribed.news.length") == 0
            if transport == "websocket":
                # The browser itself saw the server's close code and reason.
                close = await first_websocket_close(page, compressed=True)
                assert (close["code"], close["reason"]) == (4500, "bad token")
            assert calls == ["bad"]  # never retried


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_shutdown_disconnects_with_1001_and_keeps_trying(
    chromium: Chromium, transport: str
) -> None:
    async with run_page_server() as server:
        async with chromium.page(page_url(server.port)) as page:
            await page.start(["news"], transports=[transport], recordSockets=True,
                             **FAST_RECONNECT)
            await page.wait_connected(["news"])
            await eventually(lambda: bool(server.hub.connections), message="a connection")
            await server.stop()  # closes every connection with 1001 (going away)
            await page.until("T.states.some((s) => s.newState == 'disconnected')",
                             message="the disconnect")
            states = await page.states()
            change = next(s for s in states if s["newState"] == "disconnected")
            assert (change["code"], change["reason"]) == (1001, "server shutting down")
            if transport == "websocket":
                close = await first_websocket_close(page, compressed=False)
                assert (close["code"], close["reason"]) == (1001, "server shutting down")
            # It keeps trying to reconnect (the server is gone: those attempts fail).
            await page.until("T.states.filter((s) => s.newState == 'connecting').length >= 2",
                             message="a reconnect attempt")
            assert "closed" not in new_states(await page.states())
            assert await page.eval("T.connectError") is None
            await page.eval("client.close()")


# --- 7. credentials: TokenAuth, tickets, expiry -------------------------------------------

SECRET = "browser-test-secret-0123456789abcdef"
#: What the page's token function (``fetch('/token')``) gets: a fresh token each time.
TOKEN_FUNCTION = "() => fetch('/token').then((response) => response.text())"


#: One request as :func:`run_token_server` records it.
Seen = dict[str, Any]


@contextlib.asynccontextmanager
async def run_token_server(auth: rtlink.TokenAuth, ttl: float = 3600.0,
                           **hub_options: Any) -> AsyncIterator[tuple[Server, list[Seen]]]:
    """A page server whose hub authenticates with ``auth``, with a ``/token`` route
    minting a token for "alice" (``ttl`` seconds) per GET. Also yields every request
    it received: method, path, query, the Authorization header (None if absent), and
    the URL as sent."""
    seen: list[Seen] = []

    @web.middleware
    async def record(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     ) -> web.StreamResponse:
        seen.append({"method": request.method, "path": request.path,
                     "query": dict(request.query), "url": str(request.rel_url),
                     "authorization": request.headers.get("Authorization")})
        return await handler(request)

    async def token(request: web.Request) -> web.Response:
        return web.Response(text=auth.mint("alice", ttl=ttl),
                            headers={"Cache-Control": "no-store"})

    hub = rtlink.Hub(authenticate=auth, **hub_options)
    app = web.Application(middlewares=[record])
    rtlink.attach(app, hub)
    add_test_page(app)
    app.router.add_get("/token", token)
    async with serve_app(app, hub) as server:
        yield server, seen


def to(seen: list[Seen], path: str) -> list[Seen]:
    """The recorded requests to ``path``."""
    return [request for request in seen if request["path"] == path]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_travels_in_a_header_or_as_a_ticket_never_in_a_url(
    chromium: Chromium, transport: str
) -> None:
    auth = rtlink.TokenAuth(SECRET)
    token = auth.mint("alice")
    bearer = f"Bearer {token}"
    async with run_token_server(auth, channels=PUBLISH) as (server, seen):
        async with chromium.page(page_url(server.port)) as page:
            await page.start(["room"], transports=[transport], token=token)
            await page.wait_connected(["room"])
            (connection,) = server.hub.connections
            assert connection.identity.subject == "alice"
            acked = await page.eval("() => client.publish('room', 'hi')")
            assert acked["offset"] == 1
            if transport == "sse":
                # A new subscription reopens the stream: with a ticket of its own (the
                # first one was used up), and the server accepts it.
                await page.eval("T.subscribe('second')")
                await page.wait_connected(["room", "second"])

            assert not any(token in request["url"] for request in seen), "token in a URL"
            stream_path = {"websocket": "/rt/ws", "sse": "/rt/sse", "longpoll": "/rt/poll"}
            streams = to(seen, stream_path[transport])
            tickets = to(seen, "/rt/ticket")
            if transport == "longpoll":
                assert tickets == []
                assert len(streams) >= 2  # the first poll and the one after it
                assert all(poll["authorization"] == bearer for poll in streams)
                assert all("ticket" not in poll["query"] for poll in streams)
            else:
                count = 2 if transport == "sse" else 1
                assert [(t["method"], t["authorization"]) for t in tickets] == \
                    [("POST", bearer)] * count
                assert len(streams) == count
                issued = {stream["query"].get("ticket") for stream in streams}
                assert None not in issued and len(issued) == count
                assert all(stream["authorization"] is None for stream in streams)
            sends = to(seen, "/rt/send")
            assert bool(sends) == (transport != "websocket")  # the publish (and any pong)
            assert all(send["authorization"] == bearer for send in sends)
            await page.eval("client.close()")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_token_stops_the_client_with_4500_and_the_server_reason(
    chromium: Chromium, transport: str
) -> None:
    auth = rtlink.TokenAuth(SECRET)
    forged = rtlink.TokenAuth("another-secret-0123456789abcdef-xyz").mint("mallory")
    async with run_token_server(auth) as (server, seen):
        async with chromium.page(page_url(server.port)) as page:
            await page.start(["news"], transports=[transport], token=forged,
                             **FAST_RECONNECT)
            await page.until("client.state == 'closed'", message="the client to stop")
            states = await page.states()
            assert [(s["newState"], s["code"]) for s in states] == [
                ("connecting", None), ("closed", 4500)
            ]
            assert "signature is invalid" in states[-1]["reason"]
            error = await page.until("T.connectError")
            assert (error["name"], error["code"]) == ("ClientClosed", 4500)
            if transport != "longpoll":
                # Refused at /ticket: no stream was even opened.
                assert len(to(seen, "/rt/ticket")) == 1
                assert to(seen, "/rt/ws") == to(seen, "/rt/sse") == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_expired_token_reconnects_with_a_fresh_one_and_resumes(
    chromium: Chromium, transport: str
) -> None:
    auth = rtlink.TokenAuth(SECRET)
    async with run_token_server(auth, ttl=seconds(3), channels=HISTORY) as (server, seen):
        async with chromium.page(page_url(server.port)) as page:
            await page.eval(
                f"(options) => T.start({{...options, token: {TOKEN_FUNCTION}}}, ['room'])",
                {"transports": [transport], **FAST_RECONNECT},
            )
            await page.wait_connected(["room"])
            before = await server.hub.publish("room", "before")
            await page.until("T.messages.room.length >= 1")
            # The hub closes the connection when the token expires; the client asks
            # its token function for a new one and reconnects.
            await page.until("T.states.some((s) => s.code == 4003)", timeout=15,
                             message="the 4003 close")
            await page.until("client.state == 'connected'", timeout=10)
            after = await server.hub.publish("room", "after")
            await page.until("T.messages.room.length >= 2")
            assert await page.messages("room") == [
                {"data": "before", "position": wire(before)},
                {"data": "after", "position": wire(after)},
            ]
            states = await page.states()
            expired = next(s for s in states if s["code"] == 4003)
            assert expired["newState"] == "disconnected"
            assert "closed" not in new_states(states)
            assert len(to(seen, "/token")) >= 2  # a fresh token for the reconnect
            await page.eval("client.close()")

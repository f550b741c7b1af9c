"""Negotiation and fallback behind real restrictive proxies.

A real rtlink server behind a real nginx (or the fault-injecting relay), a real
client asked to prefer WebSocket: it must end on a transport that works, within the
health-check deadline, and deliver every message published meanwhile exactly once,
in order. Each test prints the time from ``connect`` to the first message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import rtlink
from tests.support import Feed, Server, collect, eventually, relay_to, run_server, seconds
from tests.support.proxy import require_nginx, run_nginx

pytestmark = pytest.mark.proxy

HISTORY = {"*": rtlink.ChannelOptions(history_size=5000, client_publish=True)}
#: Health-check deadline used here: a transport silent for this long has failed.
DEADLINE = 1.0


async def negotiate(url: str, codec: str, feed: Feed, expect: str,
                    failures: list[str] | None = None,
                    **options: Any) -> tuple[rtlink.Client, float, list[str]]:
    """Connect preferring WebSocket, check the transport it ends on and the timing.

    Returns the client (connected, subscribed), seconds from connect() to the first
    message, and the transports it tried in order.
    """
    client = rtlink.Client(url, codec=codec, connect_timeout=DEADLINE,
                           backoff_base=0.05, backoff_cap=0.5, **options)
    tried: list[str] = []
    client.on("state", lambda change: tried.append(change.transport)
              if change.new_state is rtlink.ConnectionState.CONNECTING else None)
    if failures is not None:  # the reason of each failed attempt
        client.on("state", lambda change: failures.append(change.reason)
                  if change.new_state is rtlink.ConnectionState.DISCONNECTED else None)
    started = time.monotonic()
    subscription = client.subscribe(feed.channel, since=feed.start)
    await asyncio.wait_for(client.connect(), seconds(DEADLINE * 4 + 5))
    first = await collect(subscription, 1)
    elapsed = time.monotonic() - started
    assert first[0].data == 0
    assert client.transport == expect, f"ended on {client.transport}, tried {tried}"
    print(f"\n[fallback] {expect} via {tried}: first message {elapsed * 1000:.0f} ms "
          f"after connect()")
    return client, elapsed, tried


async def drain_exactly_once(client: rtlink.Client, feed: Feed, after: int = 1) -> None:
    """Stop the feed and check every message after the first arrived once, in order."""
    subscription = client._core.subscriptions[feed.channel]
    await asyncio.sleep(0.3)  # keep publishing for a while on the chosen transport
    await feed.__aexit__()
    rest = await collect(subscription, feed.published - after, timeout=15)
    assert [m.data for m in rest] == list(range(after, feed.published))
    await asyncio.sleep(0.2)
    assert subscription._queue.empty(), "a duplicate or stray message arrived"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    require_nginx()
    # Short heartbeats so that a stream that went quiet is noticed within the test.
    async with run_server(channels=HISTORY, ping_interval=1.0, pong_timeout=1.0,
                          poll_timeout=1.0) as running:
        yield running


async def test_proxy_stripping_upgrade_ends_on_sse(server: Server, codec: str) -> None:
    async with run_nginx(server.port, "strip_upgrade") as proxy, Feed(server) as feed:
        failures: list[str] = []
        client, elapsed, tried = await negotiate(proxy.url(server.path), codec, feed, "sse",
                                                 failures)
        try:
            assert tried[:2] == ["websocket", "sse"]
            # Said in words: the server refused the plain GET the proxy made of it.
            assert failures[0] == "WebSocket handshake failed: HTTP 400", failures
            assert elapsed < DEADLINE + 2
            await drain_exactly_once(client, feed)
        finally:
            await client.close()


async def test_proxy_stripping_upgrade_and_buffering_ends_on_long_polling(
    server: Server, codec: str
) -> None:
    async with run_nginx(server.port, "strip_upgrade_buffering") as proxy, \
            Feed(server) as feed:
        client, elapsed, tried = await negotiate(proxy.url(server.path), codec, feed,
                                                 "longpoll")
        try:
            assert tried[:3] == ["websocket", "sse", "longpoll"]
            # WebSocket fails at once (400); SSE is held by the proxy: one deadline.
            assert elapsed < DEADLINE + 2
            await drain_exactly_once(client, feed)
        finally:
            await client.close()


async def test_websocket_that_opens_then_goes_silent_falls_back_and_switches_back(
    server: Server, codec: str
) -> None:
    async with relay_to(server) as relay, Feed(server) as feed:
        relay.silence_websockets = True
        client, elapsed, tried = await negotiate(server.url_via(relay), codec, feed, "sse",
                                                 probe_interval=0.5)
        try:
            assert tried[:2] == ["websocket", "sse"]
            assert elapsed < DEADLINE + 2
            # The proxy is fixed: the background probe finds WebSocket working again
            # and the client switches to it without losing or doubling a message.
            relay.silence_websockets = False
            await eventually(lambda: client.transport == "websocket", timeout=10,
                             message="the switch back to websocket")
            await drain_exactly_once(client, feed)
        finally:
            await client.close()


async def test_proxy_with_short_read_timeout_long_polls_without_errors(
    server: Server, codec: str
) -> None:
    # nginx cuts responses idle for 2 s; the server answers polls within 1 s.
    async with run_nginx(server.port, "short_read_timeout") as proxy:
        client = rtlink.Client(proxy.url(server.path), codec=codec, transports=["longpoll"],
                               connect_timeout=DEADLINE)
        changes: list[rtlink.StateChange] = []
        client.on("state", changes.append)
        try:
            async with client:
                sub = client.subscribe("quiet")
                await sub.wait_subscribed()
                await asyncio.sleep(4.5)  # several idle polls, each under the timeout
                position = await server.hub.publish("quiet", "after the quiet")
                message = (await collect(sub, 1))[0]
                assert message.position == position
            assert [c.new_state for c in changes] == [
                rtlink.ConnectionState.CONNECTING, rtlink.ConnectionState.CONNECTED,
                rtlink.ConnectionState.CLOSED,
            ], "the client reconnected: a poll was cut by the proxy"
            assert "upstream timed out" not in proxy.error_log
        finally:
            await client.close()


async def test_transparent_proxy_keeps_websocket(server: Server) -> None:
    async with run_nginx(server.port, "transparent") as proxy, Feed(server) as feed:
        client, elapsed, tried = await negotiate(proxy.url(server.path), "json", feed,
                                                 "websocket")
        try:
            assert tried == ["websocket"]
            await drain_exactly_once(client, feed)
        finally:
            await client.close()


async def test_a_new_client_starts_on_the_transport_that_worked_for_the_origin(
    server: Server,
) -> None:
    async with run_nginx(server.port, "strip_upgrade") as proxy, Feed(server) as feed:
        first, _, _ = await negotiate(proxy.url(server.path), "json", feed, "sse")
        await first.close()
        second, _, tried = await negotiate(proxy.url(server.path), "json", feed, "sse")
        try:
            assert tried == ["sse"]  # no second failed WebSocket attempt
        finally:
            await second.close()

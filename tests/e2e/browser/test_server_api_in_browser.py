"""The server API (Hub.subscribe, unsubscribe, disconnect) reaching the browser client
in a real Chromium, on every transport, with the client's default options (the page's
tabs share one connection through a hidden client: tabs.js forwards what the server
did), on one node and from another node over Redis."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import rtlink
from rtlink.auth import bearer_token
from rtlink.backends.redis import RedisBackend
from tests.support import Server, eventually
from tests.support.browser import Chromium, add_test_page, page_url, serve_app
from tests.support.redis_server import RedisServer

# One event loop for the module: the browser (conftest.py) is shared by its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")

TRANSPORTS = ("websocket", "sse", "longpoll")
_prefixes = itertools.count()

#: Records the subscriptions the server makes and the ones it ends (after T.start()).
RECORD = """() => {
  T.adopted = [];
  T.ended = {};
  client.on('subscription', (subscription) => {
    const channel = subscription.channel;
    T.adopted.push(channel);
    T.messages[channel] = [];
    subscription.on('message', ({data}) => T.messages[channel].push({data}));
  });
  for (const channel in T.subscriptions) {
    T.subscriptions[channel].on('unsubscribed', (event) => { T.ended[channel] = event; });
  }
}"""


def by_token(request: Any) -> str:
    """The user named by the token: the Authorization header, or ``?token=`` (the
    browser's WebSocket and EventSource, without tickets: a custom hook)."""
    header = request.headers.get("Authorization")
    return bearer_token(header) if header else str(request.query["token"])


@contextlib.asynccontextmanager
async def page_server(backend: Any = "memory://") -> AsyncIterator[Server]:
    hub = rtlink.Hub(backend, authenticate=by_token)
    app = web.Application()
    rtlink.attach(app, hub)
    add_test_page(app)
    async with serve_app(app, hub) as server:
        yield server


async def exercise(chromium: Chromium, caller: Server, served: Server,
                   transport: str) -> None:
    """A page on ``served`` as user ana; the server API called on ``caller``."""
    async with chromium.page(page_url(served.port)) as page:
        await page.start(["room"], transports=[transport], token="ana")
        await page.wait_connected(["room"])
        await page.eval(RECORD)
        # One connection (the shared one); over long polling, a held poll.
        await eventually(lambda: len(served.hub.connections) == 1)

        assert await caller.hub.subscribe("ana", "alerts") == 1
        await page.until("T.adopted.length == 1", message="the subscription event")
        assert await page.eval("T.adopted") == ["alerts"]
        await caller.hub.publish("alerts", "fire")
        await page.until("T.messages.alerts.length == 1")
        assert await page.messages("alerts") == [{"data": "fire"}]

        await eventually(lambda: len(served.hub.connections) == 1)
        assert await caller.hub.unsubscribe("ana", "room", reason="closed") == 1
        ended = await page.until("T.ended.room")
        assert (ended["channel"], ended["code"], ended["reason"]) == ("room", 403, "closed")

        await eventually(lambda: len(served.hub.connections) == 1)
        assert await caller.hub.disconnect("ana", reason="bye") == 1
        await page.until("client.state == 'closed'")
        last = (await page.states())[-1]
        assert (last["newState"], last["code"], last["reason"]) == ("closed", 4503, "bye")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_server_api_reaches_the_page_on_each_transport(
        chromium: Chromium, transport: str) -> None:
    async with page_server() as server:
        await exercise(chromium, server, server, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_call_on_another_node_reaches_the_page_over_redis(
        chromium: Chromium, redis_server: RedisServer, transport: str) -> None:
    prefix = f"browser-api{next(_prefixes)}"
    async with (page_server(RedisBackend(redis_server.url, prefix=prefix)) as served,
                page_server(RedisBackend(redis_server.url, prefix=prefix)) as caller):
        await exercise(chromium, caller, served, transport)

"""The server API across nodes on Redis: a call made on node A reaches the clients of
node B (control messages over Redis pub/sub; sharded pub/sub on a cluster), and a
Redis outage is a clear error."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

import rtlink
from rtlink.auth import bearer_token
from rtlink.backends.redis import RedisBackend
from rtlink.errors import BackendUnavailable
from tests.support import Server, collect, eventually, run_server, seconds
from tests.support.redis_server import ClusterSetup, RedisServer, run_redis

pytestmark = pytest.mark.redis

S = rtlink.ConnectionState
_prefixes = itertools.count()


def by_token(request: Any) -> str:
    return bearer_token(request.headers["Authorization"])


@pytest.fixture(params=["websocket", "sse", "longpoll"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def codec() -> str:
    return "json"  # the codecs are covered on one node (tests/test_server_api.py)


@contextlib.asynccontextmanager
async def two_nodes(url: str) -> AsyncIterator[tuple[Server, Server]]:
    """Two servers sharing one Redis (a fresh prefix: a cluster of their own)."""
    prefix = f"api{next(_prefixes)}"
    async with (run_server(backend=RedisBackend(url, prefix=prefix), authenticate=by_token,
                           handler_cancellation=True) as a,
                run_server(backend=RedisBackend(url, prefix=prefix), authenticate=by_token,
                           handler_cancellation=True) as b):
        yield a, b


async def test_a_call_on_node_a_reaches_a_client_on_node_b(
        redis_server: RedisServer, make_client, transport: str) -> None:
    async with two_nodes(redis_server.url) as (a, b):
        client = make_client(b.url, token="erin")
        adopted: list[rtlink.Subscription] = []
        client.on("subscription", adopted.append)
        states: list[rtlink.StateChange] = []
        client.on("state", states.append)
        async with client:
            own = client.subscribe("room")
            await asyncio.wait_for(own.wait_subscribed(), seconds(5))
            await eventually(lambda: len(b.hub.connections) == 1)  # a poll is held
            assert await a.hub.channels() == {"room": 1}  # counted on B, asked on A

            assert await a.hub.subscribe("erin", "alerts") == 1
            await eventually(lambda: len(adopted) == 1)
            alerts = adopted[0]
            await asyncio.wait_for(alerts.wait_subscribed(), seconds(5))
            await a.hub.publish("alerts", "fire")  # published on A, delivered by B
            assert [m.data for m in await collect(alerts, 1)] == ["fire"]

            ended: list[rtlink.UnsubscribedEvent] = []
            own.on("unsubscribed", ended.append)
            await eventually(lambda: len(b.hub.connections) == 1)
            assert await a.hub.unsubscribe("erin", "room", code=410, reason="gone") == 1
            await eventually(lambda: len(ended) == 1)
            assert ended[0] == rtlink.UnsubscribedEvent("room", 410, "gone")

            await eventually(lambda: len(b.hub.connections) == 1)
            assert await a.hub.disconnect("erin") == 1
            await asyncio.wait_for(client.wait_for_state(S.CLOSED), seconds(5))
            assert states[-1].code == 4503


@pytest.mark.parametrize("transport", ["websocket"])  # no gaps between polls to wait out
async def test_counts_add_up_over_the_nodes(redis_server: RedisServer, make_client) -> None:
    async with two_nodes(redis_server.url) as (a, b):
        on_a, on_b = make_client(a.url, token="finn"), make_client(b.url, token="finn")
        async with on_a, on_b:
            for client in (on_a, on_b):
                await asyncio.wait_for(client.subscribe("lobby").wait_subscribed(), seconds(5))
            assert await b.hub.channels() == {"lobby": 2}
            assert await b.hub.subscribe("finn", "extra") == 2
            assert await a.hub.unsubscribe("finn", "extra") == 2
            assert await a.hub.disconnect("nobody") == 0
            assert await b.hub.disconnect("finn", reconnect=True) == 2


async def test_a_redis_outage_is_a_clear_error() -> None:
    with run_redis() as redis:
        async with run_server(backend=RedisBackend(redis.url, prefix="outage",
                                                   socket_timeout=1)) as server:
            assert await server.hub.channels() == {}
            redis.stop()
            for call in (server.hub.channels(), server.hub.disconnect("u"),
                         server.hub.subscribe("u", "c"), server.hub.unsubscribe("u", "c")):
                with pytest.raises(BackendUnavailable, match="Redis at"):
                    await call
            redis.start()  # back: the control channel is subscribed again by itself
            await eventually(lambda: redis.call("PUBSUB", "NUMSUB", "outage:{control}")[1] == 1,
                             timeout=15)
            assert await server.hub.channels() == {}


@pytest.mark.parametrize("transport", ["websocket"])
async def test_on_a_cluster_control_messages_ride_sharded_pubsub(
        redis_cluster: ClusterSetup, make_client) -> None:
    async with two_nodes(redis_cluster.url) as (a, b):
        client = make_client(b.url, token="gail")
        async with client:
            await asyncio.wait_for(client.subscribe("c1").wait_subscribed(), seconds(5))
            assert await a.hub.channels() == {"c1": 1}
            assert await a.hub.disconnect("gail") == 1
            await asyncio.wait_for(client.wait_for_state(S.CLOSED), seconds(5))

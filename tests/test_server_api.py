"""The hub's server API (publish_many, channels, disconnect, unsubscribe, subscribe)
against real servers and real Python clients, on every transport, on the memory
backend (one node; Redis with two nodes: tests/backends/test_redis_control.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import rtlink
from rtlink.auth import bearer_token
from rtlink.errors import ChannelError
from tests.support import collect, eventually, run_server, seconds

S = rtlink.ConnectionState


def by_token(request: Any) -> str:
    """Identity: the user named by the bearer token (tests only)."""
    return bearer_token(request.headers["Authorization"])


@pytest.fixture(params=["websocket", "sse", "longpoll"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def subscribed(client: rtlink.Client, channel: str) -> rtlink.Subscription:
    subscription = client.subscribe(channel)
    await asyncio.wait_for(subscription.wait_subscribed(), seconds(5))
    return subscription


async def test_subscribe_unsubscribe_and_disconnect_a_user_on_every_transport(
        make_client, transport: str) -> None:
    # handler_cancellation, as rtlink serve: a stream the client left ends at once.
    async with run_server(authenticate=by_token, handler_cancellation=True) as server:
        hub = server.hub
        alice, bob = make_client(server.url, token="alice"), make_client(server.url, token="bob")
        adopted: list[rtlink.Subscription] = []
        alice.on("subscription", adopted.append)
        states: list[rtlink.StateChange] = []
        alice.on("state", states.append)
        async with alice, bob:
            own = await subscribed(alice, "room")
            await subscribed(bob, "room")
            await eventually(lambda: hub.local_channels() == {"room": 2})
            # SSE: the stream opened before the subscription ends once the server sees it.
            await eventually(lambda: len(hub.connections) == 2)
            assert await hub.channels() == {"room": 2}

            # Server-side subscribe: alice's connection only, told with subscribed+server.
            assert await hub.subscribe("alice", "news") == 1
            await eventually(lambda: len(adopted) == 1, message="subscription event")
            news = adopted[0]
            assert news.channel == "news"
            await asyncio.wait_for(news.wait_subscribed(), seconds(5))
            assert await hub.channels() == {"room": 2, "news": 1}
            position = await hub.publish("news", "hello")
            [message] = await collect(news, 1)
            assert (message.data, message.position) == ("hello", position)

            # Resumed like the client's own after a reconnect, with nothing lost.
            alice.reconnect()
            await alice.wait_for_state(S.CONNECTING, S.CONNECTED)
            await hub.publish("news", "while away")
            [message] = await collect(news, 1)
            assert message.data == "while away"
            await eventually(lambda: "news" in hub.local_channels())

            # Server-side unsubscribe: the subscription ends, with the event (a long poll
            # is reached while it is held: between two polls there is no connection).
            await eventually(lambda: hub.local_channels() == {"room": 2, "news": 1})
            ended: list[rtlink.UnsubscribedEvent] = []
            own.on("unsubscribed", ended.append)
            assert await hub.unsubscribe("alice", "room", reason="room closed") == 1
            await eventually(lambda: len(ended) == 1, message="unsubscribed event")
            assert ended[0] == rtlink.UnsubscribedEvent("room", 403, "room closed")
            assert [m async for m in own] == []  # iteration ended
            assert "room" not in alice._core.subscriptions
            await eventually(lambda: hub.local_channels().get("room") == 1)
            assert await hub.unsubscribe("alice", "room") == 0  # not subscribed any more

            # Disconnect: 4503, the client stops; bob is untouched.
            await eventually(lambda: len(hub.connections) == 2)
            assert await hub.disconnect("alice", reason="banned") == 1
            await asyncio.wait_for(alice.wait_for_state(S.CLOSED), seconds(5))
            assert (states[-1].code, states[-1].reason) == (4503, "banned")
            assert bob.state is S.CONNECTED
            await eventually(lambda: hub.local_channels() == {"room": 1})


async def test_disconnect_with_reconnect_has_the_user_come_back(make_client) -> None:
    async with run_server(authenticate=by_token) as server:
        client = make_client(server.url, token="carol")
        states: list[rtlink.StateChange] = []
        client.on("state", states.append)
        async with client:
            await eventually(lambda: len(server.hub.connections) == 1)  # a poll is held
            assert await server.hub.disconnect("carol", reconnect=True) == 1
            await eventually(lambda: any(c.code == 4002 for c in states))
            await asyncio.wait_for(client.wait_for_state(S.CONNECTED), seconds(5))
            await eventually(lambda: states[-1].new_state is S.CONNECTED)


async def test_an_unknown_user_is_no_error_and_counts_zero() -> None:
    async with run_server(authenticate=by_token) as server:
        hub = server.hub
        assert await hub.disconnect("nobody") == 0
        assert await hub.unsubscribe("nobody", "room") == 0
        assert await hub.subscribe("nobody", "room") == 0
        assert await hub.channels() == {}


async def test_subscribe_and_unsubscribe_check_the_channel() -> None:
    async with run_server(channels={"chat:*": rtlink.ChannelOptions()}) as server:
        hub = server.hub
        for call in (hub.subscribe, hub.unsubscribe):
            with pytest.raises(ChannelError) as unknown:
                await call("u", "other")
            assert unknown.value.code == 404
            with pytest.raises(ChannelError) as invalid:
                await call("u", "no spaces")
            assert invalid.value.code == 422


async def test_server_side_subscribe_is_checked_like_the_clients_own(make_client) -> None:
    # The client resumes it later with its own subscribe: the same checks must pass.
    async with run_server(authenticate=by_token, handler_cancellation=True,
                          authorize_subscribe=lambda identity, channel: channel != "secret"
                          ) as server:
        client = make_client(server.url, token="dave")
        adopted: list[rtlink.Subscription] = []
        client.on("subscription", adopted.append)
        async with client:
            await eventually(lambda: len(server.hub.connections) == 1)
            assert await server.hub.subscribe("dave", "secret") == 0
            assert await server.hub.subscribe("dave", "open") == 1
            await eventually(lambda: len(adopted) == 1)
            assert adopted[0].channel == "open"
            await eventually(lambda: len(server.hub.connections) == 1)
            assert await server.hub.subscribe("dave", "open") == 1  # held already: no new frame
            await asyncio.sleep(0.05)
            assert len(adopted) == 1


@pytest.mark.parametrize("first", ["client", "server"])
async def test_a_server_side_subscribe_crossing_the_clients_own_sets_up_one(
        first: str) -> None:
    """The client's subscribe and a server-side one of the same channel wait together
    on an async ``authorize_subscribe``: once both pass, the connection holds one
    subscription of the channel (the one set up last), the client keeps its own
    subscription, confirmed by whichever answer comes, and gets each publication once
    (protocol.md 6.9, 8.3, 8.8)."""
    gate = asyncio.Event()
    waiting: list[str] = []

    async def authorize(identity: Any, channel: str) -> bool:
        waiting.append(channel)
        await gate.wait()
        return True

    async with run_server(authenticate=by_token, authorize_subscribe=authorize) as server:
        hub = server.hub
        client = rtlink.Client(server.url, token="erin", transports=["websocket"])
        adopted: list[rtlink.Subscription] = []
        client.on("subscription", adopted.append)
        async with client:
            await eventually(lambda: len(hub.connections) == 1)
            if first == "server":
                server_side = asyncio.create_task(hub.subscribe("erin", "room"))
                await eventually(lambda: len(waiting) == 1)
            own = client.subscribe("room")
            await eventually(lambda: len(waiting) == (2 if first == "server" else 1))
            if first == "client":
                server_side = asyncio.create_task(hub.subscribe("erin", "room"))
                await eventually(lambda: len(waiting) == 2)
            gate.set()
            assert await asyncio.wait_for(server_side, seconds(5)) == 1
            await asyncio.wait_for(own.wait_subscribed(), seconds(5))
            [peer] = hub.connections
            assert list(peer.session.subscriptions) == ["room"]
            assert hub.local_channels() == {"room": 1} and adopted == []
            await hub.publish("room", 1)
            await hub.publish("room", 2)
            assert [m.data for m in await collect(own, 2)] == [1, 2]
            assert client._core.subscriptions == {"room": own}


async def test_publish_many_publishes_to_each_channel_or_to_none() -> None:
    async with rtlink.Hub(channels={"a:*": rtlink.ChannelOptions()}) as hub:
        first = await hub.publish_many(["a:1", "a:2"], {"n": 1}, key="k")
        assert [p.offset for p in first] == [1, 1]
        assert await hub.publish_many(["a:1", "a:2"], {"n": 1}, key="k") == first  # de-duplicated
        with pytest.raises(ChannelError):
            await hub.publish_many(["a:3", "b:1"], 1)
        result = await hub.backend.history("a:3", None, policy=rtlink.ChannelOptions().policy)
        assert result.position.offset == 0  # nothing published: b:1 was checked first
        assert await hub.publish_many([], 1) == []


async def test_the_server_api_needs_a_started_hub() -> None:
    hub = rtlink.Hub()
    with pytest.raises(RuntimeError):
        await hub.channels()

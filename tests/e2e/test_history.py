"""History on subscribe (``last``, the ``since`` fallback) and paged reads (``history``),
through a real server and the Python client, on every transport, both codecs, and the
memory and Redis backends (protocol.md 5.2, 5.3, 5.11, 6.2, 8.3)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import rtlink
from tests.support import Server, collect, relay_to, run_server, take_offline
from tests.support.redis_server import RedisServer

# First match wins: the private pattern goes first.
KEEP_5 = {"private:*": rtlink.ChannelOptions(subscribe="authenticated"),
          "*": rtlink.ChannelOptions(history_size=5)}
MakeClient = Callable[..., rtlink.Client]
Names = Callable[[str], str]


@pytest.fixture(params=["websocket", "sse", "longpoll"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test here runs on every transport (and, through make_client, both codecs)."""
    return str(request.param)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend URL: the memory backend, or a Redis started for the session."""
    if request.param == "memory":
        return "memory://"
    redis: RedisServer = request.getfixturevalue("redis_server")
    return redis.url


@pytest.fixture
async def server(backend: str) -> AsyncIterator[Server]:
    async with run_server(rtlink.Hub(backend, channels=KEEP_5)) as running:
        yield running


@pytest.fixture
def ch() -> Callable[[str], str]:
    """Channel names unique to the test: the Redis of the session is shared."""
    suffix = secrets.token_hex(4)
    return lambda name: f"{name}-{suffix}"


def _data(messages: list[rtlink.Message]) -> list[Any]:
    return [message.data for message in messages]


async def _publish(server: Server, channel: str, values: range) -> list[rtlink.Position]:
    return [await server.hub.publish(channel, value) for value in values]


async def test_last_replays_the_latest_kept_then_goes_live(
        server: Server, make_client: MakeClient, ch: Names) -> None:
    await _publish(server, ch("news"), range(8))  # 3..7 are kept
    async with make_client(server.url) as client:
        events: list[rtlink.SubscribedEvent] = []
        three = client.subscribe(ch("news"), last=3)
        three.on("subscribed", events.append)
        every = client.subscribe(ch("other"), last="all")
        await _publish(server, ch("other"), range(2))
        await three.wait_subscribed()
        assert _data(await collect(three, 3)) == [5, 6, 7]
        assert events[0].recovered
        live = await server.hub.publish(ch("news"), "live")
        (message,) = await collect(three, 1)
        assert (message.data, message.position) == ("live", live)
        assert three.position == live
        # "all" replays what is kept (here: the two published before or after the
        # subscription took effect, each once).
        assert _data(await collect(every, 2)) == [0, 1]


async def test_all_is_bounded_by_what_the_channel_keeps(
        server: Server, make_client: MakeClient, ch: Names) -> None:
    await _publish(server, ch("news"), range(9))
    async with make_client(server.url) as client:
        sub = client.subscribe(ch("news"), last="all")
        assert _data(await collect(sub, 5)) == [4, 5, 6, 7, 8]


async def test_since_that_cannot_be_recovered_replays_what_is_kept(
        server: Server, make_client: MakeClient, ch: Names) -> None:
    await _publish(server, ch("news"), range(7))
    foreign = rtlink.Position("gone", 3)  # another epoch: a restarted memory backend
    async with make_client(server.url) as client:
        events: list[rtlink.SubscribedEvent] = []
        sub = client.subscribe(ch("news"), since=foreign)
        sub.on("subscribed", events.append)
        await sub.wait_subscribed()
        assert (events[0].resumed, events[0].recovered) == (True, False)
        assert _data(await collect(sub, 5)) == [2, 3, 4, 5, 6]
        bounded = client.subscribe(ch("other"), since=foreign, last=2)
        await _publish(server, ch("other"), range(4))
        assert _data(await collect(bounded, 2))[-1] == 3


async def test_client_away_longer_than_history_gets_what_is_kept_after_recovered_false(
        server: Server, make_client: MakeClient, ch: Names) -> None:
    async with relay_to(server) as relay, make_client(server.url_via(relay)) as client:
        sub = client.subscribe(ch("feed"))
        await sub.wait_subscribed()
        await take_offline(relay, client)
        await _publish(server, ch("feed"), range(20))  # more than the 5 kept
        relay.refuse = False
        assert _data(await collect(sub, 5)) == [15, 16, 17, 18, 19]
        assert sub.recovered is False
        live = await server.hub.publish(ch("feed"), "live")
        (message,) = await collect(sub, 1)
        assert (message.data, message.position) == ("live", live)


async def test_history_pages_forward_and_reverse(
        server: Server, make_client: MakeClient, ch: Names) -> None:
    positions = await _publish(server, ch("news"), range(8))  # 3..7 are kept
    async with make_client(server.url) as client:
        first = await client.history(ch("news"), limit=2)
        assert isinstance(first, rtlink.HistoryPage)
        assert (_pub_data(first), first.recovered, first.position) == ([3, 4], True,
                                                                        positions[-1])
        rest = await client.history(ch("news"), first.publications[-1].position, limit=10)
        assert _pub_data(rest) == [5, 6, 7]
        latest = await client.history(ch("news"), limit=2, reverse=True)
        assert _pub_data(latest) == [7, 6]
        older = await client.history(ch("news"), latest.publications[-1].position, limit=10,
                                     reverse=True)
        assert (_pub_data(older), older.recovered) == ([5, 4, 3], True)
        trimmed = await client.history(ch("news"), positions[0], limit=10)
        assert (_pub_data(trimmed), trimmed.recovered) == ([3, 4, 5, 6, 7], False)
        empty = await client.history(ch("never-used"))
        assert (empty.publications, empty.position.offset) == ((), 0)


async def test_history_is_authorized_like_subscribe(
        server: Server, make_client: MakeClient, ch: Names) -> None:
    async with make_client(server.url) as client:
        with pytest.raises(rtlink.ReadError) as anonymous:
            await client.history(ch("private:x"))
        assert anonymous.value.code == rtlink.ErrorCode.UNAUTHORIZED
        with pytest.raises(rtlink.InvalidInput):
            await client.history(ch("news"), limit=1001)


def _pub_data(page: rtlink.HistoryPage) -> list[Any]:
    return [publication.data for publication in page.publications]

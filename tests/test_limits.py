"""Per-client limits: the publish rate (rtlink/limits.py) as plain calls and over every
transport, and the message size, subscription and channel name limits of each
transport. Connections per address are in tests/transports/test_guard.py."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

import rtlink
from rtlink.codecs import get_codec
from rtlink.codes import is_temporary
from rtlink.limits import ORDER_HOLD, AddressSlots, PublishLimits, TokenBucket
from tests.support import run_server, seconds
from tests.transports.test_http_transports import EventStream
from tests.transports.test_websocket import RawClient

PUBLISH = {"*": rtlink.ChannelOptions(client_publish=True, history_size=1000)}
POLICY = PUBLISH["*"].policy
#: A rate so low that no token comes back during a test: only the burst counts.
NO_REFILL = 1e-9


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the token bucket, by hand --------------------------------------------------------


def test_a_bucket_allows_the_burst_at_once_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(None, 0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(None, 0.05)  # half a token
    assert bucket.take(None, 0.1)
    assert not bucket.take(None, 0.1)
    # Idle for long: full again, never more than the burst.
    assert [bucket.take(None, 100.0) for _ in range(4)] == [True, True, True, False]


def test_a_refused_publish_holds_back_later_ones_until_it_is_sent_again() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    assert bucket.take("a", 0.0)
    assert not bucket.take("b", 0.0)  # no token: "b" is held
    assert not bucket.take("c", 0.5)  # tokens are back, but "b" must go first
    assert bucket.take("b", 0.5)
    assert bucket.take("c", 0.7)


def test_a_refused_publish_that_never_comes_back_holds_nothing_for_long() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    assert bucket.take("a", 0.0)
    assert not bucket.take("gone", 0.0)
    assert not bucket.take("c", ORDER_HOLD - 0.01)
    assert bucket.take("c", ORDER_HOLD)


def test_a_refused_publish_without_key_holds_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    assert bucket.take(None, 0.0)
    assert not bucket.take(None, 0.0)
    assert bucket.take("c", 0.1)


def test_shared_buckets_per_address_and_subject_bounded_by_count() -> None:
    clock = Clock()
    limits = PublishLimits(1.0, 1, max_shared=3, clock=clock)
    alice = limits.shared_bucket("10.0.0.1", "alice")
    bob = limits.shared_bucket("10.0.0.1", "bob")
    assert bob is not alice
    assert limits.shared_bucket("10.0.0.1", "alice") is alice  # now used more recently
    assert limits.shared_bucket("10.0.0.2", "alice") is not alice
    assert limits.shared_bucket("10.0.0.1", None) is limits.shared_bucket("10.0.0.1", None)
    assert len(limits) == 3  # the least recently used one, bob's, was forgotten
    assert limits.shared_bucket("10.0.0.1", "alice") is alice
    assert limits.shared_bucket("10.0.0.1", "bob") is not bob


def test_no_rate_means_no_buckets() -> None:
    limits = PublishLimits(None, 100)
    assert limits.bucket() is None
    assert limits.shared_bucket("10.0.0.1", None) is None


def test_address_slots() -> None:
    slots = AddressSlots(2)
    assert slots.claim("10.0.0.1") and slots.claim("10.0.0.1")
    assert not slots.claim("10.0.0.1")
    assert slots.claim("10.0.0.2")
    assert slots.claim(None)  # no address (a Unix socket): not counted
    slots.release("10.0.0.1")
    assert slots.count("10.0.0.1") == 1
    assert slots.claim("10.0.0.1")
    unlimited = AddressSlots(None)
    assert all(unlimited.claim("10.0.0.1") for _ in range(1000))


@pytest.mark.parametrize(
    "options",
    [{"publish_rate": 0}, {"publish_rate": -1}, {"publish_rate": float("inf")},
     {"publish_burst": 0}, {"max_connections_per_ip": 0}],
)
def test_invalid_limits_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        rtlink.Hub(**options)


def test_documented_defaults() -> None:
    hub = rtlink.Hub()
    assert hub.max_message_size == 65536
    assert hub.max_subscriptions == 256
    assert (hub.publish_limits.rate, hub.publish_limits.burst) == (50.0, 100)
    assert hub.connection_slots.limit is None


# --- the publish rate over the transports --------------------------------------------


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


def publish(n: int, channel: str = "chat", key: str | None = None) -> dict[str, Any]:
    return {"type": "publish", "id": n, "channel": channel, "data": n, "key": key or f"k{n}"}


async def test_over_the_rate_on_websocket_is_429_and_the_connection_stays(http, codec) -> None:
    async with run_server(channels=PUBLISH, publish_burst=3, publish_rate=NO_REFILL) as server:
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/ws",
                                   protocols=(f"rtlink.v1.{codec}",))
        client = RawClient(ws, codec)
        assert (await client.frame())["type"] == "welcome"
        await client.send(*(publish(n) for n in range(1, 6)))
        answers = await client.frames(5)
        assert [(f["type"], f["id"]) for f in answers] == [
            ("ack", 1), ("ack", 2), ("ack", 3), ("error", 4), ("error", 5)]
        assert {f["code"] for f in answers[3:]} == {rtlink.ErrorCode.RATE_LIMITED}
        assert answers[3]["channel"] == "chat" and "at most" in answers[3]["message"]
        assert is_temporary(answers[3]["code"])
        await client.send({"type": "ping"})
        assert await client.frame() == {"type": "pong"}
        assert not ws.closed and len(server.hub.connections) == 1
        await ws.close()


async def test_without_a_rate_nothing_is_refused(http) -> None:
    async with run_server(channels=PUBLISH, publish_rate=None, publish_burst=1) as server:
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/ws")
        client = RawClient(ws, "json")
        await client.frame()
        await client.send(*(publish(n) for n in range(1, 301)))
        assert {f["type"] for f in await client.frames(300)} == {"ack"}
        await ws.close()


async def send(http: aiohttp.ClientSession, server: Any, *frames: dict[str, Any],
               token: str | None = None) -> list[dict[str, Any]]:
    wire = get_codec("json")
    params = {"token": token} if token else {}
    async with http.post(f"{server.url}/send", params=params,
                         data=wire.join(wire.encode(f) for f in frames)) as response:
        assert response.status == 200
        return wire.decode(await response.read())


async def test_send_requests_share_a_bucket_per_address_and_identity(http) -> None:
    def authenticate(request: Any) -> str | None:
        return request.query.get("token")  # the identity is the subject

    async with run_server(channels=PUBLISH, authenticate=authenticate, publish_burst=2,
                          publish_rate=NO_REFILL) as server:
        # Each request is a connection of its own, but the bucket is the client's.
        assert (await send(http, server, publish(1)))[0]["type"] == "ack"
        assert (await send(http, server, publish(2)))[0]["type"] == "ack"
        refused = (await send(http, server, publish(3)))[0]
        assert (refused["type"], refused["code"], refused["id"]) == ("error", 429, 3)
        # Another identity from the same address has a bucket of its own.
        answers = await send(http, server, publish(4), publish(5), publish(6), token="alice")
        assert [f["type"] for f in answers] == ["ack", "ack", "error"]
        assert (await send(http, server, publish(7), token="bob"))[0]["type"] == "ack"


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
@pytest.mark.slow
async def test_an_offline_outbox_flushed_against_the_limit_arrives_once_in_order(
    transport: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rtlink.connection")
    async with run_server(channels=PUBLISH, publish_burst=50, publish_rate=100) as server:
        client = rtlink.Client(server.url, transports=[transport])
        states: list[rtlink.StateChange] = []
        client.on("state", states.append)
        publishes = [asyncio.create_task(client.publish("flush", n)) for n in range(300)]
        await asyncio.sleep(0)
        assert client.outbox_size == 300  # offline: all waiting
        try:
            await client.connect()
            async with asyncio.timeout(seconds(60)):
                positions = await asyncio.gather(*publishes)
            # The connection never dropped: the limit only delayed publishes.
            assert [change.new_state for change in states] == [
                rtlink.ConnectionState.CONNECTING, rtlink.ConnectionState.CONNECTED]
        finally:
            await client.close()
        refusals = [r for r in caplog.records if "refused: rate limit" in r.getMessage()]
        assert len(refusals) >= 250  # the limit was hit: 300 publishes, 50 at once
        # One retry round answers a whole burst of refusals, resending each waiting
        # publish once: ~1,400 refusals in all (~25 acks per round at full jitter from
        # 0.5 s). A retry per refused frame resent the outbox per refusal: 6,600-20,600.
        assert len(refusals) < 12 * 300
        # Each publish applied once, in the order of the publish calls.
        assert [p.offset for p in positions] == list(range(1, 301))
        history = await server.hub.backend.history(
            "flush", rtlink.Position(positions[0].epoch, 0), policy=POLICY)
        assert [p.data for p in history.publications] == list(range(300))


# --- size, subscriptions and channel names on every transport ------------------------


async def test_a_send_body_of_exactly_the_limit_is_accepted_one_byte_more_is_413(http) -> None:
    async with run_server(max_message_size=1024) as server:
        wire = get_codec("json")
        frame = {"type": "ping", "pad": "x" * 1024}
        while len(wire.encode(frame)) > 1024:
            frame["pad"] = frame["pad"][:-1]
        body = wire.encode(frame)
        assert len(body) == 1024
        async with http.post(f"{server.url}/send", data=body) as response:
            assert response.status == 200
            assert wire.decode(await response.read()) == [{"type": "pong"}]

        async def chunked() -> Any:  # no Content-Length: found while reading
            yield body[:500]
            yield body[500:] + b" "

        async with http.post(f"{server.url}/send", data=chunked()) as response:
            assert response.status == 413
        async with http.post(f"{server.url}/send", data=body + b" ") as response:
            assert response.status == 413


INVALID_CHANNELS = ["x" * 256, "has space", "star*", "é", ""]


@pytest.mark.parametrize("channel", INVALID_CHANNELS)
async def test_invalid_channel_names_are_422_on_websocket_and_send(http, channel: str) -> None:
    async with run_server(channels=PUBLISH) as server:
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/ws")
        client = RawClient(ws, "json")
        await client.frame()
        await client.send({"type": "subscribe", "id": 1, "channel": channel},
                          publish(2, channel))
        for error, request_id in zip(await client.frames(2), (1, 2), strict=True):
            assert (error["type"], error["code"], error["id"]) == ("error", 422, request_id)
        await ws.close()
        error = (await send(http, server, publish(3, channel)))[0]
        assert (error["type"], error["code"], error["id"]) == ("error", 422, 3)


@pytest.mark.parametrize("endpoint", ["sse", "poll"])
@pytest.mark.parametrize("channel", INVALID_CHANNELS)
async def test_invalid_channel_names_in_a_cursor_are_http_400(http, endpoint: str,
                                                              channel: str) -> None:
    # Documented (protocol 4.2): a cursor breaking a rule is a malformed request.
    async with run_server() as server:
        subs = json.dumps({"ok": None, channel: None})
        async with http.get(f"{server.url}/{endpoint}", params={"subs": subs}) as response:
            assert response.status == 400
            assert "invalid channel name" in await response.text()


async def test_subscriptions_over_the_limit(http) -> None:
    async with run_server(max_subscriptions=2) as server:
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/ws")
        client = RawClient(ws, "json")
        await client.frame()
        await client.send(*({"type": "subscribe", "id": n, "channel": f"c{n}"}
                            for n in (1, 2, 3)))
        frames = await client.frames(3)
        assert [f["type"] for f in frames] == ["subscribed", "subscribed", "error"]
        assert (frames[2]["code"], frames[2]["channel"]) == (430, "c3")
        await ws.close()
        too_many = json.dumps({"a": None, "b": None, "c": None})
        for endpoint in ("sse", "poll"):
            async with http.get(f"{server.url}/{endpoint}", params={"subs": too_many}) as r:
                assert r.status == 400
                assert "at most 2 subscriptions" in await r.text()
        response = await http.get(f"{server.url}/sse",
                                  params={"subs": json.dumps({"a": None, "b": None})})
        stream = EventStream(response, "json")
        assert [f["type"] for f in await stream.frames(3)] == [
            "welcome", "subscribed", "subscribed"]
        response.close()

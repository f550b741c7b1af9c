"""``POST {path}/api/<operation>``: the server API over HTTP against a real server, with
real clients as the users it acts on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest

import rtlink
from rtlink.auth import bearer_token
from rtlink.backends.redis import RedisBackend
from tests.support import FAST_RECONNECT, Server, collect, eventually, seconds
from tests.support.redis_server import run_redis
from tests.transports.test_publish_api import JSON, KEY, MSGPACK, api_server, error_of

S = rtlink.ConnectionState


def by_token(request: Any) -> str | None:
    header = request.headers.get("Authorization")
    return None if header is None else bearer_token(header)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, server: Server, operation: str, body: Any,
               headers: Any = None) -> tuple[int, aiohttp.ClientResponse, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(f"{server.url}/api/{operation}", data=data,
                         headers=headers or JSON,
                         skip_auto_headers=["Content-Type"]) as response:
        return response.status, response, await response.read()


async def ok(http: aiohttp.ClientSession, server: Server, operation: str,
             body: Any) -> Any:
    status, _, answer = await call(http, server, operation, body)
    assert status == 200, answer
    return json.loads(answer)


async def test_every_operation_acts_on_a_connected_user(http: aiohttp.ClientSession) -> None:
    async with api_server(authenticate=by_token) as server:
        client = rtlink.Client(server.url, token="hana", **FAST_RECONNECT)
        adopted: list[rtlink.Subscription] = []
        client.on("subscription", adopted.append)
        async with client:
            room = client.subscribe("room")
            await asyncio.wait_for(room.wait_subscribed(), seconds(5))
            assert await ok(http, server, "channels", {}) == {"channels": {"room": 1}}

            assert await ok(http, server, "subscribe",
                            {"user": "hana", "channel": "news"}) == {"count": 1}
            await eventually(lambda: len(adopted) == 1)
            await asyncio.wait_for(adopted[0].wait_subscribed(), seconds(5))

            answer = await ok(http, server, "publish_many",
                              {"channels": ["room", "news"], "data": {"n": 1}})
            [on_room, on_news] = answer["publications"]
            assert (on_room["channel"], on_news["channel"]) == ("room", "news")
            [message] = await collect(adopted[0], 1)
            assert message.position.to_wire() == on_news["position"]
            assert [m.data for m in await collect(room, 1)] == [{"n": 1}]

            ended: list[rtlink.UnsubscribedEvent] = []
            room.on("unsubscribed", ended.append)
            assert await ok(http, server, "unsubscribe",
                            {"user": "hana", "channel": "room", "code": 410,
                             "reason": "archived"}) == {"count": 1}
            await eventually(lambda: ended == [rtlink.UnsubscribedEvent("room", 410,
                                                                        "archived")])
            assert await ok(http, server, "disconnect",
                            {"user": "nobody"}) == {"count": 0}
            assert await ok(http, server, "disconnect",
                            {"user": "hana", "reason": "bye"}) == {"count": 1}
            await asyncio.wait_for(client.wait_for_state(S.CLOSED), seconds(5))


async def test_publish_many_honours_the_idempotency_key_and_msgpack(
        http: aiohttp.ClientSession) -> None:
    async with api_server() as server:
        body = msgpack.packb({"channels": ["a", "b"], "data": [1, 2]})
        headers = {**MSGPACK, "Idempotency-Key": "batch-1"}
        answers = []
        for _ in range(2):
            status, response, raw = await call(http, server, "publish_many", body, headers)
            assert status == 200 and response.content_type == "application/msgpack"
            answers.append(msgpack.unpackb(raw))
        assert answers[0] == answers[1]
        assert [p["position"]["offset"] for p in answers[0]["publications"]] == [1, 1]


@pytest.mark.parametrize(("operation", "body", "status", "code", "message"), [
    ("disconnect", {}, 400, 400, "the body has no 'user' field"),
    ("disconnect", {"user": 7}, 400, 400, "'user' must be a string"),
    ("disconnect", {"user": None}, 400, 400, "the body has no 'user' field"),
    ("disconnect", {"user": "u", "reconnect": 1}, 400, 400, "'reconnect' must be a boolean"),
    ("unsubscribe", {"user": "u", "channel": "c", "code": True}, 400, 400,
     "'code' must be an integer"),
    ("subscribe", {"user": "u"}, 400, 400, "the body has no 'channel' field"),
    ("subscribe", {"user": "u", "channel": "bad channel"}, 422, 422, "invalid channel name"),
    ("subscribe", {"user": "u", "channel": "other"}, 422, 404, "unknown channel 'other'"),
    ("publish_many", {"channels": "c", "data": 1}, 400, 400, "'channels' must be a list"),
    ("publish_many", {"channels": ["c:1", 2], "data": 1}, 400, 400, "list of strings"),
    ("publish_many", {"channels": ["c:1"]}, 400, 400, "the body has no 'data' field"),
    ("publish_many", {"channels": ["c:1", "x"], "data": 1}, 422, 404, "unknown channel 'x'"),
    ("channels", [], 400, 400, "the body must be an object"),
])
async def test_malformed_requests_are_refused_like_publishes(
        http: aiohttp.ClientSession, operation: str, body: Any, status: int, code: int,
        message: str) -> None:
    async with api_server(channels={"c*": rtlink.ChannelOptions()}) as server:
        got, response, raw = await call(http, server, operation, body)
        assert got == status
        error = error_of(response, raw)
        assert error["code"] == code and message in error["message"]


async def test_a_null_optional_field_takes_its_default(http: aiohttp.ClientSession) -> None:
    """As in frames (protocol.md 5) and in the history operation's body: null is
    absent (http-api.md §7)."""
    async with api_server(channels={"c*": rtlink.ChannelOptions(presence=True)}) as server:
        assert await ok(http, server, "disconnect",
                        {"user": "u", "reconnect": None, "reason": None}) == {"count": 0}
        assert await ok(http, server, "unsubscribe",
                        {"user": "u", "channel": "c", "code": None}) == {"count": 0}
        answer = await ok(http, server, "presence", {"channel": "c", "limit": None})
        assert answer == {"channel": "c", "count": 0, "members": []}


async def test_api_keys_are_checked_and_without_keys_nothing_is_mounted(
        http: aiohttp.ClientSession) -> None:
    async with api_server() as server:
        status, response, raw = await call(http, server, "channels", {},
                                           {"Content-Type": "application/json"})
        assert status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert error_of(response, raw)["code"] == 401
        status, _, _ = await call(http, server, "channels", {},
                                  {**JSON, "Authorization": f"Bearer {KEY[::-1]}"})
        assert status == 401
    async with api_server(api_keys=None) as server:
        status, _, _ = await call(http, server, "channels", {})
        assert status == 404


@pytest.mark.redis
async def test_a_redis_outage_answers_503(http: aiohttp.ClientSession) -> None:
    with run_redis() as redis:
        async with api_server(backend=RedisBackend(redis.url, prefix="api-outage",
                                                   socket_timeout=1)) as server:
            assert await ok(http, server, "channels", {}) == {"channels": {}}
            redis.stop()
            status, response, raw = await call(http, server, "disconnect", {"user": "u"})
            assert status == 503
            assert error_of(response, raw)["code"] == 503

"""``POST {path}/api/history`` (docs/http-api.md §5, "History pages") against a real
server on loopback, called with aiohttp as a non-Python service would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest

import rtlink
from rtlink.protocol import Position
from tests.support import Server, run_server

KEY = "k3y-for-tests-0123456789abcdef"
JSON = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
CHANNELS = {"private:*": rtlink.ChannelOptions(subscribe="authenticated"),
            "news*": rtlink.ChannelOptions(history_size=5)}


@contextlib.asynccontextmanager
async def api_server(api_keys: tuple[str, ...] | None = (KEY,)) -> AsyncIterator[Server]:
    async with run_server(channels=CHANNELS,
                          attach_options={"api_keys": api_keys}) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def read(http: aiohttp.ClientSession, server: Server, body: Any,
               headers: dict[str, str] = JSON) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(f"{server.url}/api/history", data=data, headers=headers,
                         skip_auto_headers=["Content-Type"]) as response:
        raw = await response.read()
        if response.content_type == "application/msgpack":
            return response.status, msgpack.unpackb(raw)
        return response.status, json.loads(raw)


async def test_pages_forward_and_reverse_in_json_and_msgpack(
        http: aiohttp.ClientSession) -> None:
    async with api_server() as server:
        positions = [await server.hub.publish("news", n) for n in range(7)]  # 2..6 kept
        status, page = await read(http, server, {"channel": "news", "limit": 2})
        assert status == 200
        assert page == {"channel": "news",
                        "publications": [{"data": 2, "position": positions[2].to_wire()},
                                         {"data": 3, "position": positions[3].to_wire()}],
                        "position": positions[-1].to_wire(), "recovered": True}
        after = {"channel": "news", "since": positions[3].to_wire()}
        status, rest = await read(http, server, after)
        assert [p["data"] for p in rest["publications"]] == [4, 5, 6]
        body = msgpack.packb({"channel": "news", "reverse": True, "limit": 3})
        status, latest = await read(http, server, body,
                                    {**JSON, "Content-Type": "application/msgpack"})
        assert status == 200
        assert [p["data"] for p in latest["publications"]] == [6, 5, 4]
        gone = {"channel": "news", "since": Position("other", 1).to_wire()}
        status, fallback = await read(http, server, gone)
        assert (fallback["recovered"], len(fallback["publications"])) == (False, 5)


@pytest.mark.parametrize(("body", "status", "code", "words"), [
    ({"channel": "nope"}, 422, 404, "unknown channel"),
    ({"channel": "bad channel"}, 422, 422, "channel"),
    ({"channel": "news", "limit": 0}, 400, 400, "limit must be an integer from 1 to 1000"),
    ({"channel": "news", "limit": 1001}, 400, 400, "limit"),
    ({"channel": "news", "reverse": "yes"}, 400, 400, "reverse must be a boolean"),
    ({"channel": "news", "since": {"epoch": ""}}, 400, 400, "position.epoch"),
    ({"limit": 3}, 400, 400, "no 'channel' field"),
    (["news"], 400, 400, "must be an object"),
])
async def test_bad_requests_are_refused_with_the_frame_rules(
        http: aiohttp.ClientSession, body: Any, status: int, code: int, words: str) -> None:
    async with api_server() as server:
        answered, document = await read(http, server, body)
        assert (answered, document["error"]["code"]) == (status, code)
        assert words in document["error"]["message"]


async def test_the_api_key_is_required_and_the_route_needs_keys(
        http: aiohttp.ClientSession) -> None:
    async with api_server() as server:
        status, document = await read(http, server, {"channel": "news"},
                                      {"Content-Type": "application/json"})
        assert (status, document["error"]["code"]) == (401, 401)
        status, document = await read(http, server, {"channel": "news"},
                                      {**JSON, "Content-Type": "text/plain"})
        assert status == 415
        # A service's key reaches channels that clients need a login for.
        status, page = await read(http, server, {"channel": "private:x"})
        assert (status, page["publications"]) == (200, [])
    async with api_server(api_keys=None) as server, http.post(
            f"{server.url}/api/history", json={"channel": "news"}) as response:
        assert response.status == 404

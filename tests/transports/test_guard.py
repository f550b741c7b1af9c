"""What every rtlink route checks first (rtlink/transports/guard.py): the origin
allow-list on every transport, the CORS answers of the HTTP routes, and the limit of
connections per client address. Raw HTTP and WebSocket requests with explicit
``Origin`` headers, and the Python client for how a refusal is acted on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import rtlink
from rtlink.codecs import get_codec
from tests.support import Server, eventually, run_server, seconds
from tests.transports.test_http_transports import EventStream
from tests.transports.test_websocket import RawClient

S = rtlink.ConnectionState
EVIL = "https://evil.example"
APP = "https://app.example.com"
CORS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials")


@contextlib.asynccontextmanager
async def serve(hub: rtlink.Hub | None = None, **attach_options: Any) -> AsyncIterator[Server]:
    """:func:`tests.support.run_server` with options for :func:`rtlink.attach`."""
    hub = hub or rtlink.Hub(channels={"*": rtlink.ChannelOptions(client_publish=True)})
    async with run_server(hub, attach_options=attach_options) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


def origin_headers(origin: str | None, host: str | None = None) -> dict[str, str]:
    """``Origin`` (unless None) and, if given, ``Host`` headers."""
    return {**({"Origin": origin} if origin else {}), **({"Host": host} if host else {})}


async def websocket_close(http: aiohttp.ClientSession, server: Server, origin: str | None,
                          host: str | None = None) -> tuple[dict[str, Any], int | None]:
    """Open a WebSocket with ``origin`` (and ``host``); return the first frame and the
    close code."""
    headers = origin_headers(origin, host)
    async with http.ws_connect(ws_url(server), headers=headers) as ws:
        client = RawClient(ws, "json")
        first = await client.frame()
        async with asyncio.timeout(seconds(5)):
            while not ws.closed:
                await ws.receive()
        return first, ws.close_code


#: The HTTP status of a refused stream, poll or send, by close code (protocol.md 2.6):
#: 200 when the same request may work later, else 401 (credentials) or 403.
REFUSAL_STATUS = {4500: 401, 4003: 401, 4501: 403, 1011: 200, 1013: 200}


async def http_close_frame(http: aiohttp.ClientSession, server: Server, method: str,
                           endpoint: str, origin: str | None, host: str | None = None,
                           params: dict[str, str] | None = None,
                           ) -> tuple[dict[str, Any], Any]:
    """Request an HTTP transport endpoint with ``origin`` (and ``host``, ``params``); its
    first frame (a ``close`` frame, checked to come with the status of its code) and
    headers."""
    url = f"{server.url}/{endpoint}"
    headers = origin_headers(origin, host)
    if endpoint == "sse":
        response = await http.get(url, headers=headers, params=params)
        first = await EventStream(response, "json").frame()
        response.close()
    else:
        async with http.request(method, url, headers=headers, params=params,
                                data=b'{"type":"ping"}' if method == "POST" else None
                                ) as response:
            first = get_codec("json").decode(await response.read())[0]
    assert first["type"] == "close", first
    assert response.status == REFUSAL_STATUS[first["code"]], (endpoint, first)
    return first, response.headers


HTTP_TRANSPORTS = [("GET", "sse"), ("GET", "poll"), ("POST", "send")]


# --- the origin check -----------------------------------------------------------------


async def test_a_refused_origin_gets_4501_on_every_transport(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtlink.transports.guard")
    async with serve(allowed_origins=[APP]) as server:
        first, code = await websocket_close(http, server, EVIL)
        assert first == {"type": "close", "code": 4501, "reason": "origin not allowed"}
        assert code == rtlink.CloseCode.FORBIDDEN
        for method, endpoint in HTTP_TRANSPORTS:
            frame, headers = await http_close_frame(http, server, method, endpoint, EVIL)
            assert frame == {"type": "close", "code": 4501, "reason": "origin not allowed"}
            assert not any(name in headers for name in CORS)
        async with http.get(f"{server.url}/info", headers={"Origin": EVIL}) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
        assert not server.hub.connections
    refusals = [r.getMessage() for r in caplog.records if r.name == "rtlink.transports.guard"]
    assert len(refusals) == 5  # one line per refusal, naming the origin
    assert all(repr(EVIL) in line for line in refusals)


async def test_allowed_origins_and_clients_without_origin_get_in(
    http: aiohttp.ClientSession,
) -> None:
    async with serve(allowed_origins=[APP, "https://*.example.org"]) as server:
        for origin in (APP, "https://a.example.org", None):
            first, _ = await asyncio.wait_for(_welcome(http, server, origin), seconds(5))
            assert first["type"] == "welcome"
            for method, endpoint in HTTP_TRANSPORTS:
                headers = {"Origin": origin} if origin else {}
                async with http.request(method, f"{server.url}/{endpoint}",
                                        params={"connect": "1"}, headers=headers,
                                        data=b'{"type":"ping"}' if method == "POST" else None
                                        ) as response:
                    assert response.status == 200
                    line = await response.content.readline()
                    assert b"welcome" in line or b"pong" in line
        async with http.get(f"{server.url}/info", headers={"Origin": APP}) as response:
            assert response.status == 200


async def _welcome(http: aiohttp.ClientSession, server: Server, origin: str | None,
                   host: str | None = None) -> tuple[dict[str, Any], None]:
    headers = origin_headers(origin, host)
    async with http.ws_connect(ws_url(server), headers=headers) as ws:
        return await RawClient(ws, "json").frame(), None


async def test_same_origin_by_default(http: aiohttp.ClientSession) -> None:
    async with serve() as server:
        own = f"http://127.0.0.1:{server.port}"
        assert (await _welcome(http, server, own))[0]["type"] == "welcome"
        # The scheme is not compared: TLS may end at a proxy in front.
        assert (await _welcome(http, server, f"https://127.0.0.1:{server.port}"))[0][
            "type"] == "welcome"
        first, code = await websocket_close(http, server, f"http://127.0.0.1:{server.port + 1}")
        assert (first["code"], code) == (4501, 4501)
        first, code = await websocket_close(http, server, f"http://localhost:{server.port}")
        assert code == 4501
        # Behind a proxy that passes the browser's Host on.
        async with http.get(f"{server.url}/info", headers={
                "Origin": "https://10.0.0.5", "Host": "10.0.0.5"}) as response:
            assert response.status == 200
        async with http.get(f"{server.url}/info", headers={
                "Origin": "https://10.0.0.5", "Host": "10.0.0.6"}) as response:
            assert response.status == 403


async def test_a_dns_rebinding_page_is_refused_by_default(http: aiohttp.ClientSession) -> None:
    # A page of evil.example, whose DNS now answers 127.0.0.1, reaches the server with
    # Host and Origin both evil.example:PORT: same origin, but a DNS name.
    async with serve() as server:
        evil = f"evil.example:{server.port}"
        first, code = await websocket_close(http, server, f"http://{evil}", host=evil)
        assert (first["code"], code) == (4501, 4501)
        for method, endpoint in HTTP_TRANSPORTS:
            frame, _ = await http_close_frame(http, server, method, endpoint,
                                              f"http://{evil}", evil)
            assert frame["code"] == rtlink.CloseCode.FORBIDDEN, endpoint
        for method, endpoint in (("GET", "info"), ("POST", "ticket")):
            async with http.request(method, f"{server.url}/{endpoint}", headers=origin_headers(
                    f"http://{evil}", evil)) as response:
                assert response.status == 403, endpoint
        # localhost and IP addresses cannot be rebound: those pages are served.
        local = f"localhost:{server.port}"
        assert (await _welcome(http, server, f"http://{local}", host=local))[0][
            "type"] == "welcome"
    # A site served under a DNS name lists its origin.
    async with serve(allowed_origins=["https://chat.example.com"]) as server:
        async with http.get(f"{server.url}/info", headers={
                "Origin": "https://chat.example.com", "Host": "chat.example.com"}) as response:
            assert response.status == 200


async def test_null_origin_only_when_listed(http: aiohttp.ClientSession) -> None:
    async with serve(allowed_origins=["*"]) as server:
        assert (await _welcome(http, server, APP))[0]["type"] == "welcome"
        assert (await websocket_close(http, server, "null"))[1] == 4501
    async with serve(allowed_origins=["null"]) as server:
        assert (await _welcome(http, server, "null"))[0]["type"] == "welcome"


async def test_the_origin_is_checked_before_authentication(http: aiohttp.ClientSession) -> None:
    calls: list[str] = []

    def authenticate(request: web.Request) -> None:
        calls.append(request.path)
        raise rtlink.AuthenticationError("who are you")

    hub = rtlink.Hub(authenticate=authenticate)
    async with serve(hub, allowed_origins=[APP]) as server:
        assert (await websocket_close(http, server, EVIL))[1] == 4501
        for method, endpoint in HTTP_TRANSPORTS:
            frame, _ = await http_close_frame(http, server, method, endpoint, EVIL)
            assert frame["code"] == 4501
        assert calls == []
        first, code = await websocket_close(http, server, APP)
        assert (first["code"], code) == (4500, 4500)
        assert calls == ["/rt/ws"]


async def test_the_origin_is_checked_before_the_codec(http: aiohttp.ClientSession) -> None:
    # protocol.md 2.9: before every check of the request itself, the codec included.
    # A refused page that also names an unknown codec gets the origin's refusal, with
    # its close frame in JSON (it used to get the codec's 400).
    async with serve(allowed_origins=[APP]) as server:
        for method, endpoint in HTTP_TRANSPORTS:
            frame, headers = await http_close_frame(http, server, method, endpoint, EVIL,
                                                    params={"codec": "xml"})
            assert frame == {"type": "close", "code": 4501, "reason": "origin not allowed"}
            if endpoint != "sse":
                assert headers["Content-Type"] == "application/json"
        # An allowed page with an unknown codec gets the 400 of the request check.
        async with http.get(f"{server.url}/poll", params={"codec": "xml"},
                            headers={"Origin": APP}) as response:
            assert response.status == 400
            assert (await response.text()).startswith("rtlink: unknown codec 'xml'")


async def test_client_files_are_not_checked(http: aiohttp.ClientSession) -> None:
    async with serve(allowed_origins=[APP]) as server:
        async with http.get(f"{server.url}/client.mjs", headers={"Origin": EVIL}) as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers


async def test_the_ticket_route_is_checked_too(http: aiohttp.ClientSession) -> None:
    auth = rtlink.TokenAuth("s" * 32)
    async with serve(rtlink.Hub(authenticate=auth), allowed_origins=[APP]) as server:
        headers = {"Authorization": f"Bearer {auth.mint('alice')}"}
        async with http.post(f"{server.url}/ticket",
                             headers={**headers, "Origin": EVIL}) as response:
            assert response.status == 403
        async with http.post(f"{server.url}/ticket",
                             headers={**headers, "Origin": APP}) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_the_python_client_stops_on_a_refused_origin(transport: str) -> None:
    async with serve(allowed_origins=[APP]) as server:
        async with aiohttp.ClientSession(headers={"Origin": EVIL}) as session:
            client = rtlink.Client(server.url, transports=[transport], session=session)
            changes: list[rtlink.StateChange] = []
            client.on("state", changes.append)
            with pytest.raises(rtlink.ClientClosed) as closed:
                async with asyncio.timeout(seconds(10)):
                    await client.connect()
            assert closed.value.code == rtlink.CloseCode.FORBIDDEN
            assert changes[-1].new_state is S.CLOSED and changes[-1].code == 4501
            await client.close()


def test_an_invalid_allowed_origin_is_refused_when_mounting() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        rtlink.attach(web.Application(), rtlink.Hub(), allowed_origins=["app.example.com"])
    with pytest.raises(TypeError, match="list of origins"):
        rtlink.attach(web.Application(), rtlink.Hub(), allowed_origins=APP)


# --- CORS ------------------------------------------------------------------------------


def assert_cors(headers: Any, origin: str) -> None:
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in headers["Vary"]


async def test_answers_to_allowed_origins_carry_cors_headers(http: aiohttp.ClientSession) -> None:
    async with serve(allowed_origins=["*"]) as server:  # never "*" in the answer
        async with http.get(f"{server.url}/info", headers={"Origin": APP}) as response:
            assert response.status == 200
            assert_cors(response.headers, APP)
        response = await http.get(f"{server.url}/sse", headers={"Origin": APP})
        assert_cors(response.headers, APP)
        assert (await EventStream(response, "json").frame())["type"] == "welcome"
        response.close()
        for method, endpoint in (("GET", "poll"), ("POST", "send")):
            async with http.request(method, f"{server.url}/{endpoint}", params={"connect": "1"},
                                    headers={"Origin": APP},
                                    data=b'{"type":"ping"}' if method == "POST" else None
                                    ) as response:
                assert response.status == 200
                assert_cors(response.headers, APP)
        # Errors too, so that a page can read them: a bad request, a body too large.
        async with http.get(f"{server.url}/poll", params={"subs": "["},
                            headers={"Origin": APP}) as response:
            assert response.status == 400
            assert_cors(response.headers, APP)
        async with http.post(f"{server.url}/send", headers={"Origin": APP},
                             data=b" " * (server.hub.max_message_size + 1)) as response:
            assert response.status == 413
            assert_cors(response.headers, APP)
        # No Origin, no CORS headers.
        async with http.get(f"{server.url}/info") as response:
            assert "Access-Control-Allow-Origin" not in response.headers


async def test_refusals_of_allowed_origins_carry_cors_headers(http: aiohttp.ClientSession) -> None:
    def authenticate(request: web.Request) -> None:
        raise rtlink.AuthenticationError("who are you")

    async with serve(rtlink.Hub(authenticate=authenticate), allowed_origins=[APP]) as server:
        for method, endpoint in HTTP_TRANSPORTS:
            frame, headers = await http_close_frame(http, server, method, endpoint, APP)
            assert frame["code"] == 4500
            assert_cors(headers, APP)


async def test_preflight(http: aiohttp.ClientSession) -> None:
    async with serve(allowed_origins=[APP]) as server:
        for endpoint in ("sse", "poll", "send", "info"):
            async with http.options(f"{server.url}/{endpoint}", headers={
                "Origin": APP, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization",
            }) as response:
                assert response.status == 204
                assert_cors(response.headers, APP)
                assert response.headers["Access-Control-Allow-Methods"] == "GET, POST"
                assert response.headers["Access-Control-Allow-Headers"] == (
                    "Authorization, Content-Type, Last-Event-ID")
                assert response.headers["Access-Control-Max-Age"] == "600"
            async with http.options(f"{server.url}/{endpoint}", headers={
                    "Origin": EVIL, "Access-Control-Request-Method": "POST"}) as response:
                assert response.status == 403
                assert not any(name.startswith("Access-Control") for name in response.headers)
        # WebSockets have no preflight.
        async with http.options(f"{server.url}/ws", headers={"Origin": APP}) as response:
            assert response.status == 405


# --- connections per address ------------------------------------------------------------


async def test_connections_over_the_per_address_limit_get_1013(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtlink.transports.guard")
    async with serve(rtlink.Hub(max_connections_per_ip=2)) as server:
        ws = await http.ws_connect(ws_url(server))
        assert (await RawClient(ws, "json").frame())["type"] == "welcome"
        stream = await http.get(f"{server.url}/sse")
        assert (await EventStream(stream, "json").frame())["type"] == "welcome"
        # Full: a third connection of any transport is refused; sends are not counted.
        first, code = await websocket_close(http, server, None)
        assert (first["code"], code) == (1013, 1013)
        for method, endpoint in HTTP_TRANSPORTS[:2]:
            frame, _ = await http_close_frame(http, server, method, endpoint, None)
            assert frame == {"type": "close", "code": 1013,
                             "reason": "too many connections from this address"}
        async with http.post(f"{server.url}/send", data=b'{"type":"ping"}') as response:
            assert get_codec("json").decode(await response.read()) == [{"type": "pong"}]
        # A connection that ends gives its place back.
        await ws.close()
        await eventually(lambda: len(server.hub.connections) == 1)
        assert (await _welcome(http, server, None))[0]["type"] == "welcome"
        stream.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "rtlink.transports.guard"]
    assert len(lines) == 3 and all("from 127.0.0.1" in line for line in lines)


async def test_a_held_poll_counts_while_it_is_held(http: aiohttp.ClientSession) -> None:
    async with serve(rtlink.Hub(max_connections_per_ip=1, poll_timeout=30)) as server:
        latest = await server.hub.publish("c", 1)  # a poll at the latest position is held
        poll = asyncio.create_task(http.get(
            f"{server.url}/poll", params={"subs": json.dumps({"c": latest.to_wire()})}))
        await eventually(lambda: len(server.hub.connections) == 1)
        assert (await websocket_close(http, server, None))[1] == 1013
        await server.hub.publish("c", 2)  # answers the poll
        async with await poll as response:
            frames = get_codec("json").decode(await response.read())
            assert frames[-1]["data"] == 2
        await eventually(lambda: not server.hub.connections)
        assert (await _welcome(http, server, None))[0]["type"] == "welcome"


async def test_the_python_client_retries_after_1013() -> None:
    hub = rtlink.Hub(max_connections_per_ip=1)
    async with serve(hub) as server:
        first = rtlink.Client(server.url, backoff_base=0.05, backoff_cap=0.2)
        await first.connect()
        second = rtlink.Client(server.url, backoff_base=0.05, backoff_cap=0.2)
        changes: list[rtlink.StateChange] = []
        second.on("state", changes.append)
        connecting = asyncio.create_task(second.connect())
        await eventually(lambda: any(c.code == 1013 for c in changes), timeout=10)
        assert second.state is not S.CLOSED  # 1013 means try again later
        await first.close()
        async with asyncio.timeout(seconds(10)):
            await connecting
        assert second.state is S.CONNECTED
        await second.close()

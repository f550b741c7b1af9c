"""The HTTP publish API (``POST {path}/publish``) against a real server on loopback.

Callers are aiohttp client sessions (or a raw socket), as a non-Python service would
be; subscribers are real rtlink clients. "Nothing was published" is checked where it
can be: the next accepted publish must get the next offset, and subscribers must
receive exactly what was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web
from multidict import CIMultiDict

import rtlink
from rtlink.protocol import Position
from tests.support import FAST_RECONNECT, Server, collect, eventually, run_server, seconds
from tests.support.docs import HTTP_API, the_block
from tests.support.redis_server import run_redis

KEY = "k3y-for-tests-0123456789abcdef"
OTHER_KEY = "another-key-for-tests-fedcba9876"
BEARER = {"Authorization": f"Bearer {KEY}"}
JSON = {**BEARER, "Content-Type": "application/json"}
MSGPACK = {**BEARER, "Content-Type": "application/msgpack"}


@contextlib.asynccontextmanager
async def api_server(*, api_keys: Iterable[str] | None = (KEY,),
                     allowed_origins: Iterable[str] | None = None,
                     **hub_options: Any) -> AsyncIterator[Server]:
    """:func:`tests.support.run_server` with the publish API's ``attach`` options."""
    async with run_server(attach_options={"api_keys": api_keys,
                                          "allowed_origins": allowed_origins},
                          **hub_options) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def subscriber(server: Server) -> rtlink.Client:
    return rtlink.Client(server.url, **FAST_RECONNECT)


async def post(http: aiohttp.ClientSession, server: Server, body: bytes | str,
               headers: Any = None) -> tuple[int, aiohttp.ClientResponse, bytes]:
    """POST ``body`` to the publish API; the status, the response and its body."""
    data = body.encode() if isinstance(body, str) else body
    async with http.post(f"{server.url}/publish", data=data, headers=headers or JSON,
                         skip_auto_headers=["Content-Type"]) as response:
        return response.status, response, await response.read()


async def publish_json(http: aiohttp.ClientSession, server: Server, channel: str, data: Any,
                       **headers: str) -> Position:
    """Publish through the API (JSON) and return the position answered (200 expected)."""
    status, _, body = await post(http, server, json.dumps({"channel": channel, "data": data}),
                                 {**JSON, **headers})
    assert status == 200, body
    return Position.from_wire(json.loads(body)["position"])


def error_of(response: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
    """The ``error`` object of an error answer, which is JSON whatever the request."""
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-cache, no-store, no-transform"
    document = json.loads(body)
    assert set(document) == {"error"}
    assert set(document["error"]) == {"code", "message"}
    assert isinstance(document["error"]["message"], str) and document["error"]["message"]
    return dict(document["error"])


# --- success ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack",
                                          "application/x-msgpack"])
async def test_publish_reaches_subscriber_at_the_position_answered(
        http: aiohttp.ClientSession, content_type: str) -> None:
    data = {"id": 1234, "status": "shipped", "items": [1, 2.5, None, True, "é"]}
    binary = "msgpack" in content_type
    pack = msgpack.packb if binary else (lambda value: json.dumps(value).encode())
    unpack = msgpack.unpackb if binary else json.loads
    async with api_server() as server, subscriber(server) as client:
        async with client.subscribe("orders") as sub:
            status, response, body = await post(
                http, server, pack({"channel": "orders", "data": data}),
                {**BEARER, "Content-Type": content_type})
            assert status == 200, body
            # The answer is in the request's codec.
            assert response.content_type == ("application/msgpack" if binary
                                             else "application/json")
            assert response.headers["Cache-Control"] == "no-cache, no-store, no-transform"
            answer = unpack(body)
            assert set(answer) == {"channel", "position"}
            assert answer["channel"] == "orders"
            position = Position.from_wire(answer["position"])
            assert position.offset == 1
            [message] = await collect(sub, 1)
    assert message.channel == "orders"
    assert message.data == data
    assert message.position == position


async def test_successive_publishes_get_successive_positions(
        http: aiohttp.ClientSession) -> None:
    async with api_server() as server, subscriber(server) as client:
        async with client.subscribe("news") as sub:
            positions = [await publish_json(http, server, "news", n) for n in range(3)]
            messages = await collect(sub, 3)
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1
    assert [(m.data, m.position) for m in messages] == list(zip(range(3), positions,
                                                                strict=True))


async def test_a_pretty_printed_json_file_is_one_document(http: aiohttp.ClientSession) -> None:
    # curl -d @event.json sends the file as is: newlines inside the object are fine.
    body = json.dumps({"channel": "news", "data": {"title": "hello", "tags": ["a"]}},
                      indent=2)
    async with api_server() as server:
        status, _, answer = await post(http, server, body)
    assert status == 200, answer
    assert json.loads(answer)["position"]["offset"] == 1


async def test_unknown_fields_are_ignored_and_data_may_be_null(
        http: aiohttp.ClientSession) -> None:
    async with api_server() as server, subscriber(server) as client:
        async with client.subscribe("news") as sub:
            status, _, body = await post(
                http, server, '{"channel":"news","data":null,"comment":"from the CI"}')
            assert status == 200, body
            [message] = await collect(sub, 1)
    assert message.data is None


async def test_every_configured_key_is_accepted(http: aiohttp.ClientSession) -> None:
    async with api_server(api_keys=[KEY, OTHER_KEY]) as server:
        first = await publish_json(http, server, "news", 1)
        second = await publish_json(http, server, "news", 2,
                                    Authorization=f"bearer {OTHER_KEY}")  # any case
    assert (first.offset, second.offset) == (1, 2)


async def test_channel_rules_for_clients_do_not_apply(http: aiohttp.ClientSession) -> None:
    # A server-side publish: neither client_publish=False nor an owner stop it.
    channels = {"user:{user}:*": rtlink.ChannelOptions(subscribe="authenticated")}
    async with api_server(channels=channels) as server:
        position = await publish_json(http, server, "user:alice:inbox", {"text": "hi"})
    assert position.offset == 1


# --- idempotency ------------------------------------------------------------------------


async def test_a_repeated_idempotency_key_returns_the_first_position_and_delivers_once(
        http: aiohttp.ClientSession) -> None:
    async with api_server() as server, subscriber(server) as client:
        async with client.subscribe("orders") as sub:
            key = {"Idempotency-Key": "order-1234-shipped"}
            first = await publish_json(http, server, "orders", "shipped", **key)
            again = await publish_json(http, server, "orders", "shipped", **key)
            # Even with other data: the key decides, as for client publishes.
            third = await publish_json(http, server, "orders", "other data", **key)
            # The same key on another channel is another publish (keys are per channel).
            elsewhere = await publish_json(http, server, "audit", "shipped", **key)
            after = await publish_json(http, server, "orders", "next")
            messages = await collect(sub, 2)
            # Nothing else arrives: the duplicates published nothing.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await anext(aiter(sub))
    assert again == first and third == first
    assert elsewhere.offset == 1
    assert after.offset == first.offset + 1
    assert [(m.data, m.position) for m in messages] == [("shipped", first), ("next", after)]


async def test_idempotency_keys_are_also_read_from_msgpack_requests(
        http: aiohttp.ClientSession) -> None:
    body = msgpack.packb({"channel": "orders", "data": 1})
    headers = {**MSGPACK, "Idempotency-Key": "retry me"}  # inner spaces are printable
    async with api_server() as server:
        answers = [await post(http, server, body, headers) for _ in range(2)]
    [(status1, _, body1), (status2, _, body2)] = answers
    assert status1 == status2 == 200
    assert msgpack.unpackb(body1) == msgpack.unpackb(body2)


@pytest.mark.parametrize("key", ["x" * 129, "caf\u00e9", "tab\there"])
async def test_an_invalid_idempotency_key_is_refused(http: aiohttp.ClientSession,
                                                     key: str) -> None:
    async with api_server() as server:
        status, response, body = await post(http, server, '{"channel":"a","data":1}',
                                            {**JSON, "Idempotency-Key": key})
        assert status == 400
        assert error_of(response, body)["code"] == 400
        assert (await publish_json(http, server, "a", 2)).offset == 1  # nothing published


async def test_a_128_character_idempotency_key_is_accepted(http: aiohttp.ClientSession) -> None:
    async with api_server() as server:
        position = await publish_json(http, server, "a", 1, **{"Idempotency-Key": "k" * 128})
    assert position.offset == 1


async def test_several_idempotency_keys_are_refused(http: aiohttp.ClientSession) -> None:
    headers = CIMultiDict(JSON)
    headers.add("Idempotency-Key", "one")
    headers.add("Idempotency-Key", "two")
    async with api_server() as server:
        status, response, body = await post(http, server, '{"channel":"a","data":1}', headers)
    assert status == 400
    assert "one Idempotency-Key" in error_of(response, body)["message"]


# --- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "authentication required: send 'Authorization: Bearer <API key>'"),
        (f"Bearer {KEY}x", "API key not accepted"),
        (f"Bearer {KEY[:-1]}", "API key not accepted"),
        ("Bearer another-key-for-tests-zzzzzzzzzz", "API key not accepted"),
        ("Bearer caf\u00e9-key-for-tests-0123456789", "API key not accepted"),
        (f"Basic {KEY}", "the Authorization header must be 'Bearer <API key>'"),
        (KEY, "the Authorization header must be 'Bearer <API key>'"),
        ("Bearer", "the Authorization header must be 'Bearer <API key>'"),
        ("Bearer ", "the Authorization header must be 'Bearer <API key>'"),
    ],
)
async def test_a_missing_or_wrong_api_key_is_refused_with_401(
        http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
        authorization: str | None, message: str) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    caplog.set_level(logging.DEBUG)
    async with api_server() as server:
        status, response, body = await post(http, server, '{"channel":"a","data":1}', headers)
        assert status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert error_of(response, body) == {"code": 401, "message": message}
        assert (await publish_json(http, server, "a", 2)).offset == 1  # nothing published
    # The refusal is logged (at INFO, with the address), the keys never are.
    assert "refused /rt/publish from 127.0.0.1" in caplog.text
    assert KEY not in caplog.text and KEY[:-1] not in caplog.text


async def test_several_authorization_headers_are_refused(http: aiohttp.ClientSession) -> None:
    headers = CIMultiDict(JSON)
    headers.add("Authorization", f"Bearer {KEY}")
    async with api_server() as server:
        status, response, body = await post(http, server, '{"channel":"a","data":1}', headers)
    assert status == 401
    assert error_of(response, body)["code"] == 401


async def test_the_key_is_checked_before_the_body_is_read(http: aiohttp.ClientSession) -> None:
    # A caller without a key learns nothing, not even that its body is too large.
    async with api_server(max_message_size=100) as server:
        status, response, body = await post(http, server, b"x" * 1000,
                                            {"Content-Type": "text/plain"})
    assert status == 401
    assert error_of(response, body)["code"] == 401


@pytest.mark.parametrize("keys", [["short-key-15-ch"], [KEY, "x" * 15], [""]])
def test_attach_refuses_short_keys(keys: list[str]) -> None:
    app = web.Application()
    with pytest.raises(ValueError, match="at least 16") as caught:
        rtlink.attach(app, rtlink.Hub(), api_keys=keys)
    assert all(key not in str(caught.value) for key in keys if key)
    assert not any(route.resource is not None and route.resource.canonical.endswith("/publish")
                   for route in app.router.routes())


@pytest.mark.parametrize("key", ["key with a space inside", "caf\u00e9-0123456789abcdef",
                                 "tab\tkey-0123456789abcdef"])
def test_attach_refuses_keys_that_cannot_travel_in_a_header(key: str) -> None:
    with pytest.raises(ValueError, match="visible ASCII") as caught:
        rtlink.attach(web.Application(), rtlink.Hub(), api_keys=[KEY, key])
    assert key not in str(caught.value)
    assert "#2" in str(caught.value)  # named by its rank


def test_attach_refuses_a_single_string_for_api_keys() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        rtlink.attach(web.Application(), rtlink.Hub(), api_keys=KEY)


def test_api_keys_do_not_show_in_their_repr() -> None:
    from rtlink.transports.publish_api import ApiKeys

    keys = ApiKeys([KEY, OTHER_KEY, KEY])
    assert repr(keys) == "<ApiKeys: 2 keys>"
    assert keys.accepts(KEY) and keys.accepts(OTHER_KEY)
    assert not keys.accepts(KEY.upper()) and not keys.accepts("")


@pytest.mark.parametrize("api_keys", [None, []])
async def test_without_api_keys_the_route_is_not_mounted(http: aiohttp.ClientSession,
                                                         api_keys: list[str] | None) -> None:
    async with api_server(api_keys=api_keys) as server:
        status, _, _ = await post(http, server, '{"channel":"a","data":1}')
        assert status == 404
        assert (await server.hub.publish("a", 1)).offset == 1  # nothing published


# --- body -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
async def test_other_content_types_are_refused_with_415(
        http: aiohttp.ClientSession, content_type: str | None) -> None:
    headers = dict(BEARER)
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with api_server() as server:
        status, response, body = await post(http, server, '{"channel":"a","data":1}', headers)
        assert status == 415
        error = error_of(response, body)
        assert error["code"] == 400
        assert "application/json or application/msgpack" in error["message"]
        assert ("missing" if content_type is None else repr(content_type.split(";")[0])) \
            in error["message"]
        assert (await publish_json(http, server, "a", 2)).offset == 1


async def test_a_json_content_type_with_a_charset_is_json(http: aiohttp.ClientSession) -> None:
    async with api_server() as server:
        status, _, body = await post(http, server, '{"channel":"a","data":"\u00e9"}',
                                     {**BEARER, "Content-Type": "application/json; charset=utf-8"})
    assert status == 200, body


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        (JSON, '{"channel": "a", "data": 1,}', "invalid JSON body"),
        (JSON, "", "invalid JSON body"),
        (JSON, b"\xff\xfe{}", "invalid JSON body"),
        (JSON, '{"channel": "a", "data": NaN}', "invalid JSON body"),
        (JSON, "[" * 60_000, "invalid JSON body"),  # too deep
        (JSON, '["a", 1]', "the body must be an object"),
        (JSON, '"a"', "the body must be an object"),
        (JSON, '{"data": 1}', "the body has no 'channel' field"),
        (JSON, '{"channel": "a"}', "the body has no 'data' field"),
        (JSON, '{"channel": 7, "data": 1}', "'channel' must be a string"),
        (JSON, '{"channel": null, "data": 1}', "'channel' must be a string"),
        (JSON, '{"channel": "a", "data": "\\ud800"}', "lone surrogates"),
        (JSON, '{"channel": "a", "data": 1e400}', "infinity"),
        (JSON, '{"channel": "a", "data": 18446744073709551616}', "integer out of range"),
        (MSGPACK, b"\xc1", "invalid msgpack body"),
        (MSGPACK, b"\x82\xa7channel", "invalid msgpack body"),  # truncated
        (MSGPACK, b"", "invalid msgpack body"),
        (MSGPACK, msgpack.packb({"channel": "a", "data": 1}) * 2, "one msgpack value, not 2"),
        (MSGPACK, msgpack.packb({"channel": "a", "data": b"\x00"}), "bytes values"),
        (MSGPACK, msgpack.packb({1: "a"}), "invalid msgpack body"),  # non-string map key
        (MSGPACK, msgpack.packb([1]), "the body must be an object"),
    ],
)
async def test_a_malformed_body_is_refused_with_400(
        http: aiohttp.ClientSession, headers: dict[str, str], body: bytes | str,
        message: str) -> None:
    async with api_server() as server:
        status, response, answer = await post(http, server, body, headers)
        assert status == 400, answer
        error = error_of(response, answer)
        assert error["code"] == 400
        assert message in error["message"]
        assert (await publish_json(http, server, "a", 2)).offset == 1  # nothing published


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("bad channel!", 422),
        ("", 422),
        ("x" * 256, 422),
        ("chat:*", 422),  # patterns are not channels
        ("elsewhere", 404),  # valid but matches no rule of the server
    ],
)
async def test_a_bad_or_unknown_channel_is_refused_with_422(
        http: aiohttp.ClientSession, channel: str, code: int) -> None:
    channels = {"news": rtlink.ChannelOptions(), "chat:*": rtlink.ChannelOptions()}
    async with api_server(channels=channels) as server:
        status, response, body = await post(
            http, server, json.dumps({"channel": channel, "data": 1}))
        assert status == 422
        error = error_of(response, body)
        assert error["code"] == code
        assert (await publish_json(http, server, "news", 2)).offset == 1


# --- size -------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid JSON publish body of exactly ``size`` bytes."""
    body = b'{"channel":"a","data":""}'
    return body[:-2] + b"x" * (size - len(body)) + body[-2:]


async def test_a_body_of_exactly_max_message_size_is_accepted(
        http: aiohttp.ClientSession) -> None:
    async with api_server(max_message_size=1000) as server:
        status, _, body = await post(http, server, padded(1000))
    assert status == 200, body


async def test_a_larger_body_is_refused_with_413(http: aiohttp.ClientSession) -> None:
    async with api_server(max_message_size=1000) as server:
        status, response, body = await post(http, server, padded(1001))
        assert status == 413
        assert error_of(response, body) == {
            "code": 413, "message": "the body is larger than 1000 bytes"}
        assert (await publish_json(http, server, "a", 2)).offset == 1


@pytest.mark.slow
async def test_a_chunked_body_that_never_ends_is_refused_with_413(
        http: aiohttp.ClientSession) -> None:
    # No Content-Length: the server must stop reading at the limit, not at the end.
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"channel":"a","data":"'
        while sent < 50_000_000:
            sent += 65536
            yield b"x" * 65536

    async with api_server(max_message_size=1000) as server:
        async with http.post(f"{server.url}/publish", data=endless(), headers=JSON) as response:
            assert response.status == 413
            assert error_of(response, await response.read())["code"] == 413
        # It was answered long before the caller sent everything.
        assert sent < 50_000_000


# --- transport details --------------------------------------------------------------------


async def test_a_body_split_across_tcp_segments_is_read_whole() -> None:
    body = json.dumps({"channel": "news", "data": {"text": "split " * 50}}).encode()
    head = (f"POST /rt/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    async with api_server() as server, subscriber(server) as client:
        async with client.subscribe("news") as sub:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                writer.write(head + body[:40])
                await writer.drain()
                # Let the server read (and try to handle) the first part alone.
                await asyncio.sleep(0.2)
                writer.write(body[40:])
                await writer.drain()
                async with asyncio.timeout(seconds(5)):
                    answer = await reader.read()
            finally:
                writer.close()
            [message] = await collect(sub, 1)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", answer
    position = json.loads(rest.partition(b"\r\n\r\n")[2])["position"]
    assert message.data == {"text": "split " * 50}
    assert message.position == Position.from_wire(position)


async def test_a_caller_leaving_mid_body_publishes_nothing(
        http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    body = b'{"channel":"news","data":"never complete"}'
    head = (f"POST /rt/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    async with api_server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head + body[:-5])
        await writer.drain()
        await asyncio.sleep(0.1)  # the handler is waiting for the rest
        writer.transport.abort()
        await asyncio.sleep(0.1)
        assert (await publish_json(http, server, "news", "next")).offset == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_control_character_in_a_header_gets_aiohttps_plain_400_as_documented(
        http: aiohttp.ClientSession) -> None:
    # http-api.md §5: the one error of this API that is not JSON, because aiohttp's
    # HTTP parser answers it before rtlink runs; nothing is published.
    shown = the_block(HTTP_API, "", "Idempotency-Key: order\\x01-1236")
    request, _, answer = shown.partition("\n\n")
    shown_status, shown_type = answer.splitlines()[:2]
    body = b'{"channel":"news","data":1}'
    async with api_server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write((f"POST /rt/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                      f"{KEY}\r\nContent-Type: application/json\r\nIdempotency-Key: order"
                      f"\x01-1236\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        async with asyncio.timeout(seconds(5)):
            raw = await reader.read()
        writer.close()
        head, _, text = raw.decode().partition("\r\n\r\n")
        assert head.split("\r\n")[0] == shown_status
        assert shown_type in head.split("\r\n")
        assert text.splitlines()[0] == answer.split("\n\n")[1].splitlines()[0]
        assert (await publish_json(http, server, "news", "next")).offset == 1


async def test_a_half_closed_request_is_applied_without_an_answer(
        http: aiohttp.ClientSession) -> None:
    # http-api.md §5 (Idempotency-Key): a caller that half-closes after its body gets no
    # answer, but the publish was applied; its retry with the same key is applied once.
    body = b'{"channel":"news","data":"once"}'
    head = (f"POST /rt/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: retry-me\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    async with api_server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head + body)
        writer.write_eof()
        async with asyncio.timeout(seconds(5)):
            assert await reader.read() == b""  # no answer
        writer.close()
        retried = await publish_json(http, server, "news", "once",
                                     **{"Idempotency-Key": "retry-me"})
        assert retried.offset == 1  # applied by the half-closed request, not again
        assert (await publish_json(http, server, "news", "next")).offset == 2


async def test_a_browser_origin_not_allowed_is_refused_with_403(
        http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "rtlink.transports.guard")
    async with api_server(allowed_origins=["https://app.example.com"]) as server:
        status, response, body = await post(http, server, '{"channel":"a","data":1}',
                                            {**JSON, "Origin": "https://evil.example"})
        assert status == 403
        assert error_of(response, body) == {"code": 403, "message": "origin not allowed"}
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "origin 'https://evil.example' not allowed" in caplog.text
        assert (await publish_json(http, server, "a", 2)).offset == 1


async def test_no_cors_even_for_an_allowed_origin(http: aiohttp.ClientSession) -> None:
    # A server-to-server API: pages of other origins get no CORS answers, so a
    # browser neither passes the preflight nor reads a response.
    origin = "https://app.example.com"
    async with api_server(allowed_origins=[origin]) as server:
        status, response, body = await post(http, server, '{"channel":"a","data":1}',
                                            {**JSON, "Origin": origin})
        assert status == 200, body
        assert "Access-Control-Allow-Origin" not in response.headers
        async with http.options(f"{server.url}/publish", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"}) as preflight:
            assert preflight.status == 405
            assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_other_methods_get_405(http: aiohttp.ClientSession) -> None:
    async with api_server() as server:
        async with http.get(f"{server.url}/publish", headers=BEARER) as response:
            assert response.status == 405


# --- backend failures -------------------------------------------------------------------


@pytest.mark.redis
async def test_a_stopped_redis_answers_503_and_the_server_recovers(
        http: aiohttp.ClientSession) -> None:
    with run_redis() as redis:
        async with api_server(backend=redis.url) as server:
            before = await publish_json(http, server, "orders", "before")
            redis.stop()
            status, response, body = await post(
                http, server, '{"channel":"orders","data":"lost"}',
                {**JSON, "Idempotency-Key": "order-1"})
            assert status == 503
            error = error_of(response, body)
            assert error["code"] == 503
            assert error["message"].startswith("backend: Redis at 127.0.0.1:")
            redis.start()  # an empty Redis on the same port

            async def accepted() -> bool:
                status, _, _ = await post(http, server, '{"channel":"orders","data":"again"}',
                                          {**JSON, "Idempotency-Key": "order-1"})
                return status == 200

            await eventually(accepted, message="a publish accepted after Redis came back")
    assert before.offset == 1


@pytest.mark.redis
async def test_a_redis_refusing_writes_answers_503_and_publishes_nothing(
        http: aiohttp.ClientSession) -> None:
    with run_redis() as redis:
        async with api_server(backend=redis.url) as server, subscriber(server) as client:
            async with client.subscribe("orders") as sub:
                first = await publish_json(http, server, "orders", "first")
                # A real refusal by Redis itself (no replica to write to): NOREPLICAS.
                assert redis.command("CONFIG", "SET", "min-replicas-to-write", "1") == b"+OK\r\n"
                key = {"Idempotency-Key": "order-2"}
                status, response, body = await post(
                    http, server, '{"channel":"orders","data":"refused"}', {**JSON, **key})
                assert status == 503
                error = error_of(response, body)
                assert error["code"] == 503 and "NOREPLICAS" in error["message"]
                assert redis.command("CONFIG", "SET", "min-replicas-to-write", "0") == b"+OK\r\n"
                # Sent again with the same key, it is published now, at the next offset:
                # the refused one took no offset, stored no key, reached nobody.
                second = await publish_json(http, server, "orders", "second", **key)
                messages = await collect(sub, 2)
    assert second == Position(first.epoch, first.offset + 1)
    assert [(m.data, m.position) for m in messages] == [("first", first), ("second", second)]

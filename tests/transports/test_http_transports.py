"""The HTTP transports (SSE, long polling, send, info) against raw HTTP requests."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from typing import Any

import aiohttp
import pytest

import rtlink
from rtlink.codecs import get_codec
from rtlink.positions import parse_cursor
from tests.support import eventually, find_binary, missing_component, run_server, seconds
from tests.support.docs import PROTOCOL, assert_documented_answer, the_block

PUBLISH = {"*": rtlink.ChannelOptions(client_publish=True, history_size=100)}


def subs(**channels: Any) -> str:
    return json.dumps({name.replace("_", ":"): pos for name, pos in channels.items()})


class EventStream:
    """Reads server-sent events from a streamed response, decoding rtlink frames."""

    def __init__(self, response: aiohttp.ClientResponse, codec: str) -> None:
        self.response = response
        self.codec = get_codec(codec)
        self.last_id: str | None = None
        self._frames: list[dict[str, Any]] = []

    async def _event(self) -> None:
        data: list[bytes] = []
        while True:
            line = await self.response.content.readline()
            if not line:
                raise EOFError("stream ended")
            line = line.rstrip(b"\n")
            if not line:
                if data:
                    break
                continue
            field, _, value = line.partition(b": ")
            if field == b"data":
                data.append(value)
            elif field == b"id":
                self.last_id = value.decode()
        payload = b"\n".join(data)
        if self.codec.binary:
            payload = base64.b64decode(payload)
        self._frames.extend(self.codec.decode(payload))

    async def frame(self) -> dict[str, Any]:
        async with asyncio.timeout(seconds(5)):
            while not self._frames:
                await self._event()
        return self._frames.pop(0)

    async def frames(self, count: int) -> list[dict[str, Any]]:
        return [await self.frame() for _ in range(count)]


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def open_stream(http: aiohttp.ClientSession, server: Any, codec: str,
                      cursor: str, status: int = 200, **headers: str) -> EventStream:
    response = await http.get(f"{server.url}/sse", params={"codec": codec, "subs": cursor},
                              headers=headers)
    assert response.status == status
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    return EventStream(response, codec)


async def test_sse_stream_headers_welcome_subscribed_and_live(http, codec) -> None:
    async with run_server(channels=PUBLISH) as server:
        stream = await open_stream(http, server, codec, subs(news=None))
        headers = stream.response.headers
        assert headers["Content-Type"].startswith("text/event-stream")
        assert "no-cache" in headers["Cache-Control"]
        assert headers["X-Accel-Buffering"] == "no"
        welcome, subscribed = await stream.frames(2)
        assert welcome["type"] == "welcome"
        assert subscribed["type"] == "subscribed" and "id" not in subscribed
        assert subscribed["channel"] == "news" and subscribed["recovered"] is True
        position = await server.hub.publish("news", {"n": 1})
        publication = await stream.frame()
        assert publication["data"] == {"n": 1}
        assert publication["position"] == position.to_wire()
        # the event id is the whole cursor: enough to resume every channel
        assert json.loads(stream.last_id or "") == {"news": position.to_wire()}
        stream.response.close()


async def test_sse_resumes_from_subs_and_from_last_event_id(http, codec) -> None:
    async with run_server(channels=PUBLISH) as server:
        positions = [await server.hub.publish("news", n) for n in range(5)]
        start = positions[1].to_wire()
        stream = await open_stream(http, server, codec, subs(news=start))
        frames = await stream.frames(5)
        assert frames[1]["recovered"] is True
        assert [f["data"] for f in frames[2:]] == [2, 3, 4]
        last_id = stream.last_id
        stream.response.close()
        # A browser reconnects with the first URL and the last event id it saw.
        await server.hub.publish("news", 5)
        stream = await open_stream(http, server, codec, subs(news=start),
                                   **{"Last-Event-ID": last_id or ""})
        frames = await stream.frames(3)
        assert [f.get("data") for f in frames[2:]] == [5]
        stream.response.close()


@pytest.mark.slow
async def test_sse_pings_as_events_and_is_not_closed_for_silence(http, codec) -> None:
    async with run_server(ping_interval=0.05, pong_timeout=0.05) as server:
        stream = await open_stream(http, server, codec, subs(news=None))
        await stream.frames(2)
        for _ in range(6):  # several silence windows: the stream stays open
            assert (await stream.frame())["type"] == "ping"
        assert len(server.hub.connections) == 1
        stream.response.close()


async def test_sse_refusals_bad_cursor_and_shutdown(http) -> None:
    def authenticate(request: Any) -> None:
        if request.query.get("token") != "ok":
            raise rtlink.AuthenticationError("who are you")

    async with run_server(authenticate=authenticate) as server:
        for bad in ("[1]", "{", json.dumps({"bad channel": None}),
                    json.dumps({"a": {"epoch": "e"}})):
            async with http.get(f"{server.url}/sse", params={"subs": bad}) as response:
                assert response.status == 400
        # A refusal is an event stream of one close frame, with a status that stops a
        # native EventSource from repeating the request (401: credentials).
        stream = await open_stream(http, server, "json", subs(news=None), status=401)
        assert stream.response.headers["WWW-Authenticate"] == "Bearer"
        assert await stream.frame() == {"type": "close", "code": 4500, "reason": "who are you"}
        response = await http.get(f"{server.url}/sse",
                                  params={"subs": subs(news=None), "token": "ok"})
        stream = EventStream(response, "json")
        await stream.frames(2)
        stopping = asyncio.create_task(server.stop())
        close = await stream.frame()
        assert (close["type"], close["code"]) == ("close", rtlink.CloseCode.GOING_AWAY)
        await stopping


async def raw_answer(server: Any, request: bytes) -> bytes:
    """Send one raw HTTP/1.1 ``request`` (``Connection: close``) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        async with asyncio.timeout(seconds(5)):
            return await reader.read()
    finally:
        writer.close()


async def test_a_refused_stream_is_what_protocol_md_shows() -> None:
    # protocol.md 2.2: a refusal is not a 200, which a browser's EventSource would
    # repeat every few seconds for ever; the close frame is still the body.
    def authenticate(request: Any) -> None:
        raise rtlink.AuthenticationError("bad token")

    shown = the_block(PROTOCOL, "", "HTTP/1.1 401 Unauthorized")
    async with run_server(authenticate=authenticate) as server:
        answer = await raw_answer(server, b"GET /rt/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          b"Connection: close\r\n\r\n")
    assert_documented_answer(shown, answer)


@pytest.mark.parametrize(("code", "status"), [(4500, 401), (4003, 401), (4501, 403),
                                              (1011, 200), (1013, 200)])
async def test_a_refusal_has_the_status_of_its_code_on_every_http_transport(
        http, codec, code: int, status: int) -> None:
    # protocol.md 2.6, Refusals: 200 only when the same request may work later.
    def authenticate(request: Any) -> None:
        if code == 1011:
            raise RuntimeError("the hook crashed")
        raise rtlink.AuthenticationError("refused", code)

    wire = get_codec(codec)
    async with run_server(authenticate=authenticate) as server:
        for (method, endpoint), asked in itertools.product(
                (("GET", "sse"), ("GET", "poll"), ("POST", "send")), (None, "200")):
            # refusal=200: a client that reads the close event itself (the browser
            # client's EventSource, which shows nothing of a 401) asks for a 200.
            params = {"codec": codec} if asked is None else {"codec": codec, "refusal": asked}
            expected = status if asked is None else 200
            async with http.request(method, f"{server.url}/{endpoint}",
                                    params=params, data=b"") as response:
                body = await response.read()
                assert response.status == expected, (endpoint, response.status)
                assert ("WWW-Authenticate" in response.headers) is (expected == 401)
                if endpoint == "sse":
                    assert response.content_type == "text/event-stream"
                    (line,) = [line for line in body.split(b"\n") if line]
                    body = line.removeprefix(b"data: ")
                    body = base64.b64decode(body) if wire.binary else body
                else:
                    assert response.content_type == wire.content_type
                [close] = wire.decode(body)
                assert (close["type"], close["code"]) == ("close", code)
        assert not server.hub.connections


async def test_curl_f_fails_on_a_refusal_and_not_on_an_answer() -> None:
    # What a shell script sees (protocol.md 2.6): `curl -f` exits 22 on 401 and 403.
    curl = find_binary("curl")
    if curl is None:
        missing_component("curl is not installed")

    def authenticate(request: Any) -> None:
        if request.headers.get("Authorization") != "Bearer ok":
            raise rtlink.AuthenticationError("who are you")

    async with run_server(authenticate=authenticate) as server:
        async def exit_status(endpoint: str, *options: str) -> int:
            process = await asyncio.create_subprocess_exec(
                curl, "-sf", "-o", "/dev/null", *options, f"{server.url}/{endpoint}",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            async with asyncio.timeout(seconds(10)):
                return await process.wait()

        assert await exit_status("poll?connect=1") == 22
        assert await exit_status("send", "-d", '{"type":"ping"}') == 22
        assert await exit_status("sse") == 22
        assert await exit_status("poll?connect=1", "-H", "Authorization: Bearer ok") == 0
        assert await exit_status("send", "-d", '{"type":"ping"}',
                                 "-H", "Authorization: Bearer ok") == 0


async def test_absurdly_nested_cursors_are_http_400_not_500(http) -> None:
    # Found by fuzzing (tests/transports/test_fuzz_http.py): 1000 nested brackets fit
    # in a URL but exhaust the JSON parser's recursion limit, which was not caught.
    nested = "[" * 1500  # the parser gives up before it notices the missing "]"s
    for text in (nested, nested + "]" * 1500, '{"a":' * 1500):
        with pytest.raises(ValueError, match="subs must be a JSON object"):
            parse_cursor(text, 256)
    async with run_server() as server:
        for endpoint in ("sse", "poll"):
            async with http.get(f"{server.url}/{endpoint}", params={"subs": nested}) as r:
                assert r.status == 400
                assert await r.text() == "rtlink: subs must be a JSON object\n"
        async with http.get(f"{server.url}/sse", params={"subs": subs(news=None)},
                            headers={"Last-Event-ID": nested}) as r:
            assert r.status == 400
            assert await r.text() == "rtlink: Last-Event-ID: subs must be a JSON object\n"


async def poll(http: aiohttp.ClientSession, server: Any, codec: str,
               cursor: str, **params: str) -> list[dict[str, Any]]:
    async with http.get(f"{server.url}/poll",
                        params={"codec": codec, "subs": cursor, **params}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith(get_codec(codec).content_type)
        return get_codec(codec).decode(await r.read())


@pytest.mark.slow
async def test_long_poll_answers_at_once_with_news_and_holds_without(http, codec) -> None:
    async with run_server(channels=PUBLISH, poll_timeout=0.5) as server:
        fresh = await poll(http, server, codec, subs(news=None))
        assert [f["type"] for f in fresh] == ["welcome", "subscribed"]
        top = fresh[1]["position"]

        started = time.monotonic()
        held = await poll(http, server, codec, subs(news=top))  # nothing new: held
        assert time.monotonic() - started >= 0.45
        assert [f["type"] for f in held] == ["welcome", "subscribed"]

        started = time.monotonic()  # the first poll of a session is answered at once
        first = await poll(http, server, codec, subs(news=top), connect="1")
        assert time.monotonic() - started < 0.3
        assert [f["type"] for f in first] == ["welcome", "subscribed"]

        started = time.monotonic()  # a poll without subscriptions is held too
        assert [f["type"] for f in await poll(http, server, codec, "")] == ["welcome"]
        assert time.monotonic() - started >= 0.45

        async def publish_soon() -> rtlink.Position:
            await asyncio.sleep(0.1)
            return await server.hub.publish("news", "hello")

        publishing = asyncio.create_task(publish_soon())
        started = time.monotonic()
        answered = await poll(http, server, codec, subs(news=top))
        assert time.monotonic() - started < 0.45  # answered by the publication
        assert answered[-1]["data"] == "hello"
        assert answered[-1]["position"] == (await publishing).to_wire()


async def test_long_poll_replays_the_gap_in_one_answer(http, codec) -> None:
    async with run_server(channels=PUBLISH, poll_timeout=5) as server:
        first = await server.hub.publish("a", 0)
        for n in range(1, 30):
            await server.hub.publish("a", n)
            await server.hub.publish("b", n)
        start = {"epoch": first.epoch, "offset": 0}
        frames = await poll(http, server, codec, json.dumps({"a": start, "b": None}))
        data = [f["data"] for f in frames if f["type"] == "publication"]
        assert data == list(range(30))  # all of a; b was fresh, so nothing of b


async def test_long_poll_unrecovered_answers_at_once(http, codec) -> None:
    async with run_server(poll_timeout=5) as server:
        started = time.monotonic()
        frames = await poll(http, server, codec,
                            subs(news={"epoch": "gone", "offset": 3}))
        assert time.monotonic() - started < 1
        assert frames[1]["recovered"] is False


async def test_a_poll_with_a_refused_channel_is_answered_at_once(http, codec) -> None:
    # A refusal is news (protocol.md 2.3): the client learns it at once, instead of
    # after poll_timeout, also when the poll's other channels bring nothing new.
    channels = {"news": rtlink.ChannelOptions(),
                "private:*": rtlink.ChannelOptions(subscribe="authenticated")}
    async with run_server(channels=channels, poll_timeout=5) as server:
        top = (await server.hub.publish("news", 1)).to_wire()
        for cursor in (subs(nope=None), subs(nope=None, private_a=None),
                       subs(news=top, private_a=None)):
            started = time.monotonic()
            frames = await poll(http, server, codec, cursor)
            assert time.monotonic() - started < 1, cursor
            refused = [(f["code"], f["channel"]) for f in frames if f["type"] == "error"]
            assert refused == [(404 if name == "nope" else 401, name)
                               for name in json.loads(cursor) if name != "news"]


async def test_send_acks_publishes_and_refuses_subscriptions(http, codec) -> None:
    wire = get_codec(codec)
    async with run_server(channels=PUBLISH, max_message_size=2048) as server:
        stream = await open_stream(http, server, codec, subs(chat=None))
        await stream.frames(2)
        body = wire.join([
            wire.encode({"type": "publish", "id": 1, "channel": "chat", "data": "hi",
                         "key": "k1"}),
            wire.encode({"type": "subscribe", "id": 2, "channel": "chat"}),
            wire.encode({"type": "ping"}),
        ])
        async with http.post(f"{server.url}/send", params={"codec": codec},
                             data=body) as response:
            assert response.status == 200
            ack, refused, pong = wire.decode(await response.read())
        assert ack["type"] == "ack" and ack["id"] == 1
        assert (refused["type"], refused["code"], refused["id"]) == ("error", 400, 2)
        assert pong == {"type": "pong"}
        publication = await stream.frame()
        assert publication["data"] == "hi" and publication["position"] == ack["position"]
        # The same key again (a retry after a lost answer) is applied once.
        async with http.post(f"{server.url}/send", params={"codec": codec},
                             data=wire.encode({"type": "publish", "id": 9, "channel": "chat",
                                               "data": "hi", "key": "k1"})) as response:
            again = wire.decode(await response.read())[0]
        assert again["position"] == ack["position"]
        stream.response.close()


async def test_send_rejects_oversized_and_garbage_bodies(http) -> None:
    async with run_server(max_message_size=1024) as server:
        async with http.post(f"{server.url}/send", data=b"x" * 2000) as response:
            assert response.status == 413
            # With the cache headers of every answer of these endpoints (protocol.md 2.4).
            assert response.headers["Cache-Control"] == "no-cache, no-store, no-transform"
            assert response.headers["X-Accel-Buffering"] == "no"
            assert response.content_type == "text/plain"
        async with http.post(f"{server.url}/send", data=b"{not json") as response:
            assert response.status == 400
            close = get_codec("json").decode(await response.read())[0]
            assert close["code"] == rtlink.CloseCode.INVALID_PAYLOAD


async def test_info_lists_enabled_transports_and_disabled_ones_are_not_mounted(http) -> None:
    hub = rtlink.Hub(poll_timeout=12)
    from aiohttp import web

    app = web.Application()
    rtlink.attach(app, hub, path="/rt", transports=["websocket", "longpoll"])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/rt"
    try:
        async with http.get(f"{base}/info") as response:
            info = await response.json()
        assert info["transports"] == ["websocket", "longpoll"]
        assert info["codecs"] == ["json", "msgpack"] and info["poll_timeout"] == 12
        async with http.get(f"{base}/sse") as response:
            assert response.status == 404
        async with http.post(f"{base}/send", data=b'{"type":"ping"}') as response:
            assert response.status == 200  # long polling needs it
    finally:
        await runner.cleanup()
    with pytest.raises(ValueError):
        rtlink.attach(web.Application(), rtlink.Hub(), transports=["carrier-pigeon"])


@pytest.mark.slow
async def test_a_publication_during_a_later_channels_setup_answers_the_poll(http) -> None:
    from rtlink.backends.memory import MemoryBackend

    class SlowHistory(MemoryBackend):
        async def history(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.3)
            return await super().history(*args, **kwargs)

    async with run_server(hub=rtlink.Hub(SlowHistory(), poll_timeout=5)) as server:
        a = await server.hub.publish("a", 0)
        b = await server.hub.publish("b", 0)

        async def publish_during_setup_of_b() -> None:
            await asyncio.sleep(0.45)  # a is live, b's history is being read
            await server.hub.publish("a", "news")

        publishing = asyncio.create_task(publish_during_setup_of_b())
        started = time.monotonic()
        frames = await poll(http, server, "json",
                            json.dumps({"a": a.to_wire(), "b": b.to_wire()}))
        await publishing
        assert time.monotonic() - started < 2  # not held for poll_timeout
        assert [f["data"] for f in frames if f["type"] == "publication"] == ["news"]


@pytest.mark.parametrize("endpoint", ["sse", "poll"])
async def test_a_stream_or_poll_whose_client_left_is_dropped_at_once_with_handler_cancellation(
        http, endpoint) -> None:
    """With aiohttp's handler cancellation (``rtlink serve`` sets it) a client that
    closes its SSE stream or held poll leaves the hub at once, not at the next ping
    (25 s here) or the end of the poll."""
    async with run_server(handler_cancellation=True, ping_interval=25,
                          poll_timeout=25) as server:
        params = {"codec": "json", "subs": subs(news=None)}
        if endpoint == "sse":
            response = await http.get(f"{server.url}/sse", params=params)
            await EventStream(response, "json").frames(2)  # welcome, subscribed
        else:
            fresh = await poll(http, server, "json", params["subs"], connect="1")
            held = {"codec": "json", "subs": subs(news=fresh[1]["position"])}
            request = asyncio.ensure_future(http.get(f"{server.url}/poll", params=held))
            await eventually(lambda: len(server.hub.connections) == 1)
        assert len(server.hub.connections) == 1
        if endpoint == "sse":
            response.close()
        else:
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
        await eventually(lambda: not server.hub.connections, timeout=seconds(3))


async def test_send_reads_a_body_that_arrives_in_pieces(codec) -> None:
    """A body split over TCP segments (any body over one segment, on a real network)
    is read whole; reading only what had arrived decoded half a message (1007)."""
    wire = get_codec(codec)
    async with run_server(channels=PUBLISH) as server:
        body = wire.encode({"type": "publish", "id": 1, "channel": "chat", "data": "x" * 3000,
                            "key": "k1"})
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"POST {server.path}/send?codec={codec} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body[:1000])
        await writer.drain()
        await asyncio.sleep(0.2)  # a pause: the server reads the first piece alone
        writer.write(body[1000:])
        async with asyncio.timeout(seconds(5)):
            response = await reader.read()
        writer.close()
        head, _, answer = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        (ack,) = wire.decode(answer)
        assert (ack["type"], ack["id"]) == ("ack", 1)
        history = await server.hub.backend.history(
            "chat", rtlink.Position(ack["position"]["epoch"], 0), policy=PUBLISH["*"].policy)
        assert [p.data for p in history.publications] == ["x" * 3000]

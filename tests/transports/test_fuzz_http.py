"""Fuzzing the transports through a real server on loopback.

Random query strings (``codec``, ``subs``, ``connect``, ``token``, ``ticket``, anything
else), ``Last-Event-ID`` and ``Authorization`` headers go to ``GET /sse`` and
``GET /poll``; random bodies (frames with something wrong, raw bytes, oversized bodies,
any content type, chunked or not) to ``POST /send``; random WebSocket messages (text
and binary, any codec's bytes, with permessage-deflate or not) to ``/ws``. The pure
decoders (tests/test_fuzz.py) predict each answer: the status, which frames answer
which requests, and whether the authenticate hook (TokenAuth) refuses. Whatever the
input, the server answers only in documented ways — HTTP 200, 400 or 413, never 500;
on WebSocket an ``error`` frame or a documented close (1007, 1009), never 1011 — and
logs no error.

One server per test serves every example: the test is synchronous, and each example
runs its requests on the test's event loop (asyncio.Runner), on which the server runs
too. So hypothesis sees a plain function and needs no health check suppressed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

import rtlink
from rtlink.auth import TokenAuth, bearer_token
from rtlink.codecs import CODECS, Codec
from rtlink.codes import CloseCode, ErrorCode
from rtlink.errors import AuthenticationError, FrameError, ProtocolError
from rtlink.positions import parse_cursor
from rtlink.protocol import (
    History,
    Ping,
    Pong,
    Position,
    Presence,
    Publish,
    Subscribe,
    Unsubscribe,
    decode_client_message,
    parse_server_frame,
)
from tests.support import Server, run_server, seconds
from tests.support.fuzzing import (
    TOKEN_SECRET,
    Tally,
    client_message,
    cursor_text,
    cursors,
    fuzz_settings,
    register_summary,
    tokens,
)

pytestmark = pytest.mark.slow

T = TypeVar("T")
RecordProperty = Callable[[str, object], None]

MAX_MESSAGE_SIZE = 2048
MAX_SUBSCRIPTIONS = 4
#: aiohttp's limit on the request line and on each header (docs/protocol.md 2.6).
MAX_LINE = 8190
#: Clients may subscribe to news* and [a-m]*, publish to [a-m]* only (news*: 403); any
#: other channel is unknown (404): fuzzed channels reach every answer of both requests.
CHANNELS = {
    "news*": rtlink.ChannelOptions(),
    "[a-m]*": rtlink.ChannelOptions(client_publish=True, history_size=20),
}
HUB_OPTIONS: dict[str, Any] = {
    "channels": CHANNELS,
    "max_message_size": MAX_MESSAGE_SIZE,
    "max_subscriptions": MAX_SUBSCRIPTIONS,
    # WebSocket messages are fuzzed with and without permessage-deflate.
    "websocket_compression": True,
    # A poll with nothing new is held this long: keeps such examples short.
    "poll_timeout": 0.002,
    # No server pings and no closing for client silence (4000) during a test, even a
    # long one (RTLINK_FUZZ_FACTOR): a WebSocket may stay idle while others are used.
    "ping_interval": 600.0,
    # Thousands of publishes a second: the rate limit would answer most with 429.
    "publish_rate": None,
}
#: What the server's authenticate hook (another TokenAuth like it) decides is predicted
#: with this one. Requests without credentials are admitted, so the fuzzed credentials
#: (Authorization header, token and ticket parameters) of the stream and poll requests
#: reach the hook over the wire and everything else is still served.
AUTH = TokenAuth(TOKEN_SECRET, anonymous=True)
#: Loggers whose errors mean a failure: an unhandled exception in a handler (aiohttp
#: logs it and answers 500), in rtlink, or in a task nobody awaited (asyncio).
WATCHED_LOGGERS = ("aiohttp", "rtlink", "asyncio")


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(pytestconfig: pytest.Config) -> None:
    register_summary(pytestconfig)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code == 400:
            # aiohttp logs (at ERROR) each request it cannot parse, e.g. one whose
            # request line or header is too long, and answers it with 400 itself: the
            # documented outcome (docs/protocol.md 2.6), not a failure of the server.
            return
        self.records.append(record)

    def text(self) -> str:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return "\n".join(formatter.format(record) for record in self.records)


class Live:
    """A fuzz server on loopback and an HTTP client, driven from synchronous code.

    :meth:`run` runs one coroutine on the loop of both (the server works while an
    example waits for it); :meth:`assert_no_errors_logged` checks that nothing was
    logged at ERROR by the watched loggers since the last check.
    """

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._stack = contextlib.AsyncExitStack()
        self._records = _Records()
        self.server: Server
        self.session: aiohttp.ClientSession

    def __enter__(self) -> Live:
        for name in WATCHED_LOGGERS:
            logging.getLogger(name).addHandler(self._records)
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.server = await self._stack.enter_async_context(
            run_server(**HUB_OPTIONS, authenticate=TokenAuth(TOKEN_SECRET, anonymous=True)))
        self.session = await self._stack.enter_async_context(aiohttp.ClientSession())

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.run(self._stack.aclose())
            self._runner.close()
        finally:
            for name in WATCHED_LOGGERS:
                logging.getLogger(name).removeHandler(self._records)
        if exc_info[0] is None:
            self.assert_no_errors_logged()  # also what was logged on shutdown

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def url(self, endpoint: str, query: str) -> URL:
        return URL(f"{self.server.url}/{endpoint}?{query}", encoded=True)

    def assert_no_errors_logged(self) -> None:
        text = self._records.text()
        self._records.records.clear()
        assert not text, f"the server logged errors:\n{text}"


# --- requests ---------------------------------------------------------------------------

_NAMES = st.sampled_from(["codec", "subs", "connect", "token", "ticket", "x", "Codec", ""]) \
    | st.text(max_size=4)
_CODEC_VALUES = st.sampled_from(["json", "msgpack", "", "JSON", "xml", "json ", "msgpack\x00"]) \
    | st.text(max_size=8)
_CONNECT_VALUES = st.sampled_from(["1", "0", "", "true", "01"]) | st.text(max_size=3)
_RAW_QUERY = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
    max_size=120,
) | st.sampled_from(["subs=" + "%5B" * 1500, "subs=" + "[" * 3000, "subs=" + "x" * 9000,
                     "codec=json&subs=%7B%22a%22:%7B%22epoch%22:%22e%22,%22offset%22:1e400%7D%7D",
                     "subs=%7B%22news%22:null%7D&subs=%5B%5D", "codec=%FF", "subs=%ED%A0%80"])


def _encode(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


_QUERY_SHAPES = st.sampled_from(["raw", "usual", "usual", "pairs", "pairs", "pairs"])
_USUAL_CODECS = st.sampled_from([None, "json", "msgpack"])
_PAIR_COUNTS = st.integers(0, 4)
_OTHER_VALUES = st.text(max_size=8)


def _valid_cursor(cursor: dict[str, Position | None]) -> str:
    return json.dumps({channel: None if position is None else position.to_wire()
                       for channel, position in cursor.items()})


_valid_cursors = cursors.map(_valid_cursor)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    """A query string: the usual parameters with a valid cursor, random parameters
    (names and values typical of rtlink or not, repeated or not, percent-encoded), or
    raw URL characters with broken escapes."""
    shape = draw(_QUERY_SHAPES)
    if shape == "raw":
        return draw(_RAW_QUERY)
    pairs = []
    if shape == "usual":
        codec = draw(_USUAL_CODECS)
        if codec is not None:
            pairs.append(f"codec={codec}")
        pairs.append(f"subs={_encode(draw(_valid_cursors))}")
    for _ in range(draw(_PAIR_COUNTS)):
        name = draw(_NAMES)
        if name == "codec":
            value = draw(_CODEC_VALUES)
        elif name == "subs":
            value = draw(cursor_text())
        elif name == "connect":
            value = draw(_CONNECT_VALUES)
        elif name in ("token", "ticket"):
            value = draw(tokens())
        else:
            value = draw(_OTHER_VALUES)
        pairs.append(f"{_encode(name)}={_encode(value)}")
    return "&".join(pairs)


def _header_text(text: str) -> str:
    """``text`` as an HTTP header value can carry it (no controls, no lone surrogates,
    no surrounding blanks, which the parser strips)."""
    return "".join(c for c in text if c >= " " and c != "\x7f"
                   and not "\ud800" <= c <= "\udfff").strip(" \t")


last_event_ids = st.none() | st.none() | _valid_cursors | cursor_text().map(_header_text) \
    | st.sampled_from(["[" * 5000, "{" * 9000, '{"news":null}'])


authorizations = st.none() | st.none() | st.none() \
    | tokens().map(lambda token: _header_text(f"Bearer {token}")) \
    | st.text(max_size=20).map(_header_text)


def expected_refusal(query: Any, authorization: str | None) -> str | None:
    """Why the authenticate hook refuses a request (the reason of its 4500 ``close``
    frame; "" when the reason is not predicted), or None if it admits it."""
    if "token" in query:
        return "tokens are not accepted in URLs; use a ticket"
    if authorization is not None:
        try:
            AUTH.verify(bearer_token(authorization))
        except AuthenticationError as exc:
            return str(exc)
        return None
    if "ticket" in query:
        return ""  # no fuzzed ticket is a real one
    return None


def check_refused(frames: list[dict[str, Any]], reason: str) -> None:
    assert len(frames) == 1 and frames[0]["type"] == "close", frames
    # A ticket that was good but is used up gets 4003 (a new one), any other 4500.
    used_up = frames[0]["reason"] in ("ticket expired", "ticket already used")
    assert frames[0]["code"] == (CloseCode.TOKEN_EXPIRED if used_up
                                 else CloseCode.UNAUTHORIZED), frames
    assert frames[0]["reason"] == reason or not reason, (frames, reason)


def parsed_query(query: str) -> Any:
    """The query as the server reads it (aiohttp's request.query, built by yarl)."""
    return URL.build(path="/", query_string=query, encoded=True).query


def expected_cursor(query: Any, last_event_id: str | None
                    ) -> tuple[int, dict[str, Any] | None]:
    """Status the server answers a stream or poll request with (200 or 400), and the
    channels it then subscribes (docs/protocol.md 2.2, 4.2)."""
    if query.get("codec", "json") not in CODECS:
        return 400, None
    try:
        cursor: dict[str, Any] = parse_cursor(query.get("subs"), MAX_SUBSCRIPTIONS)
        if last_event_id is not None:
            parse_cursor(last_event_id, MAX_SUBSCRIPTIONS)
    except ValueError:
        return 400, None
    return 200, cursor


def too_long(server: Live, endpoint: str, query: str, headers: dict[str, str]) -> bool:
    """Whether aiohttp refuses the request itself: its URL is longer than aiohttp's
    line limit, or a header's name and value together longer than its field limit."""
    url = f"{server.server.path}/{endpoint}?{query}"
    return len(url.encode()) > MAX_LINE or any(
        len(name) + len(value.encode()) > MAX_LINE for name, value in headers.items())


def check_refusal(status: int, content_type: str, body: bytes, request_too_long: bool) -> None:
    assert status == 400, status
    if not request_too_long:  # else aiohttp answers itself (2.6 "Size")
        assert content_type == "text/plain", content_type
        assert body.startswith(b"rtlink: ") and body.endswith(b"\n"), body


def check_subscription_answers(frames: list[dict[str, Any]], cursor: dict[str, Any]) -> None:
    """``welcome``, then one ``subscribed`` (or ``error``) per channel of the cursor, in
    its order, none with an id; every frame a valid server frame."""
    for frame in frames:
        parse_server_frame(frame)
    assert frames[0]["type"] == "welcome", frames
    answers = [frame for frame in frames if frame["type"] in ("subscribed", "error")]
    assert [frame["channel"] for frame in answers] == list(cursor), frames
    for frame in answers:
        assert "id" not in frame
        if frame["type"] == "error":  # the only refusal possible here: no channel rule
            assert frame["code"] == ErrorCode.UNKNOWN_CHANNEL, frame
    assert all(frame["type"] in ("welcome", "subscribed", "error", "publication")
               for frame in frames), frames


async def read_events(response: aiohttp.ClientResponse, codec: Codec,
                      enough: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """Read server-sent events from ``response`` until ``enough(frames)``."""
    frames: list[dict[str, Any]] = []
    data: list[bytes] = []
    async with asyncio.timeout(seconds(10)):
        while not enough(frames):
            line = await response.content.readline()
            assert line, f"the stream ended after {frames}"
            line = line.rstrip(b"\n")
            if line:
                field, _, value = line.partition(b": ")
                assert field in (b"id", b"data"), line
                if field == b"data":
                    data.append(value)
                continue
            if data:
                payload = b"\n".join(data)
                frames.extend(codec.decode(base64.b64decode(payload) if codec.binary
                                           else payload))
                data = []
    return frames


# --- GET /sse and /poll -------------------------------------------------------------------


def test_sse_requests(record_property: RecordProperty) -> None:
    tally = Tally(300)
    outcomes: set[str] = set()

    with Live() as server:
        @fuzz_settings(tally.target)
        @given(query_strings(), last_event_ids, authorizations)
        def run(query: str, last_event_id: str | None, authorization: str | None) -> None:
            tally()
            outcomes.add(server.run(sse_request(server, query, last_event_id, authorization)))
            server.assert_no_errors_logged()

        run()
    tally.check("GET /sse: query strings and Last-Event-ID", record_property)
    # The fuzzing is not blind: every kind of answer occurred.
    assert outcomes == {"400", "200", "200 subscribed", "refused"}, outcomes


async def sse_request(server: Live, query: str, last_event_id: str | None,
                      authorization: str | None) -> str:
    parsed = parsed_query(query)
    status, cursor = expected_cursor(parsed, last_event_id)
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    if authorization is not None:
        headers["Authorization"] = authorization
    refused_by_aiohttp = too_long(server, "sse", query, headers)
    async with server.session.get(server.url("sse", query), headers=headers) as response:
        if refused_by_aiohttp or status == 400:
            check_refusal(response.status, response.content_type, await response.read(),
                          refused_by_aiohttp)
            return "400"
        refusal = expected_refusal(parsed, authorization)
        # A refusal (4500) is an event stream too, with 401: a native EventSource stops.
        assert response.status == (200 if refusal is None else 401), (
            response.status, await response.text())
        assert response.content_type == "text/event-stream"
        assert cursor is not None
        codec = CODECS[parsed.get("codec", "json")]
        if refusal is not None:
            check_refused(await read_events(response, codec, bool), refusal)
            assert await response.content.read() == b"", "the refused stream ends"
            return "refused"

        def enough(frames: list[dict[str, Any]]) -> bool:
            return sum(frame["type"] in ("subscribed", "error") for frame in frames) \
                >= len(cursor) and bool(frames)

        check_subscription_answers(await read_events(response, codec, enough), cursor)
    return "200 subscribed" if cursor else "200"


def test_poll_requests(record_property: RecordProperty) -> None:
    tally = Tally(400)
    outcomes: set[str] = set()

    with Live() as server:
        @fuzz_settings(tally.target)
        @given(query_strings(), authorizations)
        def run(query: str, authorization: str | None) -> None:
            tally()
            outcomes.add(server.run(poll_request(server, query, authorization)))
            server.assert_no_errors_logged()

        run()
    tally.check("GET /poll: query strings", record_property)
    assert outcomes == {"400", "200", "200 subscribed", "refused"}, outcomes


async def poll_request(server: Live, query: str, authorization: str | None) -> str:
    parsed = parsed_query(query)
    status, cursor = expected_cursor(parsed, None)
    headers = {} if authorization is None else {"Authorization": authorization}
    refused_by_aiohttp = too_long(server, "poll", query, headers)
    async with server.session.get(server.url("poll", query), headers=headers) as response:
        body = await response.read()
        if refused_by_aiohttp or status == 400:
            check_refusal(response.status, response.content_type, body, refused_by_aiohttp)
            return "400"
        refusal = expected_refusal(parsed, authorization)
        assert response.status == (200 if refusal is None else 401), (response.status, body)
        codec = CODECS[parsed.get("codec", "json")]
        assert response.content_type == codec.content_type
        assert cursor is not None
        if refusal is not None:
            check_refused(codec.decode(body), refusal)
            return "refused"
        check_subscription_answers(codec.decode(body), cursor)
    return "200 subscribed" if cursor else "200"


# --- POST /send -----------------------------------------------------------------------------

_CONTENT_TYPES = st.sampled_from([
    None, "application/json", "application/msgpack", "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/octet-stream", "x/y; charset=nonsense",
])
_SEND_CODECS = st.sampled_from(["json", "msgpack", None, "xml", ""])


@st.composite
def send_bodies(draw: st.DrawFn, codec: Codec) -> bytes:
    """A body: a message (frames, near-valid frames, damage, random bytes) in ``codec``
    or in the other codec, an oversized one, or one of exactly the size limit."""
    shape = draw(st.sampled_from(["message"] * 6 + ["other codec", "oversized", "exact"]))
    if shape == "message":
        return draw(_MESSAGES[codec.name])
    if shape == "other codec":
        return draw(_MESSAGES["json" if codec.binary else "msgpack"])
    if shape == "oversized":
        return b"x" * draw(st.integers(MAX_MESSAGE_SIZE + 1, 3 * MAX_MESSAGE_SIZE))
    # A ping padded with spaces (JSON) or a publish padded in its data (msgpack) to
    # exactly the limit: still accepted.
    if not codec.binary:
        return b'{"type":"ping"}'.ljust(MAX_MESSAGE_SIZE)
    body = codec.encode({"type": "publish", "id": 1, "channel": "chat", "data": ""})
    return codec.encode({"type": "publish", "id": 1, "channel": "chat",
                         "data": "d" * (MAX_MESSAGE_SIZE - len(body) - 2)})


_MESSAGES = {name: client_message(codec) for name, codec in CODECS.items()}


def expected_answers(hub: rtlink.Hub, items: list[Any],
                     subscriptions: set[str] | None) -> list[tuple[str, Any, Any]]:
    """The answers (type, id, code) the server sends to decoded client frames, in
    order. ``subscriptions`` is the WebSocket connection's set, updated; None on
    ``POST /send``, where subscribe and unsubscribe are refused."""
    answers: list[tuple[str, Any, Any]] = []
    for item in items:
        if isinstance(item, FrameError):
            answers.append(("error", item.request_id, item.error_code))
        elif isinstance(item, Ping):
            answers.append(("pong", None, None))
        elif isinstance(item, Pong):
            pass
        elif isinstance(item, Subscribe | Unsubscribe) and subscriptions is None:
            answers.append(("error", item.id, ErrorCode.BAD_REQUEST))
        elif isinstance(item, Publish):
            options = hub.rules.match(item.channel)
            if options is None:
                answers.append(("error", item.id, ErrorCode.UNKNOWN_CHANNEL))
            elif not options.client_publish:
                answers.append(("error", item.id, ErrorCode.FORBIDDEN))
            else:
                answers.append(("ack", item.id, None))
        elif isinstance(item, Subscribe):
            assert subscriptions is not None
            if item.channel in subscriptions:
                answers.append(("error", item.id, ErrorCode.ALREADY_SUBSCRIBED))
            elif len(subscriptions) >= MAX_SUBSCRIPTIONS:
                answers.append(("error", item.id, ErrorCode.LIMIT_EXCEEDED))
            elif hub.rules.match(item.channel) is None:
                answers.append(("error", item.id, ErrorCode.UNKNOWN_CHANNEL))
            else:
                subscriptions.add(item.channel)
                answers.append(("subscribed", item.id, None))
        elif isinstance(item, History | Presence):
            # Reads: authorized like a subscribe (every channel here is open to
            # anyone); no channel here keeps presence (400).
            if hub.rules.match(item.channel) is None:
                answers.append(("error", item.id, ErrorCode.UNKNOWN_CHANNEL))
            elif isinstance(item, Presence):
                answers.append(("error", item.id, ErrorCode.BAD_REQUEST))
            else:
                answers.append(("history", item.id, None))
        else:
            assert isinstance(item, Unsubscribe) and subscriptions is not None
            subscriptions.discard(item.channel)
            answers.append(("ack", item.id, None))
    return answers


def answers_of(frames: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(type, id, code) of the answers among ``frames`` (publications and the server's
    pings are not answers)."""
    for frame in frames:
        parse_server_frame(frame)
    return [(frame["type"], frame.get("id"), frame.get("code")) for frame in frames
            if frame["type"] not in ("publication", "ping")]


def test_send_requests(record_property: RecordProperty) -> None:
    tally = Tally(700)
    outcomes: set[str] = set()

    with Live() as server:
        @fuzz_settings(tally.target)
        @given(_SEND_CODECS, st.data(), _CONTENT_TYPES, st.booleans())
        def run(codec_name: str | None, data: st.DataObject, content_type: str | None,
                chunked: bool) -> None:
            codec = CODECS.get(codec_name or "json", CODECS["json"])
            body = data.draw(send_bodies(codec))
            tally()  # after the last draw: an example hypothesis abandons is not counted
            outcomes.add(server.run(send_request(server, codec_name, body, content_type,
                                                 chunked)))
            server.assert_no_errors_logged()

        run()
    tally.check("POST /send: bodies", record_property)
    assert outcomes == {"400 codec", "413", "400 undecodable", "200", "200 ack"}, outcomes


async def send_request(server: Live, codec_name: str | None, body: bytes,
                       content_type: str | None, chunked: bool) -> str:
    query = "" if codec_name is None else f"codec={_encode(codec_name)}"
    headers = {} if content_type is None else {"Content-Type": content_type}

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    async with server.session.post(server.url("send", query), headers=headers,
                                   data=chunks() if chunked else body) as response:
        answer = await response.read()
        status, content = response.status, response.content_type
    codec = CODECS.get(codec_name if codec_name is not None else "json")
    if codec is None:
        check_refusal(status, content, answer, request_too_long=False)
        assert answer.startswith(b"rtlink: unknown codec")
        return "400 codec"
    if len(body) > MAX_MESSAGE_SIZE:
        assert status == 413, (status, answer)
        return "413"
    assert content == codec.content_type
    try:
        items = decode_client_message(codec, body)
    except ProtocolError:
        assert status == 400, (status, answer)
        [close] = codec.decode(answer)
        assert close["type"] == "close" and close["code"] == CloseCode.INVALID_PAYLOAD, close
        return "400 undecodable"
    assert status == 200, (status, answer)
    frames = codec.decode(answer) if answer else []
    answers = answers_of(frames)
    assert answers == expected_answers(server.server.hub, items, None), frames
    return "200 ack" if any(answer[0] == "ack" for answer in answers) else "200"


# --- WebSocket -------------------------------------------------------------------------------


class Socket:
    """One fuzzed WebSocket connection and what the server knows about it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, codec: Codec) -> None:
        self.ws = ws
        self.codec = codec
        self.subscriptions: set[str] = set()
        #: Channels subscribed at some time: publications of a channel unsubscribed in
        #: the same exchange may arrive before its ``ack``.
        self.subscribed_ever: set[str] = set()
        self.sentinels = 0

    async def receive(self) -> aiohttp.WSMessage:
        async with asyncio.timeout(seconds(10)):
            return await self.ws.receive()


@st.composite
def ws_messages(draw: st.DrawFn, codec: Codec) -> tuple[bool, bytes]:
    """(binary, payload): mostly the codec's message type and a message in it; else
    the other type, the other codec's bytes, an oversized message."""
    shape = draw(st.sampled_from(["message"] * 7 + ["other codec", "oversized"]))
    binary = codec.binary if draw(st.integers(0, 5)) else not codec.binary
    if shape == "message":
        return binary, draw(_MESSAGES[codec.name])
    if shape == "other codec":
        return binary, draw(_MESSAGES["json" if codec.binary else "msgpack"])
    size = draw(st.integers(MAX_MESSAGE_SIZE + 1, 2 * MAX_MESSAGE_SIZE))
    return binary, (b'{"type":"ping"}' + b" " * size)[:size]


def expected_close(codec: Codec, binary: bool, payload: bytes) -> tuple[int | None, bool]:
    """The close code a message gets (None: it is answered), and whether rtlink sends
    a ``close`` frame first (docs/protocol.md 2.1, 3.3)."""
    if len(payload) > MAX_MESSAGE_SIZE:
        return CloseCode.MESSAGE_TOO_BIG, False
    if not binary:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return CloseCode.INVALID_PAYLOAD, False
    try:
        decode_client_message(codec, payload if binary else payload.decode())
    except ProtocolError:
        return CloseCode.INVALID_PAYLOAD, True
    return None, False


def test_websocket_messages(record_property: RecordProperty) -> None:
    tally = Tally(700)
    sockets: dict[tuple[str, bool], Socket] = {}
    outcomes: set[str] = set()

    with Live() as server:
        @fuzz_settings(tally.target)
        @given(st.sampled_from(list(CODECS)), st.booleans(), st.data())
        def run(codec_name: str, compress: bool, data: st.DataObject) -> None:
            codec = CODECS[codec_name]
            messages = data.draw(st.lists(ws_messages(codec), min_size=1, max_size=2))
            tally()  # after the last draw: an example hypothesis abandons is not counted
            outcomes.add(server.run(websocket_exchange(server, sockets, codec, compress,
                                                       messages)))
            server.assert_no_errors_logged()

        try:
            run()
        finally:
            for socket in sockets.values():
                server.run(socket.ws.close())
    tally.check("WebSocket /ws: messages", record_property)
    assert {"1007", "1007 no frame", "1009", "answered", "subscribed"} <= outcomes, outcomes


async def websocket_exchange(server: Live, sockets: dict[tuple[str, bool], Socket],
                             codec: Codec, compress: bool,
                             messages: list[tuple[bool, bytes]]) -> str:
    """Send ``messages`` on the connection of ``codec`` (with permessage-deflate or
    not), opened anew if the last exchange closed it; check every answer."""
    socket = sockets.get((codec.name, compress))
    if socket is None or socket.ws.closed:
        # With deflate, the size limit applies to the inflated message too (2.1).
        ws = await server.session.ws_connect(
            str(server.server.url).replace("http://", "ws://") + "/ws",
            protocols=(codec.subprotocol,), compress=15 if compress else 0)
        assert ws.compress == (15 if compress else 0)
        socket = sockets[(codec.name, compress)] = Socket(ws, codec)
        welcome = await socket.receive()
        assert codec.decode(welcome.data)[0]["type"] == "welcome"
    expected: list[tuple[str, Any, Any]] = []
    sentinel = ""
    close_code: int | None = None
    close_frame = False
    for binary, payload in messages:
        await socket.ws.send_frame(payload, aiohttp.WSMsgType.BINARY if binary
                                   else aiohttp.WSMsgType.TEXT)
        close_code, close_frame = expected_close(codec, binary, payload)
        if close_code is not None:
            break  # the server reads nothing after it
        text = payload if binary else payload.decode()
        expected += expected_answers(server.server.hub, decode_client_message(codec, text),
                                     socket.subscriptions)
        socket.subscribed_ever |= socket.subscriptions
    if close_code is None:
        # An unknown frame type is answered with an error naming it: once that answer
        # is in, every answer to the fuzzed messages is too (answers come in order).
        socket.sentinels += 1
        sentinel = f"fuzz-sentinel-{socket.sentinels}"
        await socket.ws.send_frame(codec.encode({"type": sentinel}),
                                   aiohttp.WSMsgType.BINARY if codec.binary
                                   else aiohttp.WSMsgType.TEXT)
    frames: list[dict[str, Any]] = []
    while True:
        message = await socket.receive()
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            assert (message.type == aiohttp.WSMsgType.BINARY) == codec.binary
            frames.extend(codec.decode(message.data))
            if close_code is None and frames and sentinel in frames[-1].get("message", ""):
                frames.pop()
                break
            continue
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSED), message
        assert socket.ws.close_code == close_code, (socket.ws.close_code, frames)
        break
    if close_frame:
        assert frames and frames[-1]["type"] == "close", frames
        assert frames.pop()["code"] == close_code
    answers = answers_of(frames)
    if close_code is not None and not close_frame:
        # aiohttp closed the connection as soon as it read the message (too big, or
        # text that is not UTF-8), maybe while earlier messages were being handled:
        # their answers may be cut off, never changed or reordered.
        assert answers == expected[:len(answers)], (answers, expected)
    else:
        assert answers == expected, (answers, expected)
    assert all(frame["channel"] in socket.subscribed_ever for frame in frames
               if frame["type"] == "publication")
    if close_code is not None:
        return f"{close_code}{'' if close_frame else ' no frame'}".replace("1009 no frame",
                                                                           "1009")
    return "subscribed" if any(answer[0] == "subscribed" for answer in answers) \
        else "answered"

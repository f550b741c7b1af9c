"""The wire protocol: frames, validation, encoding. Plain function calls, no event loop."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rtlink.codecs import CODECS, Codec
from rtlink.codes import ErrorCode
from rtlink.errors import FrameError, ProtocolError
from rtlink.presence import Member
from rtlink.protocol import (
    CLIENT_FRAMES,
    MAX_CHANNEL_LENGTH,
    MAX_DATA_DEPTH,
    MAX_KEY_LENGTH,
    PROTOCOL_VERSION,
    SERVER_FRAMES,
    Ack,
    Close,
    Error,
    Frame,
    History,
    HistoryPage,
    Ping,
    Pong,
    Position,
    Presence,
    PresenceDiff,
    PresenceResult,
    Publication,
    Publish,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    decode_client_message,
    decode_server_message,
    encode_frame,
    encode_frames,
    parse_client_frame,
    parse_server_frame,
    validate_channel,
    validate_data,
)

JSON = CODECS["json"]
MSGPACK = CODECS["msgpack"]
ALL_CODECS = [JSON, MSGPACK]
# Named "wire_codec", not "codec": tests/conftest.py has a "codec" fixture (a name).
codec_ids = pytest.mark.parametrize("wire_codec", ALL_CODECS, ids=lambda c: c.name)

MAX_SAFE = 2**53 - 1
CHANNEL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@/=+,#"

CLIENT_TYPES: set[type[Frame]] = {Subscribe, History, Unsubscribe, Publish, Presence, Ping, Pong}
SERVER_TYPES: set[type[Frame]] = {Welcome, Subscribed, Unsubscribed, HistoryPage, Ack,
                                  Publication, Error, Ping, Pong, Close, PresenceResult,
                                  PresenceDiff}

# --- strategies ------------------------------------------------------------------------

channels = st.text(alphabet=CHANNEL_CHARS, min_size=1, max_size=MAX_CHANNEL_LENGTH)
ids = st.integers(min_value=1, max_value=MAX_SAFE)
positions = st.builds(
    Position,
    epoch=st.text(min_size=1, max_size=64),
    offset=st.integers(min_value=0, max_value=MAX_SAFE),
)
# Integers every codec carries: msgpack's int64/uint64 range.
wire_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_scalars = (
    st.none()
    | st.booleans()
    | wire_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
# max_leaves also bounds the depth far below MAX_DATA_DEPTH.
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
keys = st.none() | st.text(min_size=1, max_size=MAX_KEY_LENGTH)
non_negative = st.integers(min_value=0, max_value=2**53) | st.floats(
    min_value=0, allow_nan=False, allow_infinity=False
)

welcome_frames = st.builds(
    Welcome,
    session=st.text(max_size=40),
    ping_interval=non_negative,
    pong_timeout=non_negative,
    max_message_size=st.integers(min_value=1, max_value=2**53),
    version=wire_ints,
)
subscribe_frames = st.builds(Subscribe, id=ids, channel=channels, since=st.none() | positions,
                             last=st.none() | ids, presence=st.booleans())
subscribed_frames = st.builds(
    Subscribed, id=st.none() | ids, channel=channels, recovered=st.booleans(),
    position=positions, since=st.none() | positions, server=st.booleans()
)
history_frames = st.builds(History, id=ids, channel=channels, since=st.none() | positions,
                           limit=st.integers(min_value=1, max_value=1000),
                           reverse=st.booleans())


@st.composite
def history_page_frames(draw: Any) -> HistoryPage:
    channel = draw(channels)
    items = draw(st.lists(st.tuples(json_values, positions), max_size=3))
    return HistoryPage(channel, tuple(Publication(channel, data, position)
                                      for data, position in items),
                       draw(positions), draw(st.booleans()), draw(st.none() | ids))

unsubscribed_frames = st.builds(Unsubscribed, channel=channels, code=wire_ints,
                                reason=st.text(max_size=40))
unsubscribe_frames = st.builds(Unsubscribe, id=ids, channel=channels)
publish_frames = st.builds(Publish, id=ids, channel=channels, data=json_values, key=keys)
ack_frames = st.builds(Ack, id=ids, position=st.none() | positions)
publication_frames = st.builds(Publication, channel=channels, data=json_values, position=positions)
error_frames = st.builds(
    Error,
    code=wire_ints,
    message=st.text(max_size=40),
    id=st.none() | ids,
    channel=st.none() | channels,
)
ping_frames = st.just(Ping())
pong_frames = st.just(Pong())
close_frames = st.builds(Close, code=wire_ints, reason=st.text(max_size=40))
members = st.builds(Member, client=st.text(max_size=20), user=st.none() | st.text(max_size=20),
                    info=json_values)
member_tuples = st.lists(members, max_size=4).map(tuple)
presence_frames = st.builds(Presence, id=ids, channel=channels)
presence_result_frames = st.builds(
    PresenceResult, id=ids, channel=channels, count=st.integers(min_value=0, max_value=MAX_SAFE),
    members=member_tuples)
presence_diff_frames = st.builds(
    PresenceDiff, channel=channels, count=st.integers(min_value=0, max_value=MAX_SAFE),
    joins=member_tuples, leaves=member_tuples, truncated=st.booleans())

client_frames = st.one_of(
    subscribe_frames, history_frames, unsubscribe_frames, publish_frames, presence_frames,
    ping_frames, pong_frames
)
server_frames = st.one_of(
    welcome_frames, subscribed_frames, unsubscribed_frames, history_page_frames(), ack_frames,
    publication_frames, error_frames, ping_frames, pong_frames, close_frames,
    presence_result_frames, presence_diff_frames,
)
any_frames = st.one_of(client_frames, server_frames)

def quick(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


# --- helpers ---------------------------------------------------------------------------


def decoders_for(frame: Frame) -> list[Any]:
    """The decoders a frame goes through: its direction's, or both for ping/pong."""
    result = []
    if type(frame) in CLIENT_TYPES:
        result.append(decode_client_message)
    if type(frame) in SERVER_TYPES:
        result.append(decode_server_message)
    assert result, f"{type(frame).__name__} is in neither direction"
    return result


def frame_error(parse: Any, raw: Any) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse(raw)
    return info.value


@pytest.mark.parametrize(("raw", "message"), [
    ({"type": "unsubscribed", "channel": "c", "code": "403"}, "code must be an integer"),
    ({"type": "unsubscribed", "channel": "c", "code": 403, "reason": 1},
     "reason must be a string"),
    ({"type": "unsubscribed", "code": 403}, "channel must be a string"),
    ({"type": "subscribed", "channel": "c", "recovered": True,
      "position": {"epoch": "e", "offset": 0}, "server": 1}, "server must be a boolean"),
])
def test_invalid_unsubscribed_and_server_fields_are_frame_errors(raw: Any,
                                                                  message: str) -> None:
    assert message in str(frame_error(parse_server_frame, raw))


def test_unsubscribed_without_reason_has_an_empty_one() -> None:
    frame = parse_server_frame({"type": "unsubscribed", "channel": "c", "code": 403})
    assert frame == Unsubscribed("c", 403, "")
    # A null reason is an absent one (protocol.md 5), in close frames too.
    frame = parse_server_frame({"type": "unsubscribed", "channel": "c", "code": 403,
                                "reason": None})
    assert frame == Unsubscribed("c", 403, "")
    assert parse_server_frame({"type": "close", "code": 4000, "reason": None}) == Close(4000)


def test_frame_tables_match_frame_classes() -> None:
    assert {cls.type for cls in CLIENT_TYPES} == set(CLIENT_FRAMES)
    assert {cls.type for cls in SERVER_TYPES} == set(SERVER_FRAMES)


def test_presence_frames_on_the_wire() -> None:
    member = Member("s1", "alice", {"name": "Alice"})
    assert Subscribe(1, "room", presence=True).to_wire() == {
        "type": "subscribe", "id": 1, "channel": "room", "presence": True}
    assert "presence" not in Subscribe(1, "room").to_wire()
    assert PresenceDiff("room", 3, (member,), ()).to_wire() == {
        "type": "presence_diff", "channel": "room", "count": 3,
        "joins": [{"client": "s1", "user": "alice", "info": {"name": "Alice"}}], "leaves": []}
    assert PresenceDiff("room", 9000, truncated=True).to_wire()["truncated"] is True
    wire = PresenceResult(7, "room", 1, (member,)).to_wire()
    assert parse_server_frame(wire) == PresenceResult(7, "room", 1, (member,))
    assert parse_client_frame({"type": "presence", "id": 7, "channel": "room"}) == Presence(
        7, "room")


@pytest.mark.parametrize("raw", [
    {"type": "subscribe", "id": 3, "channel": "room", "presence": "yes"},
    {"type": "presence", "id": 3, "channel": "bad channel"},
])
def test_invalid_presence_requests_are_refused_with_their_id(raw: dict[str, Any]) -> None:
    assert frame_error(parse_client_frame, raw).request_id == 3


@pytest.mark.parametrize("raw", [
    {"type": "presence_diff", "channel": "room", "count": -1, "joins": [], "leaves": []},
    {"type": "presence_diff", "channel": "room", "count": 1, "joins": [{"user": "a"}],
     "leaves": []},
    {"type": "presence", "id": 1, "channel": "room", "count": 1, "members": "all"},
])
def test_invalid_presence_answers(raw: dict[str, Any]) -> None:
    frame_error(parse_server_frame, raw)


# --- round trips -----------------------------------------------------------------------

# 1,000 frames, each encoded and decoded with both codecs: 1,000 examples per codec.
@quick(1000)
@given(any_frames)
@pytest.mark.slow
def test_every_frame_round_trips_through_both_codecs(frame: Frame) -> None:
    for codec in ALL_CODECS:
        encoded = encode_frame(codec, frame)
        for decode in decoders_for(frame):
            assert decode(codec, encoded) == [frame]
            # Stricter than ==, which says 1 == 1.0 == True: the decoded frame encodes to
            # the same bytes, so no value changed type on the way.
            (decoded,) = decode(codec, encoded)
            assert encode_frame(codec, decoded) == encoded


@quick(150)
@given(st.lists(client_frames, min_size=1, max_size=5))
@codec_ids
def test_client_batch_round_trips(wire_codec: Codec, batch: list[Frame]) -> None:
    message = encode_frames(wire_codec, batch)
    assert message == wire_codec.join(encode_frame(wire_codec, f) for f in batch)
    assert decode_client_message(wire_codec, message) == batch


@quick(150)
@given(st.lists(server_frames, min_size=1, max_size=5))
@codec_ids
def test_server_batch_round_trips(wire_codec: Codec, batch: list[Frame]) -> None:
    assert decode_server_message(wire_codec, encode_frames(wire_codec, batch)) == batch


@codec_ids
def test_examples_round_trip(wire_codec: Codec) -> None:
    pos = Position("2024:epoch:x", 41)
    frames: list[Frame] = [
        Welcome("sess", 25.0, 10, 1 << 20),
        Subscribe(1, "chat:lobby"),
        Subscribe(2, "chat:lobby", since=pos),
        Subscribed(2, "chat:lobby", True, pos),
        Unsubscribe(3, "a"),
        Publish(4, "a", {"text": "hi\n", "n": [1, 2.5, None, True]}, key="k-1"),
        Publish(5, "a", None),
        Ack(4, pos),
        Ack(3),
        Publication("a", [], Position("e", 0)),
        Error(ErrorCode.FORBIDDEN, "no", 4, "a"),
        Error(ErrorCode.BAD_REQUEST, "bad"),
        Ping(),
        Pong(),
        Close(4500, "bye"),
        Close(1000),
    ]
    for frame in frames:
        encoded = encode_frame(wire_codec, frame)
        for decode in decoders_for(frame):
            assert decode(wire_codec, encoded) == [frame]


def test_welcome_defaults_to_protocol_version() -> None:
    assert Welcome("s", 1, 1, 1).to_wire()["version"] == PROTOCOL_VERSION == 1


def test_optional_fields_are_omitted_on_the_wire() -> None:
    assert Subscribe(1, "a").to_wire() == {"type": "subscribe", "id": 1, "channel": "a"}
    assert Publish(1, "a", None).to_wire() == {
        "type": "publish", "id": 1, "channel": "a", "data": None
    }
    assert Ack(1).to_wire() == {"type": "ack", "id": 1}
    assert Error(400, "m").to_wire() == {"type": "error", "code": 400, "message": "m"}
    assert Close(1000).to_wire() == {"type": "close", "code": 1000, "reason": ""}


def test_explicit_null_optional_fields_are_accepted() -> None:
    assert parse_client_frame(
        {"type": "subscribe", "id": 1, "channel": "a", "since": None}
    ) == Subscribe(1, "a")
    assert parse_client_frame(
        {"type": "publish", "id": 1, "channel": "a", "data": None, "key": None}
    ) == Publish(1, "a", None)
    assert parse_server_frame({"type": "ack", "id": 1, "position": None}) == Ack(1)
    assert parse_server_frame({"type": "close", "code": 1000}) == Close(1000, "")


def test_unknown_fields_are_ignored() -> None:
    assert parse_client_frame({"type": "ping", "extra": [1]}) == Ping()
    assert parse_client_frame(
        {"type": "unsubscribe", "id": 9, "channel": "c", "future": {"x": 1}}
    ) == Unsubscribe(9, "c")


# --- fuzzing the parsers -----------------------------------------------------------------

ALL_TYPES = sorted(set(CLIENT_FRAMES) | set(SERVER_FRAMES))
FIELDS = ["id", "channel", "since", "data", "key", "position", "recovered", "code",
          "message", "reason", "session", "version", "ping_interval", "pong_timeout",
          "max_message_size", "epoch", "offset"]

# Anything a decoder might produce, and then some: bytes, NaN/inf, huge ints, tuples,
# lone surrogates, non-string keys.
weird_scalars = (
    json_scalars
    | st.integers()
    | st.floats()
    | st.binary(max_size=8)
    | st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4)
    | st.sampled_from([0, -1, 1, 2**53 - 1, 2**53, 2**64, 2**64 - 1, -(2**63) - 1, True, False,
                       "", "a", "a b", "news*", "x" * 256, 1.0, -0.0, math.nan, math.inf])
)
weird_values = st.recursive(
    weird_scalars,
    lambda children: st.lists(children, max_size=3)
    | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=6) | st.integers() | st.binary(max_size=3), children,
                      max_size=3),
    max_leaves=8,
)
positions_raw = st.fixed_dictionaries(
    {}, optional={"epoch": weird_scalars | st.text(min_size=1, max_size=70),
                  "offset": weird_scalars}
)
field_values = st.one_of(
    weird_values, ids, channels, positions_raw, positions.map(Position.to_wire)
)
raw_frames = st.builds(
    lambda type_, fields: {"type": type_, **fields} if type_ is not None else fields,
    st.none() | st.sampled_from(ALL_TYPES) | weird_scalars,
    st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=8),
)


@st.composite
def mutated_wire_frames(draw: st.DrawFn) -> dict[Any, Any]:
    """The wire form of a valid frame with a few fields replaced, removed or added."""
    wire: dict[Any, Any] = draw(any_frames).to_wire()
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(sorted({"type", *wire, *FIELDS})))
        if draw(st.booleans()):
            wire.pop(field, None)
        else:
            wire[field] = draw(field_values)
    return wire


def check_parse(parse: Any, raw: Any) -> Frame | None:
    try:
        frame = parse(raw)
    except ProtocolError as exc:  # FrameError included
        if isinstance(exc, FrameError):
            assert exc.error_code in set(ErrorCode)
            rid = exc.request_id
            assert rid is None or (type(rid) is int and 0 < rid <= MAX_SAFE)
        return None
    assert isinstance(frame, Frame)
    return frame


def assert_reencodable(frame: Frame) -> None:
    """A client frame the server accepted can be re-encoded for peers of every codec."""
    for codec in ALL_CODECS:
        encoded = encode_frame(codec, frame)
        (again,) = decode_client_message(codec, encoded)
        assert isinstance(again, Frame)
        assert encode_frame(codec, again) == encoded


@quick(1000)
@given(st.one_of(raw_frames, weird_values, mutated_wire_frames()))
@pytest.mark.slow
def test_fuzz_parsers_raise_only_protocol_errors(raw: Any) -> None:
    frame = check_parse(parse_client_frame, raw)
    event(f"client parser: {type(frame).__name__ if frame else 'error'}")
    if frame is not None:
        assert type(frame) in CLIENT_TYPES
        assert_reencodable(frame)
    frame = check_parse(parse_server_frame, raw)
    event(f"server parser: {type(frame).__name__ if frame else 'error'}")
    if frame is not None:
        assert type(frame) in SERVER_TYPES


@quick(500)
@given(
    st.sampled_from(["subscribe", "unsubscribe", "publish"]),
    ids,
    channels,
    weird_values,
    st.none() | weird_scalars,
)
@pytest.mark.slow
def test_fuzz_valid_requests_with_weird_data(
    type_: str, rid: int, channel: str, data: Any, key: Any
) -> None:
    # Mostly-valid requests reach the deep validation (data, key, since) instead of
    # stopping at the id or the channel; errors then carry the request id.
    raw = {"type": type_, "id": rid, "channel": channel, "data": data, "since": data}
    if key is not None:
        raw["key"] = key
    try:
        frame = parse_client_frame(raw)
    except FrameError as exc:
        event("rejected")
        assert exc.request_id == rid
        assert exc.error_code == ErrorCode.BAD_REQUEST
        return
    event(f"accepted {type(frame).__name__}")
    assert_reencodable(frame)


# --- specific errors -------------------------------------------------------------------


@pytest.mark.parametrize("parse", [parse_client_frame, parse_server_frame])
def test_unknown_type_is_400_with_request_id(parse: Any) -> None:
    exc = frame_error(parse, {"type": "frobnicate", "id": 17})
    assert exc.error_code == ErrorCode.BAD_REQUEST
    assert exc.error_code == 400
    assert exc.request_id == 17
    assert exc.code == 1007


@pytest.mark.parametrize("bad_id", [None, 0, -1, 2**53, True, 1.0, "1", [1]])
def test_unknown_type_with_invalid_id_has_no_request_id(bad_id: Any) -> None:
    raw = {"type": "frobnicate"} if bad_id is None else {"type": "frobnicate", "id": bad_id}
    exc = frame_error(parse_client_frame, raw)
    assert exc.error_code == 400
    assert exc.request_id is None


@pytest.mark.parametrize("frame_type", ["welcome", "subscribed", "ack", "publication", "error",
                                        "close"])  # not "history": both directions have one
def test_server_only_types_are_unknown_to_the_client_parser(frame_type: str) -> None:
    exc = frame_error(parse_client_frame, {"type": frame_type, "id": 5})
    assert exc.error_code == 400
    assert exc.request_id == 5
    assert "unknown frame type" in str(exc)


@pytest.mark.parametrize("frame_type", ["subscribe", "unsubscribe", "publish"])
def test_client_only_types_are_unknown_to_the_server_parser(frame_type: str) -> None:
    raw = {"type": frame_type, "id": 5, "channel": "a", "data": 1}
    assert type(parse_client_frame(raw)).type == frame_type
    exc = frame_error(parse_server_frame, raw)
    assert exc.error_code == 400
    assert "unknown frame type" in str(exc)


@pytest.mark.parametrize("frame_type", ["ping", "pong"])
def test_ping_and_pong_go_both_ways(frame_type: str) -> None:
    assert parse_client_frame({"type": frame_type}).type == frame_type
    assert parse_server_frame({"type": frame_type}).type == frame_type


@pytest.mark.parametrize(
    "channel", ["", "x" * (MAX_CHANNEL_LENGTH + 1), "a b", "news*", "news?", "é", "a\n", "a\x00",
                "chat:lobby\n"],
)
@pytest.mark.parametrize("frame_type", ["subscribe", "unsubscribe", "publish"])
def test_invalid_channel_is_422_with_request_id(frame_type: str, channel: str) -> None:
    exc = frame_error(
        parse_client_frame, {"type": frame_type, "id": 8, "channel": channel, "data": 1}
    )
    assert exc.error_code == ErrorCode.INVALID_CHANNEL
    assert exc.error_code == 422
    assert exc.request_id == 8


@pytest.mark.parametrize("channel", [None, 5, True, ["a"], {"a": 1}, b"news"])
def test_non_string_channel_is_400_with_request_id(channel: Any) -> None:
    raw = {"type": "subscribe", "id": 8}
    if channel is not None:
        raw["channel"] = channel
    exc = frame_error(parse_client_frame, raw)
    assert exc.error_code == ErrorCode.BAD_REQUEST
    assert exc.request_id == 8


def test_channel_limits() -> None:
    assert validate_channel("x" * MAX_CHANNEL_LENGTH) == "x" * MAX_CHANNEL_LENGTH
    assert validate_channel(CHANNEL_CHARS[:MAX_CHANNEL_LENGTH]) == CHANNEL_CHARS
    assert validate_channel("a") == "a"
    with pytest.raises(FrameError) as info:
        validate_channel("a b", request_id=3)
    assert (info.value.error_code, info.value.request_id) == (422, 3)


@given(channels)
@settings(max_examples=100, deadline=None)
def test_valid_channels_are_accepted(channel: str) -> None:
    assert validate_channel(channel) == channel


@pytest.mark.parametrize("bad_id", [True, False, None, 0, -5, 2**53, 1.0, 1.5, "1", [1], {}])
@pytest.mark.parametrize("frame_type", ["subscribe", "unsubscribe", "publish"])
def test_invalid_request_ids(frame_type: str, bad_id: Any) -> None:
    raw = {"type": frame_type, "channel": "a", "data": 1}
    if bad_id is not None:
        raw["id"] = bad_id
    exc = frame_error(parse_client_frame, raw)
    assert exc.error_code == 400
    assert exc.request_id is None


def test_request_id_bounds() -> None:
    for rid in (1, MAX_SAFE):
        frame = parse_client_frame({"type": "unsubscribe", "id": rid, "channel": "a"})
        assert frame == Unsubscribe(rid, "a")


def test_publish_without_data_is_400() -> None:
    exc = frame_error(parse_client_frame, {"type": "publish", "id": 3, "channel": "a"})
    assert (exc.error_code, exc.request_id) == (400, 3)


def nested_lists(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_maps(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "data",
    [b"bytes", bytearray(b"x"), [1, b"x"], {"a": {"b": b""}}, math.nan, math.inf, -math.inf,
     [math.nan], {"x": [1, math.inf]}, 2**64, -(2**63) - 1, [2**64], {1: "int key"},
     {"a": {b"k": 1}}, {(1,): 1}, {1, 2}, object(), Position("e", 1),
     nested_lists(MAX_DATA_DEPTH + 1), nested_maps(MAX_DATA_DEPTH + 1),
     {"a": nested_lists(MAX_DATA_DEPTH)}, "\ud800", ["ok", "a\udfffb"], {"\udc80": 1}],
    ids=lambda v: type(v).__name__,
)
def test_invalid_data_is_400_with_request_id(data: Any) -> None:
    raw = {"type": "publish", "id": 6, "channel": "c", "data": data}
    exc = frame_error(parse_client_frame, raw)
    assert (exc.error_code, exc.request_id) == (400, 6)
    with pytest.raises(FrameError):
        validate_data(data)


@pytest.mark.parametrize(
    "data",
    [None, True, 0, -(2**63), 2**64 - 1, 1.5, -0.0, 1e308, "", "text \n\u2028", "\U0001f600",
     [], {}, {"": None}, nested_lists(MAX_DATA_DEPTH), nested_maps(MAX_DATA_DEPTH),
     # Scalars inside the deepest allowed container are fine: depth counts containers.
     [nested_lists(MAX_DATA_DEPTH - 1), 1]],
    ids=repr,
)
def test_valid_data(data: Any) -> None:
    assert validate_data(data) is data
    frame = parse_client_frame({"type": "publish", "id": 1, "channel": "c", "data": data})
    assert frame == Publish(1, "c", data)


@codec_ids
def test_data_depth_limit_through_codecs(wire_codec: Codec) -> None:
    ok = Publish(1, "c", nested_lists(MAX_DATA_DEPTH))
    assert decode_client_message(wire_codec, encode_frame(wire_codec, ok)) == [ok]
    too_deep = Publish(2, "c", nested_lists(MAX_DATA_DEPTH + 1))
    (result,) = decode_client_message(wire_codec, encode_frame(wire_codec, too_deep))
    assert isinstance(result, FrameError)
    assert (result.error_code, result.request_id) == (400, 2)


@pytest.mark.parametrize(
    "message",
    [
        b'{"type":"publish","id":7,"channel":"c","data":1e400}',
        b'{"type":"publish","id":7,"channel":"c","data":[-1e999]}',
        b'{"type":"publish","id":7,"channel":"c","data":"\\ud800"}',
        b'{"type":"publish","id":7,"channel":"c","data":{"\\udc00x":1}}',
        b'{"type":"publish","id":7,"channel":"c","data":18446744073709551616}',
    ],
)
def test_json_data_that_no_codec_can_reencode_is_400(message: bytes) -> None:
    (result,) = decode_client_message(JSON, message)
    assert isinstance(result, FrameError)
    assert (result.error_code, result.request_id) == (400, 7)


@pytest.mark.parametrize(
    "data",
    [b"bin", msgpack.ExtType(5, b"x"), msgpack.Timestamp(1, 0), [msgpack.ExtType(1, b"")]],
    ids=["bin", "ext", "timestamp", "nested-ext"],
)
def test_msgpack_bin_and_ext_data_is_400(data: Any) -> None:
    message = msgpack.packb(
        {"type": "publish", "id": 7, "channel": "c", "data": data}, use_bin_type=True
    )
    (result,) = decode_client_message(MSGPACK, message)
    assert isinstance(result, FrameError)
    assert (result.error_code, result.request_id) == (400, 7)


@codec_ids
def test_absurd_nesting_makes_the_message_undecodable(wire_codec: Codec) -> None:
    # Beyond the decoders' own limits (~1000 levels) the message is a ProtocolError
    # (close 1007), not a per-frame error.
    if wire_codec is JSON:
        data = b"[" * 5000 + b"]" * 5000
        message = b'{"type":"publish","id":1,"channel":"c","data":' + data + b"}"
    else:
        head = msgpack.packb({"type": "publish", "id": 1, "channel": "c", "data": None})
        message = head[:-1] + b"\x91" * 4999 + b"\x90"  # replace the nil with the nest
    with pytest.raises(ProtocolError) as info:
        decode_client_message(wire_codec, message)
    assert not isinstance(info.value, FrameError)


def test_validate_data_accepts_tuples_which_encode_as_lists() -> None:
    # validate_data accepts tuples (Python callers may pass them), but no codec has a
    # tuple type: they are sent as arrays and arrive as lists.
    data = (1, ("a", None), {"t": (2.5,)})
    assert validate_data(data) is data
    for codec in ALL_CODECS:
        (frame,) = decode_client_message(codec, encode_frame(codec, Publish(1, "c", data)))
        assert frame == Publish(1, "c", [1, ["a", None], {"t": [2.5]}])
        assert frame != Publish(1, "c", data)


def test_validate_data_error_carries_request_id() -> None:
    with pytest.raises(FrameError) as info:
        validate_data(math.nan, request_id=12)
    assert (info.value.error_code, info.value.request_id) == (400, 12)


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_LENGTH + 1), 5, True, ["k"], b"k", "a\udfff"])
def test_invalid_publish_key(key: Any) -> None:
    raw = {"type": "publish", "id": 4, "channel": "c", "data": 1, "key": key}
    exc = frame_error(parse_client_frame, raw)
    assert (exc.error_code, exc.request_id) == (400, 4)


def test_publish_key_limits() -> None:
    raw = {"type": "publish", "id": 4, "channel": "c", "data": 1, "key": "k" * MAX_KEY_LENGTH}
    assert parse_client_frame(raw) == Publish(4, "c", 1, "k" * MAX_KEY_LENGTH)


@pytest.mark.parametrize(
    "since",
    [5, "e:1", [], {"epoch": "e"}, {"offset": 1}, {"epoch": "", "offset": 1},
     {"epoch": "e" * 65, "offset": 1}, {"epoch": 1, "offset": 1}, {"epoch": "e", "offset": -1},
     {"epoch": "e", "offset": 2**53}, {"epoch": "e", "offset": True},
     {"epoch": "e", "offset": 1.0}, {"epoch": "\ud800", "offset": 1}],
    ids=repr,
)
def test_invalid_since_is_400_with_request_id(since: Any) -> None:
    exc = frame_error(parse_client_frame, {"type": "subscribe", "id": 9, "channel": "c",
                                           "since": since})
    assert (exc.error_code, exc.request_id) == (400, 9)


@pytest.mark.parametrize("since", [{}, {"presence": True}])
def test_a_since_map_without_a_position_is_none(since: Any) -> None:
    """As a cursor entry (protocol.md 4.2): what the JS client's tab sharing passes on."""
    frame = parse_client_frame({"type": "subscribe", "id": 9, "channel": "c", "since": since})
    assert frame == Subscribe(9, "c")


@pytest.mark.parametrize("raw", [None, 1, "ping", ["type", "ping"], b"\x00", 1.5, True])
@pytest.mark.parametrize("parse", [parse_client_frame, parse_server_frame])
def test_non_map_is_a_plain_protocol_error(parse: Any, raw: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert not isinstance(info.value, FrameError)
    assert info.value.code == 1007


@pytest.mark.parametrize("raw", [{}, {"id": 1}, {"type": None}, {"type": 1}, {"type": b"ping"},
                                 {"type": ["ping"]}, {"type": True}])
@pytest.mark.parametrize("parse", [parse_client_frame, parse_server_frame])
def test_map_without_string_type_is_a_plain_protocol_error(parse: Any, raw: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert not isinstance(info.value, FrameError)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "welcome", "session": "s", "ping_interval": 1, "pong_timeout": 1,
         "max_message_size": 0, "version": 1},
        {"type": "welcome", "session": "s", "ping_interval": 1, "pong_timeout": 1,
         "max_message_size": 10, "version": "1"},
        {"type": "welcome", "session": "s", "ping_interval": -1, "pong_timeout": 1,
         "max_message_size": 10, "version": 1},
        {"type": "welcome", "session": "s", "ping_interval": math.nan, "pong_timeout": 1,
         "max_message_size": 10, "version": 1},
        {"type": "welcome", "session": "s", "ping_interval": 1, "pong_timeout": math.inf,
         "max_message_size": 10, "version": 1},
        {"type": "welcome", "session": "s", "ping_interval": True, "pong_timeout": 1,
         "max_message_size": 10, "version": 1},
        {"type": "welcome", "session": None, "ping_interval": 1, "pong_timeout": 1,
         "max_message_size": 10, "version": 1},
        {"type": "subscribed", "id": 1, "channel": "c", "recovered": 1,
         "position": {"epoch": "e", "offset": 0}},
        {"type": "subscribed", "id": 1, "channel": "c", "recovered": True},
        {"type": "ack"},
        {"type": "publication", "channel": "c", "position": {"epoch": "e", "offset": 0}},
        {"type": "publication", "channel": "c", "data": 1},
        {"type": "error", "message": "m"},
        {"type": "error", "code": 400},
        {"type": "error", "code": 400, "message": "m", "channel": "a b"},
        {"type": "close", "code": "1000"},
        {"type": "close", "code": 1000, "reason": 1},
    ],
    ids=lambda raw: raw["type"],
)
def test_invalid_server_frames(raw: dict[str, Any]) -> None:
    exc = frame_error(parse_server_frame, raw)
    assert exc.error_code in (400, 422)


def test_welcome_decoded_from_json_infinity_literal_is_rejected() -> None:
    # 1e999 is valid JSON and decodes to float("inf"), which JSON cannot encode again.
    message = (b'{"type":"welcome","version":1,"session":"s","ping_interval":1e999,'
               b'"pong_timeout":1,"max_message_size":10}')
    (result,) = decode_server_message(JSON, message)
    assert isinstance(result, FrameError)


# --- decode_*_message ------------------------------------------------------------------


@codec_ids
def test_decode_client_message_keeps_valid_frames_of_a_batch(wire_codec: Codec) -> None:
    raws: list[dict[str, Any]] = [
        {"type": "subscribe", "id": 1, "channel": "ok"},
        {"type": "subscribe", "id": 2, "channel": "not ok"},
        {"type": "ping"},
        {"type": "publish", "id": 3, "channel": "c"},
        {"type": "welcome", "id": 4},
        {"type": "publish", "id": 5, "channel": "c", "data": {"x": [1]}},
    ]
    message = wire_codec.join(wire_codec.encode(raw) for raw in raws)
    result = decode_client_message(wire_codec, message)
    assert len(result) == 6
    assert result[0] == Subscribe(1, "ok")
    assert isinstance(result[1], FrameError)
    assert (result[1].error_code, result[1].request_id) == (422, 2)
    assert result[2] == Ping()
    assert isinstance(result[3], FrameError)
    assert (result[3].error_code, result[3].request_id) == (400, 3)
    assert isinstance(result[4], FrameError)
    assert (result[4].error_code, result[4].request_id) == (400, 4)
    assert result[5] == Publish(5, "c", {"x": [1]})


@codec_ids
def test_decode_server_message_keeps_valid_frames_of_a_batch(wire_codec: Codec) -> None:
    raws: list[dict[str, Any]] = [{"type": "pong"}, {"type": "ack"}, {"type": "ack", "id": 7}]
    result = decode_server_message(wire_codec, wire_codec.join(map(wire_codec.encode, raws)))
    assert result[0] == Pong()
    assert isinstance(result[1], FrameError)
    assert result[2] == Ack(7)


@codec_ids
@pytest.mark.parametrize("decode", [decode_client_message, decode_server_message])
def test_a_non_frame_in_a_batch_fails_the_whole_message(wire_codec: Codec, decode: Any) -> None:
    message = wire_codec.join([wire_codec.encode({"type": "ping"}), wire_codec.encode([1, 2])])  # type: ignore[arg-type]
    with pytest.raises(ProtocolError) as info:
        decode(wire_codec, message)
    assert not isinstance(info.value, FrameError)


@codec_ids
@pytest.mark.parametrize("decode", [decode_client_message, decode_server_message])
def test_undecodable_message_is_a_protocol_error(wire_codec: Codec, decode: Any) -> None:
    for message in (b"", b"\xc1{"):
        with pytest.raises(ProtocolError) as info:
            decode(wire_codec, message)
        assert not isinstance(info.value, FrameError)

"""Codecs: registry, subprotocols, batching, and robustness against hostile input.

The central promise tested here: ``codec.decode`` either returns a list or raises
:class:`rtlink.errors.ProtocolError` — never any other exception — whatever bytes a
peer sends.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtlink.codecs import (
    CODECS,
    SUBPROTOCOLS,
    Codec,
    JsonCodec,
    MsgpackCodec,
    codec_for_subprotocol,
    get_codec,
)
from rtlink.errors import ProtocolError

JSON = CODECS["json"]
MSGPACK = CODECS["msgpack"]
ALL_CODECS = [JSON, MSGPACK]
codec_ids = pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)

FUZZ = settings(
    max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- values both codecs carry exactly ------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
frames = st.dictionaries(st.text(max_size=8), values, max_size=4)


def check_decode(codec: Codec, message: bytes | str) -> list[Any] | None:
    """Decode ``message``; only a list or a ProtocolError is an acceptable outcome."""
    try:
        result = codec.decode(message)
    except ProtocolError:
        return None
    assert isinstance(result, list)
    assert result, "decode must not return an empty list (empty messages are errors)"
    return result


# --- registry and subprotocols -------------------------------------------------------


def test_registry_has_json_and_msgpack() -> None:
    assert set(CODECS) == {"json", "msgpack"}
    assert isinstance(CODECS["json"], JsonCodec)
    assert isinstance(CODECS["msgpack"], MsgpackCodec)


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_get_codec_by_name(name: str) -> None:
    codec = get_codec(name)
    assert codec is CODECS[name]
    assert codec.name == name


def test_get_codec_passes_codec_through() -> None:
    assert get_codec(JSON) is JSON
    own = MsgpackCodec()
    assert get_codec(own) is own


@pytest.mark.parametrize("name", ["xml", "JSON", "", "rtlink.v1.json", "msgpack "])
def test_get_codec_unknown_name(name: str) -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        get_codec(name)


def test_codec_attributes() -> None:
    assert (JSON.binary, JSON.separator, JSON.content_type) == (
        False, b"\n", "application/json"
    )
    assert (MSGPACK.binary, MSGPACK.separator, MSGPACK.content_type) == (
        True, b"", "application/msgpack"
    )
    assert repr(JSON) == "<JsonCodec json>"


def test_subprotocols() -> None:
    assert JSON.subprotocol == "rtlink.v1.json"
    assert MSGPACK.subprotocol == "rtlink.v1.msgpack"
    # Preferred first: JSON.
    assert SUBPROTOCOLS == ("rtlink.v1.json", "rtlink.v1.msgpack")


@pytest.mark.parametrize(
    ("subprotocol", "name"),
    [("rtlink.v1.json", "json"), ("rtlink.v1.msgpack", "msgpack"), (None, "json"), ("", "json")],
)
def test_codec_for_subprotocol(subprotocol: str | None, name: str) -> None:
    assert codec_for_subprotocol(subprotocol) is CODECS[name]


@pytest.mark.parametrize(
    "subprotocol", ["rtlink.v2.json", "rtlink.v1.xml", "json", "msgpack", "RTLINK.V1.JSON", "x"]
)
def test_codec_for_unknown_subprotocol(subprotocol: str) -> None:
    with pytest.raises(ValueError, match="unsupported subprotocol"):
        codec_for_subprotocol(subprotocol)


# --- encoding and batching -----------------------------------------------------------

SAMPLE_FRAMES: list[dict[str, Any]] = [
    {"type": "ping"},
    {"type": "publish", "id": 1, "channel": "news", "data": {"text": "a\nb", "n": [1, 2.5, None]}},
    {"type": "ack", "id": 2**53 - 1, "position": {"epoch": "e:1", "offset": 0}},
    {"type": "publication", "channel": "x", "data": "line1\nline2\u2028\u2029\r\n", "position": {}},
    {"big": 2**64 - 1, "small": -(2**63), "f": -0.0, "t": True, "s": ""},
]


@codec_ids
def test_single_frame_round_trip(codec: Codec) -> None:
    for frame in SAMPLE_FRAMES:
        encoded = codec.encode(frame)
        assert isinstance(encoded, bytes)
        assert codec.decode(encoded) == [frame]


@codec_ids
def test_batch_of_encoded_frames_decodes_to_the_list(codec: Codec) -> None:
    encoded = [codec.encode(frame) for frame in SAMPLE_FRAMES]
    message = codec.join(encoded)
    assert message == codec.separator.join(encoded)
    assert codec.decode(message) == SAMPLE_FRAMES


@codec_ids
def test_batch_may_repeat_one_preencoded_frame(codec: Codec) -> None:
    # A pre-encoded frame is written to many connections and batched without re-encoding.
    one = codec.encode({"type": "publication", "data": [1, "two"]})
    assert codec.decode(codec.join([one] * 5)) == [{"type": "publication", "data": [1, "two"]}] * 5


@codec_ids
def test_decode_accepts_bytearray(codec: Codec) -> None:
    message = codec.join(codec.encode(f) for f in SAMPLE_FRAMES[:2])
    assert codec.decode(bytearray(message)) == SAMPLE_FRAMES[:2]  # type: ignore[arg-type]


def test_json_decode_accepts_text() -> None:
    message = JSON.join(JSON.encode(f) for f in SAMPLE_FRAMES)
    assert JSON.decode(message.decode()) == SAMPLE_FRAMES


def test_json_decode_ignores_blank_lines_and_crlf() -> None:
    assert JSON.decode(b'\n{"a":1}\r\n\n  \n{"b":2}\n') == [{"a": 1}, {"b": 2}]


@settings(max_examples=100, deadline=None)
@given(st.lists(frames, min_size=1, max_size=4))
@codec_ids
@pytest.mark.slow
def test_batch_round_trip_property(codec: Codec, batch: list[dict[str, Any]]) -> None:
    message = codec.join(codec.encode(frame) for frame in batch)
    assert codec.decode(message) == batch


# --- JSON specifics ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["a\nb", "\n", "\r\n", "\u2028", "\u2029", "x\u2028y\u2029z", "\x85", "\x00\x1f"]
)
def test_json_never_emits_a_raw_newline(text: str) -> None:
    frame = {"data": text, text: [text, {"k": text}]}
    encoded = JSON.encode(frame)
    assert b"\n" not in encoded
    assert b"\r" not in encoded
    assert JSON.decode(encoded) == [frame]
    # And the frame survives being batched between others.
    batch = JSON.join([JSON.encode({"a": 1}), encoded, JSON.encode({"b": 2})])
    assert JSON.decode(batch) == [{"a": 1}, frame, {"b": 2}]


def test_json_is_compact_utf8() -> None:
    assert JSON.encode({"a": [1, 2], "é": "€"}) == '{"a":[1,2],"é":"€"}'.encode()


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_json_encoding_has_no_newline_property(text: str) -> None:
    frame = {"data": text, text: [text]}
    encoded = JSON.encode(frame)
    assert b"\n" not in encoded
    assert JSON.decode(encoded) == [frame]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_encode_refuses_nan_and_infinity(bad: float) -> None:
    with pytest.raises(ValueError):
        JSON.encode({"data": bad})
    with pytest.raises(ValueError):
        JSON.encode({"data": [1, {"deep": bad}]})


@pytest.mark.parametrize(
    "message",
    [b"NaN", b"Infinity", b"-Infinity", b'{"x":NaN}', b"[1,Infinity]", b'{"a":1}\n[-Infinity]'],
)
def test_json_decode_refuses_nan_and_infinity_tokens(message: bytes) -> None:
    with pytest.raises(ProtocolError, match="not valid JSON") as info:
        JSON.decode(message)
    assert info.value.code == 1007


@pytest.mark.parametrize(
    "message",
    [b"{", b'{"a":1', b"[1,]", b"{'a':1}", b'{"a":1}{"b":2}', b"\xff\xfe", b"\xc3", b"nul",
     b'"\\x"', b'{"a":1}\n{', "\x85{}", b"9" * 5000],
)
def test_json_decode_invalid(message: bytes | str) -> None:
    with pytest.raises(ProtocolError):
        JSON.decode(message)


@pytest.mark.parametrize("opener", ["[", "{\"a\":", "[{\"a\":"])
def test_json_deep_nesting_is_a_protocol_error_not_recursion_error(opener: str) -> None:
    for message in (opener * 100_000, (opener * 100_000).encode()):
        with pytest.raises(ProtocolError) as info:
            JSON.decode(message)
        assert not isinstance(info.value, RecursionError)


def test_json_integer_of_more_than_4300_digits_is_a_protocol_error() -> None:
    # docs/protocol.md 3.4: Python reads integers of at most 4300 digits.
    assert JSON.decode('{"type":"ping","n":' + "9" * 4300 + "}")[0]["n"] == 10**4300 - 1
    with pytest.raises(ProtocolError, match="4300 digits"):
        JSON.decode('{"type":"ping","n":' + "9" * 4301 + "}")


def test_json_moderate_nesting_is_fine() -> None:
    message = "[" * 500 + "]" * 500
    (value,) = JSON.decode(message)
    for _ in range(499):
        value = value[0]
    assert value == []


# --- msgpack specifics ---------------------------------------------------------------


@pytest.mark.parametrize("message", ["", "{}", "\x81\xa1a\x01"])
def test_msgpack_refuses_text(message: str) -> None:
    with pytest.raises(ProtocolError, match="binary"):
        MSGPACK.decode(message)


def test_msgpack_truncated_message() -> None:
    full = MSGPACK.encode({"type": "publish", "id": 7, "channel": "c", "data": [1, "two", 3.0]})
    for cut in range(len(full)):
        with pytest.raises(ProtocolError):
            MSGPACK.decode(full[:cut])
    assert MSGPACK.decode(full) == [msgpack.unpackb(full)]


def test_msgpack_truncated_last_frame_of_batch() -> None:
    # Regression: cutting the second frame right after a container header or a complete
    # item used to decode silently to the first frame alone (Unpacker.tell() counts the
    # bytes of a partly read value).
    first = MSGPACK.encode({"type": "ping"})
    second = MSGPACK.encode({"type": "publish", "id": 1, "channel": "a", "data": [1, 2, 3]})
    for cut in range(1, len(second)):
        with pytest.raises(ProtocolError, match="truncated"):
            MSGPACK.decode(first + second[:cut])
    assert MSGPACK.decode(first + second) == [{"type": "ping"}, msgpack.unpackb(second)]


@pytest.mark.parametrize(
    "message",
    [b"\xc1", b"\x91\xc1", b"\xa3ab", b"\x81\x01\x02", b"\x81\x90\x01", b"\xa2\xff\xfe",
     b"\xd9\x05abc", b"\xdd\xff\xff\xff\xff", b"\xc0\xc1"],
    ids=["never-used", "bad-item", "short-str", "int-key", "list-key", "bad-utf8",
         "str8-short", "huge-array-header", "trailing-garbage"],
)
def test_msgpack_invalid(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        MSGPACK.decode(message)


def test_msgpack_deep_nesting_is_a_protocol_error() -> None:
    # 100,000 nested one-element arrays around a nil: complete, but absurdly deep.
    with pytest.raises(ProtocolError):
        MSGPACK.decode(b"\x91" * 100_000 + b"\xc0")


@codec_ids
@pytest.mark.parametrize("empty", [b"", bytearray()])
def test_empty_message(codec: Codec, empty: bytes) -> None:
    with pytest.raises(ProtocolError, match="empty"):
        codec.decode(empty)


@pytest.mark.parametrize("blank", ["", "\n", "\n\n", "  \r\n \t", b"\n \n"])
def test_json_blank_message_is_empty(blank: bytes | str) -> None:
    with pytest.raises(ProtocolError, match="empty"):
        JSON.decode(blank)


# --- fuzzing: decode returns a list or raises ProtocolError, nothing else -------------
# Per codec: JSON runs 1200 (bytes) + 1200 (text, each also as UTF-8 bytes) + 1200
# (JSON-ish text) examples, msgpack 1200 (bytes) + 1200 (mutated valid encodings).


@FUZZ
@given(st.binary(max_size=256))
@codec_ids
def test_fuzz_random_bytes(codec: Codec, message: bytes) -> None:
    check_decode(codec, message)


@FUZZ
@given(st.text(max_size=256))
def test_fuzz_json_random_text(message: str) -> None:
    check_decode(JSON, message)
    check_decode(JSON, message.encode("utf-8", "surrogatepass"))


JSONISH = st.text(alphabet='[]{}":,0123456789-+.eE\\/ntrufalsINfiy \n\r\t\u2028', max_size=120)


@FUZZ
@given(JSONISH)
def test_fuzz_json_grammar_soup(message: str) -> None:
    check_decode(JSON, message)


#: Valid msgpack messages (single frames and batches) to mutate and truncate.
MSGPACK_CORPUS = [MSGPACK.encode(f) for f in SAMPLE_FRAMES] + [
    MSGPACK.join(MSGPACK.encode(f) for f in SAMPLE_FRAMES),
    MSGPACK.encode({"k": [[[[{"deep": [b"bin", 1.5, None]}]]]], "m": {"x": {"y": {}}}}),
    MSGPACK.encode({"s": "x" * 300, "l": list(range(20)), "i": [-1, -33, 2**40, -(2**40)]}),
]


@st.composite
def mutated_msgpack(draw: st.DrawFn) -> bytes:
    """A valid msgpack message with a few bytes overwritten, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(MSGPACK_CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        byte = draw(st.integers(0, 255))
        if op == "set" and pos < len(data):
            data[pos] = byte
        elif op == "insert":
            data.insert(pos, byte)
        elif pos < len(data):
            del data[pos]
    return bytes(data)


@FUZZ
@given(mutated_msgpack())
@pytest.mark.slow
def test_fuzz_msgpack_mutations(message: bytes) -> None:
    check_decode(MSGPACK, message)


def test_msgpack_every_truncation_of_the_corpus_fails() -> None:
    for encoded in [MSGPACK.encode(f) for f in SAMPLE_FRAMES] + MSGPACK_CORPUS[-2:]:
        for cut in range(len(encoded)):
            with pytest.raises(ProtocolError):
                MSGPACK.decode(encoded[:cut])


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(frames, min_size=1, max_size=3), st.data())
@pytest.mark.slow
def test_msgpack_truncated_batch_never_decodes(batch: list[dict[str, Any]], data: Any) -> None:
    encoded = [MSGPACK.encode(f) for f in batch]
    message = MSGPACK.join(encoded)
    # Cutting exactly between two frames leaves a valid, shorter batch: skip those cuts.
    boundaries = {sum(len(e) for e in encoded[:i]) for i in range(1, len(encoded))}
    cut = data.draw(
        st.integers(0, len(message) - 1).filter(lambda c: c not in boundaries), label="cut"
    )
    with pytest.raises(ProtocolError):
        MSGPACK.decode(message[:cut])


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_take_batch_respects_the_limit_and_takes_at_least_one(name: str) -> None:
    codec = get_codec(name)
    frames = [codec.encode({"type": "ping", "n": n}) for n in range(10)]
    size = len(frames[0])
    queue = list(frames)
    limit = 3 * size + 2 * len(codec.separator)  # room for exactly three frames
    message, taken = codec.take_batch(queue, limit)
    assert codec.decode(message) == [{"type": "ping", "n": n} for n in range(3)]
    assert taken == 3 * size and len(message) <= limit and queue == frames[3:]
    message, taken = codec.take_batch([b"x" * 100], 10)  # oversized: still one
    assert (message, taken) == (b"x" * 100, 100)


@given(channel=st.from_regex(r"[A-Za-z0-9_\-.:@/=+,#]{1,40}", fullmatch=True),
       data=st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
                         | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                         lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(), inner, max_size=4), max_leaves=10),
       epoch=st.from_regex(r"[0-9a-f]{8}", fullmatch=True)  # the backends' epochs
       | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16),
       offset=st.integers(0, 2**53))
def test_a_publication_is_encoded_as_its_wire_form_is(channel: str, data: Any, epoch: str,
                                                      offset: int) -> None:
    for codec in (get_codec("json"), get_codec("msgpack")):
        assert codec.encode_publication(channel, data, epoch, offset) == codec.encode(
            {"type": "publication", "channel": channel, "data": data,
             "position": {"epoch": epoch, "offset": offset}})

"""Fuzzing support: hypothesis strategies for rtlink frames and messages, and the tally.

The strategies build what a hostile or broken peer could send, starting from the real
frame shapes of docs/protocol.md (section 5):

* ``client_frames`` / ``server_frames``: valid frames, for round trips;
* ``client_message(codec)`` / ``server_message(codec)``: transport messages of one codec made
  of valid frames, near-valid frames (one field of the wrong type, a huge integer,
  NaN, a lone surrogate, deep nesting, a missing field, another ``type``...), values
  that are not frames, and byte-level damage (truncation, inserted or flipped bytes),
  or plain random bytes and text;
* :func:`cursor_text`: ``subs`` / ``Last-Event-ID`` cursors, valid or damaged;
* :func:`tokens`: JWTs for :class:`rtlink.TokenAuth`, signed, with hostile claims.

Every fuzz test counts the inputs it ran with a :class:`Tally`, which checks the count
reached the test's target and records it; the counts and their total are printed at
the end of the pytest run ("fuzzing: N generated inputs").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from rtlink.codecs import Codec
from rtlink.presence import Member
from rtlink.protocol import (
    MAX_CHANNEL_LENGTH,
    MAX_DATA_DEPTH,
    MAX_EPOCH_LENGTH,
    MAX_KEY_LENGTH,
    MAX_SAFE_INTEGER,
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
)

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1

# --- reporting ------------------------------------------------------------------------

#: Inputs run by each fuzz test of this pytest run, by test name.
FUZZ_COUNTS: dict[str, int] = {}


def fuzz_settings(examples: int) -> settings:
    """Settings of a fuzz test that must run ``examples`` inputs.

    No example database (CI draws new inputs on every run, nothing is replayed from
    earlier runs) and no per-example deadline (the machine may be busy).
    """
    return settings(max_examples=examples, database=None, deadline=None)


#: Multiply every fuzz test's number of inputs by RTLINK_FUZZ_FACTOR for a deeper run
#: (e.g. 10 nightly); CI runs the default.
FUZZ_FACTOR = float(os.environ.get("RTLINK_FUZZ_FACTOR", "1"))


class Tally:
    """Counts the inputs a fuzz test ran; :meth:`check` asserts the target was reached.

    ``target`` is the test's number of inputs before :data:`FUZZ_FACTOR`.
    """

    def __init__(self, target: int) -> None:
        self.target = max(1, round(target * FUZZ_FACTOR))
        self.count = 0

    def __call__(self) -> None:
        self.count += 1

    def check(self, name: str, record_property: Callable[[str, object], None]) -> None:
        """Record the count (junit property ``fuzz_inputs`` and the run's summary) and
        fail if fewer than the target inputs ran."""
        FUZZ_COUNTS[name] = self.count
        record_property("fuzz_inputs", self.count)
        assert self.count >= self.target, f"{name}: ran {self.count} of {self.target} inputs"


class _FuzzSummary:
    """pytest plugin: prints the number of fuzzed inputs at the end of the run."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not FUZZ_COUNTS:
            return
        total = sum(FUZZ_COUNTS.values())
        terminalreporter.write_sep("-", f"fuzzing: {total} generated inputs")
        for name, count in FUZZ_COUNTS.items():
            terminalreporter.write_line(f"{count:7d}  {name}")


def register_summary(config: pytest.Config) -> None:
    """Make sure the run's summary is printed (once, whichever fuzz module runs)."""
    if not config.pluginmanager.has_plugin("rtlink-fuzz-summary"):
        config.pluginmanager.register(_FuzzSummary(), "rtlink-fuzz-summary")


# --- valid values ---------------------------------------------------------------------

#: Unicode text that every codec can carry (no lone surrogates).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)


def _stretch(text: str, length: int) -> str:
    return (text * length)[:length]


def long_texts(alphabet: st.SearchStrategy[str], low: int, high: int) -> st.SearchStrategy[str]:
    """Text of ``low`` to ``high`` characters, made by repeating a short random text:
    drawing hundreds of characters one by one would make every example slow."""
    return st.builds(_stretch, st.text(alphabet, min_size=1, max_size=4), st.integers(low, high))


_unicode = st.characters(exclude_categories=["Cs"])
_CHANNEL_ALPHABET = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@/=+,#"
)
channels = st.one_of(
    st.sampled_from(["chat:lobby", "news", "a", "news:sport", "zz", "open/x=1+2,#3"]),
    st.text(_CHANNEL_ALPHABET, min_size=1, max_size=12),
    long_texts(st.sampled_from(_CHANNEL_ALPHABET), MAX_CHANNEL_LENGTH - 5, MAX_CHANNEL_LENGTH),
)
request_ids = st.one_of(st.integers(1, 100), st.integers(1, MAX_SAFE_INTEGER))
epochs = st.one_of(
    st.sampled_from(["5a266a94", "e"]),
    st.text(_unicode, min_size=1, max_size=10),
    long_texts(_unicode, MAX_EPOCH_LENGTH - 3, MAX_EPOCH_LENGTH),
)
offsets = st.one_of(st.integers(0, 10), st.integers(0, MAX_SAFE_INTEGER))
positions = st.builds(Position, epochs, offsets)
keys = st.one_of(
    st.text(_unicode, min_size=1, max_size=12),
    long_texts(_unicode, MAX_KEY_LENGTH - 3, MAX_KEY_LENGTH),
)
#: Integers both codecs carry (msgpack's range); the wire allows any in frames' codes.
codec_ints = st.integers(INT64_MIN, UINT64_MAX)

def _nested(depth: int, kind: str) -> Any:
    value: Any = depth
    for _ in range(depth):
        value = [value] if kind == "array" else {"k": value}
    return value


# Nesting is spelled out two levels deep rather than with st.recursive, which costs
# about twice as much per example; deeper values come from _nested.
_data_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN, UINT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
_data_level1 = _data_scalars | st.lists(_data_scalars, max_size=3) \
    | st.dictionaries(texts, _data_scalars, max_size=3)

#: Publication data: any JSON value both codecs carry identically (3.4), up to the
#: deepest nesting allowed (64).
data_values = st.one_of(
    _data_scalars,
    st.lists(_data_level1, max_size=3),
    st.dictionaries(texts, _data_level1, max_size=3),
    st.builds(_nested, st.integers(1, MAX_DATA_DEPTH), st.sampled_from(["array", "map"])),
)

#: Presence members (protocol.md 5.14): any client and user text, any data as info.
members = st.builds(Member, texts, st.none() | texts, st.none() | data_values)

client_frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Subscribe, request_ids, channels, st.none() | positions,
              st.none() | request_ids, st.booleans()),
    st.builds(History, request_ids, channels, st.none() | positions, st.integers(1, 1000),
              st.booleans()),
    st.builds(Presence, request_ids, channels),
    st.builds(Unsubscribe, request_ids, channels),
    st.builds(Publish, request_ids, channels, data_values, st.none() | keys),
    st.just(Ping()),
    st.just(Pong()),
)

_numbers = st.one_of(
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.integers(0, UINT64_MAX),
)

server_frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Welcome, texts, _numbers, _numbers, st.integers(1, UINT64_MAX), codec_ints),
    st.builds(Subscribed, st.none() | request_ids, channels, st.booleans(), positions,
              st.none() | positions, st.booleans()),
    st.builds(Unsubscribed, channels, codec_ints, texts),
    st.builds(PresenceResult, request_ids, channels, st.integers(0, MAX_SAFE_INTEGER),
              st.lists(members, max_size=3).map(tuple)),
    st.builds(PresenceDiff, channels, st.integers(0, MAX_SAFE_INTEGER),
              st.lists(members, max_size=2).map(tuple), st.lists(members, max_size=2).map(tuple),
              st.booleans()),
    st.builds(lambda channel, items, position, recovered, rid: HistoryPage(
        channel, tuple(Publication(channel, data, at) for data, at in items), position,
        recovered, rid),
        channels, st.lists(st.tuples(data_values, positions), max_size=3), positions,
        st.booleans(), st.none() | request_ids),
    st.builds(Ack, request_ids, st.none() | positions),
    st.builds(Publication, channels, data_values, positions),
    st.builds(Error, codec_ints, texts, st.none() | request_ids, st.none() | channels),
    st.just(Ping()),
    st.just(Pong()),
    st.builds(Close, codec_ints, texts),
)

# --- hostile values -------------------------------------------------------------------


class Deep:
    """A value nested ``depth`` levels deep (arrays or maps), encoded without recursion."""

    def __init__(self, depth: int, kind: str) -> None:
        self.depth = depth
        self.kind = kind

    def __repr__(self) -> str:
        return f"Deep({self.depth}, {self.kind!r})"


class RawJson:
    """A JSON literal written as is (numbers no Python value prints, ``NaN``...)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


_INTEGER_EDGES = [
    0, -1, 1, 2, MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, 2**63 - 1, 2**63, UINT64_MAX,
    UINT64_MAX + 1, INT64_MIN, INT64_MIN - 1, 10**100, -(10**100), 10**400,
]
_FLOAT_EDGES = [
    math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, 1.5, 1e308, 5e-324, -1.0, 2.0**53,
]
_STRING_EDGES = [
    "", " ", "\ud800", "\udfff", "a\udc80b", "\x00", "\n", "\r\n", "\u2028", "bad channel",
    "a*", "a?", "ü", "chat:lobby", "x" * (MAX_CHANNEL_LENGTH + 1), "k" * (MAX_KEY_LENGTH + 1),
    "e" * (MAX_EPOCH_LENGTH + 1), "publish", "subscribe", "ping", "close", "welcome",
    "type", "id", "__proto__", "constructor",
]
_JSON_LITERALS = [
    "1e400", "-1e400", "1" * 5000, "-" + "9" * 4301, "NaN", "Infinity", "-Infinity",
    "1.0e-400", "123456789012345678901234567890", "-0", "1E+2", "0.1e1", "9007199254740993",
    "18446744073709551616", "-9223372036854775809",
]

_EDGES: list[Any] = [
    None, True, False, *_INTEGER_EDGES, *_FLOAT_EDGES, *_STRING_EDGES, b"", b"\xff", b"data",
    *(Deep(depth, kind) for depth in (63, 64, 65, 66, 200, 999, 1000, 1001, 5000)
      for kind in ("array", "map")),
    *(RawJson(literal) for literal in _JSON_LITERALS),
    msgpack.ExtType(1, b"x"), msgpack.ExtType(127, b"\x00" * 4), msgpack.Timestamp(1, 2),
    [], {}, [None], {"": None},
]

#: Values a broken or hostile peer might put where a field, or a frame, belongs. Edge
#: values come from one list (one draw each: cheap), random ones are kept small.
_hostile_scalars = st.one_of(
    st.sampled_from(_EDGES),
    st.sampled_from(_EDGES),
    st.integers(),
    st.floats(),
    st.text(max_size=10),  # lone surrogates included
    st.binary(max_size=8),
)
# Mostly string keys: another key type makes a msgpack message undecodable.
_hostile_keys = st.text(max_size=6) | st.text(max_size=6) \
    | st.sampled_from([1, -1, 2**64, 1.5, None, True, b"k", b"\xff"])
_hostile_level1 = _hostile_scalars | st.lists(_hostile_scalars, max_size=3) \
    | st.dictionaries(_hostile_keys, _hostile_scalars, max_size=3)
hostile_values = st.one_of(
    _hostile_scalars,
    _hostile_scalars,
    st.lists(_hostile_level1, max_size=3),
    st.dictionaries(_hostile_keys, _hostile_level1, max_size=3),
)

_FIELDS = ["type", "id", "channel", "since", "data", "key", "position", "epoch", "offset",
           "version", "session", "ping_interval", "pong_timeout", "max_message_size",
           "recovered", "code", "message", "reason", "last", "limit", "reverse",
           "publications", "presence", "server", "count", "members", "joins", "leaves",
           "truncated"]
_TYPES = ["subscribe", "unsubscribe", "publish", "ping", "pong", "welcome", "subscribed",
          "history", "presence", "presence_diff", "unsubscribed",
          "ack", "publication", "error", "close", "Publish", "", "publish\x00"]


# Strategies used inside composites are built once: building them per draw is slow.
_mutation_counts = st.integers(1, 3)
# Mostly field-level damage; breaking the frame as a whole ("wrap", "replace", a type
# that is no string) makes the whole message undecodable, which stops the decoder
# before it looks at the other frames.
_mutations = st.sampled_from(
    ["set"] * 6 + ["delete"] * 2 + ["type"] * 2 + ["position"] * 2 + ["wrap", "replace"]
)
_field_names = st.sampled_from(_FIELDS) | st.text(max_size=8)
_type_values = st.sampled_from(_TYPES) | st.sampled_from(_TYPES) | st.text(max_size=8) \
    | hostile_values
_position_fields = st.sampled_from(["since", "position"])
_position_parts = st.sampled_from(["epoch", "offset", "extra"])
_wraps = st.sampled_from(["list", "map", "pair"])
_indexes = st.integers(0, 20)


@st.composite
def near_valid_frames(draw: st.DrawFn, frames: st.SearchStrategy[Frame]) -> Any:
    """A valid frame's wire map with one to three things wrong with it."""
    wire: Any = draw(frames).to_wire()
    for _ in range(draw(_mutation_counts)):
        if not isinstance(wire, dict):
            break
        mutation = draw(_mutations)
        if mutation == "set":
            wire[draw(_field_names)] = draw(hostile_values)
        elif mutation == "delete" and wire:
            fields = list(wire)
            del wire[fields[draw(_indexes) % len(fields)]]
        elif mutation == "type":
            wire["type"] = draw(_type_values)
        elif mutation == "position":
            # A position (``since``/``position``) with a broken epoch or offset.
            position = dict(draw(positions).to_wire())
            position[draw(_position_parts)] = draw(hostile_values)
            wire[draw(_position_fields)] = position
        elif mutation == "wrap":
            wire = {"list": [wire], "map": {"frame": wire}, "pair": [wire, wire]}[draw(_wraps)]
        else:
            # No further mutation: a hostile map may be one of the shared _EDGES.
            return draw(hostile_values)
    return wire


# --- lenient encoders -----------------------------------------------------------------


def _json_text(value: Any) -> str:
    """JSON of ``value`` as a sloppy peer writes it: NaN, huge numbers, lone surrogates
    (as ``\\ud800`` escapes), any map keys made strings, bytes as latin-1 text."""
    if isinstance(value, Deep):
        if value.kind == "array":
            return "[" * value.depth + "0" + "]" * value.depth
        return '{"a":' * value.depth + "0" + "}" * value.depth
    if isinstance(value, RawJson):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(
            json.dumps(key if isinstance(key, str) else _json_key(key)) + ":" + _json_text(item)
            for key, item in value.items()
        ) + "}"
    if isinstance(value, list | tuple):  # msgpack.ExtType is a tuple
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    if isinstance(value, bytes):
        return json.dumps(value.decode("latin-1"))
    if isinstance(value, msgpack.Timestamp):
        return str(value.seconds)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**4000:
        return "1" * 4400  # str() of such an int raises; the peer sends digits anyway
    return json.dumps(value)  # allow_nan and ensure_ascii are on: NaN, "\ud800"


def _json_key(key: Any) -> str:
    return key.decode("latin-1") if isinstance(key, bytes) else str(key)


def _msgpack_bytes(value: Any) -> bytes:
    """msgpack of ``value`` as a sloppy peer writes it: invalid UTF-8 for lone
    surrogates, maps with any keys, ext types, out-of-range integers as floats, and deep
    values written byte by byte (the packer would refuse to recurse that far)."""
    if isinstance(value, Deep):
        if value.kind == "array":
            return b"\x91" * value.depth + b"\x00"
        return b"\x81\xa1a" * value.depth + b"\x00"
    if isinstance(value, dict):
        items = list(value.items())
        head = (bytes([0x80 | len(items)]) if len(items) < 16
                else b"\xde" + len(items).to_bytes(2, "big"))
        return head + b"".join(_msgpack_bytes(key) + _msgpack_bytes(item) for key, item in items)
    if isinstance(value, list):
        head = (bytes([0x90 | len(value)]) if len(value) < 16
                else b"\xdc" + len(value).to_bytes(2, "big"))
        return head + b"".join(_msgpack_bytes(item) for item in value)
    if isinstance(value, RawJson):
        literal = value.text
        try:
            value = float(literal) if any(c in literal for c in ".eEIN") else int(literal)
        except ValueError:  # more digits than int() reads: the peer means a big number
            value = math.inf
    if isinstance(value, int) and not isinstance(value, bool) \
            and not INT64_MIN <= value <= UINT64_MAX:
        try:
            value = float(value)
        except OverflowError:
            value = math.inf if value > 0 else -math.inf
    return _PACKER.pack(value)  # type: ignore[no-any-return]


_PACKER = msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass")


def encode_loosely(codec: Codec, value: Any) -> bytes:
    """Encode one value (a frame map or anything else) in ``codec``, however broken."""
    if codec.binary:
        return _msgpack_bytes(value)
    return _json_text(value).encode("utf-8", "surrogatepass")


# --- messages -------------------------------------------------------------------------


_damages = st.sampled_from(["truncate", "insert", "flip", "double", "whitespace"])
_fractions = st.floats(0, 1)
_inserts = st.binary(min_size=1, max_size=4)
_flips = st.integers(1, 255)
_blanks = st.sampled_from([b"\n", b"\r\n", b" \n\n", b"\t"])


@st.composite
def damaged(draw: st.DrawFn, message: bytes) -> bytes:
    """``message`` with byte-level damage: truncated, bytes inserted, flipped, doubled."""
    kind = draw(_damages)
    at = int(draw(_fractions) * len(message))
    if kind == "truncate":
        return message[:min(at, len(message) - 1)]
    if kind == "insert":
        return message[:at] + draw(_inserts) + message[at:]
    if kind == "flip" and message:
        at = min(at, len(message) - 1)
        return message[:at] + bytes([message[at] ^ draw(_flips)]) + message[at + 1:]
    if kind == "whitespace":
        return message[:at] + draw(_blanks) + message[at:]
    return message + message


_random_bytes = st.binary(max_size=200)
_random_text = st.text(max_size=100)


def _message(frames: st.SearchStrategy[Frame]) -> Callable[[Codec], st.SearchStrategy[bytes]]:
    # Mostly frames: one value that is not a frame makes the whole message undecodable,
    # which stops the decoder before it validates the others.
    near = near_valid_frames(frames)
    items = st.lists(
        st.one_of(frames.map(lambda frame: frame.to_wire()), near, near, near, near,
                  hostile_values),
        min_size=1, max_size=3,
    )
    shapes = st.sampled_from(["frames"] * 6 + ["damaged"] * 2 + ["bytes", "text"])

    @st.composite
    def build(draw: st.DrawFn, codec: Codec) -> bytes:
        shape = draw(shapes)
        if shape == "bytes":
            return draw(_random_bytes)
        if shape == "text":
            return draw(_random_text).encode("utf-8", "surrogatepass")
        message = codec.join(encode_loosely(codec, item) for item in draw(items))
        if shape == "damaged":
            message = draw(damaged(message))
        return message

    return build


#: ``client_message(codec)``: a transport message a client might send, in ``codec``.
client_message = _message(client_frames)
#: ``server_message(codec)``: a transport message a server might send, in ``codec``.
server_message = _message(server_frames)

# --- cursors --------------------------------------------------------------------------

cursors: st.SearchStrategy[dict[str, Position | None]] = st.dictionaries(
    channels, st.none() | positions, max_size=4
)


_cursor_shapes = st.sampled_from(["valid", "near", "near", "near", "deep", "random"])
_cursor_damage = st.sampled_from(["value", "position", "key", "whole"])
_deep_cursors = st.builds(Deep, st.sampled_from([2, 64, 999, 1000, 1001, 3000]),
                          st.sampled_from(["array", "map"]))
_bad_channels = st.sampled_from(_STRING_EDGES) | st.text(max_size=10)
_random_cursors = st.text(max_size=60)
_offset_or_epoch = st.sampled_from(["epoch", "offset"])


def _cursor_wire(cursor: dict[str, Position | None]) -> dict[str, Any]:
    return {channel: None if position is None else position.to_wire()
            for channel, position in cursor.items()}


@st.composite
def cursor_text(draw: st.DrawFn) -> str:
    """The text of a ``subs`` cursor: valid, near-valid, deeply nested, or random."""
    shape = draw(_cursor_shapes)
    if shape == "valid":
        return json.dumps(_cursor_wire(draw(cursors)))
    if shape == "deep":
        return _json_text(draw(_deep_cursors))
    if shape == "random":
        return draw(_random_cursors)
    cursor: Any = _cursor_wire(draw(cursors))
    kind = draw(_cursor_damage)
    if kind == "value":
        cursor[draw(channels)] = draw(hostile_values)
    elif kind == "position":
        position = dict(draw(positions).to_wire())
        position[draw(_offset_or_epoch)] = draw(hostile_values)
        cursor[draw(channels)] = position
    elif kind == "key":
        cursor[draw(_bad_channels)] = None
    else:
        cursor = draw(hostile_values)
    return _json_text(cursor)

# --- tokens (rtlink.auth) ---------------------------------------------------------------

#: The secret the token strategies sign with (give it to the TokenAuth under test).
TOKEN_SECRET = b"fuzz-secret-fuzz-secret-fuzz-secret!"
_CLAIMS = ["sub", "exp", "nbf", "iat", "iss", "aud", "typ", "jti", "rtlink_exp"]
_token_shapes = st.sampled_from(["jwt"] * 4 + ["text", "parts"])
_claim_names = st.sampled_from(_CLAIMS) | st.text(max_size=4)
_claim_mutations = st.integers(0, 2)
#: Mostly in the future (2**31 s is in 2038), sometimes long past.
_expiries = st.integers(2**31, 2**33) | st.integers(2**31, 2**33) | st.integers(0, 2**33)
_headers = st.sampled_from([{"alg": "HS256", "typ": "JWT"}] * 10 + [
    {"alg": "HS256"}, {"alg": "none"}, {"alg": "HS512"},
    {"alg": "RS256"}, {"alg": ["HS256"]}, {"alg": "HS256", "crit": ["b64"]},
    {"alg": "HS256", "b64": False}, {"alg": "HS256", "kid": RawJson("1" * 5000)},
    Deep(2000, "array"), [], "x",
])
_signatures = st.sampled_from(["good", "good", "good", "bad", "none"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """A token as a client might send one: an HS256 JWT signed with
    :data:`TOKEN_SECRET` (or badly signed) whose header or claims may be wrong (hostile
    values in any claim: huge or non-integer times, a subject that is no string...),
    random text, or random dot-separated parts."""
    shape = draw(_token_shapes)
    if shape == "text":
        return draw(_random_text)
    if shape == "parts":
        return ".".join(draw(st.lists(_random_text, max_size=4)))
    claims: dict[str, Any] = {"sub": draw(texts), "exp": draw(_expiries)}
    for _ in range(draw(_claim_mutations)):
        claims[draw(_claim_names)] = draw(hostile_values)
    signing_input = (_b64(_json_text(draw(_headers)).encode("utf-8", "surrogatepass")) + "."
                     + _b64(_json_text(claims).encode("utf-8", "surrogatepass")))
    signature = draw(_signatures)
    if signature == "none":
        return signing_input + "."
    key = TOKEN_SECRET if signature == "good" else b"another secret of enough length!!"
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(digest)

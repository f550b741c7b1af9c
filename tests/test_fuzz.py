"""Fuzzing the pure decoders: codecs, frame parsing, cursors, position strings, tokens.

Every input must end in a documented outcome: a decoded value that is valid (and
survives a round trip through both codecs), or a documented exception type from
:mod:`rtlink.errors` (``ValueError`` where the function documents it). An unhandled
exception of any other type fails the test with the input that caused it.

The number of inputs each test ran is checked against its target and printed at the
end of the run (tests/support/fuzzing.py); the transports are fuzzed through a real server in
tests/transports/test_fuzz_http.py. The targets here (8,700 inputs) and there (2,100)
add up to the 10,800 inputs of every CI run (issue 6 asks for at least 10,000), in
about 30 s on a 2-core machine; cheap inputs (random bytes) get the largest share.
RTLINK_FUZZ_FACTOR=10 runs ten times as many.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtlink.auth import TokenAuth, bearer_token
from rtlink.codecs import CODECS, Codec
from rtlink.codes import CloseCode, ErrorCode
from rtlink.errors import AuthenticationError, FrameError, ProtocolError
from rtlink.positions import format_cursor, parse_cursor
from rtlink.protocol import (
    CLIENT_FRAMES,
    MAX_EPOCH_LENGTH,
    MAX_SAFE_INTEGER,
    SERVER_FRAMES,
    Close,
    Error,
    Frame,
    Position,
    decode_client_message,
    decode_server_message,
    encode_frame,
    encode_frames,
)
from tests.support.fuzzing import (
    TOKEN_SECRET,
    Tally,
    client_frames,
    client_message,
    cursor_text,
    cursors,
    fuzz_settings,
    hostile_values,
    positions,
    register_summary,
    server_frames,
    server_message,
    tokens,
)

pytestmark = pytest.mark.slow

RecordProperty = Callable[[str, object], None]

# One strategy per codec, built once (a flatmap would build new strategies per example).
client_messages = st.one_of(*(st.tuples(st.just(codec), client_message(codec))
                              for codec in CODECS.values()))
server_messages = st.one_of(*(st.tuples(st.just(codec), server_message(codec))
                              for codec in CODECS.values()))
#: An invalid frame is answered with 400 or 422 (docs/protocol.md 3.3).
FRAME_ERROR_CODES = {ErrorCode.BAD_REQUEST, ErrorCode.INVALID_CHANNEL}
#: The default ``max_subscriptions`` of a hub: what cursors are checked against.
SUBSCRIPTION_LIMIT = 256


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(pytestconfig: pytest.Config) -> None:
    register_summary(pytestconfig)


def check_decoded(codec: Codec, message: bytes,
                  decode: Callable[[Codec, bytes], list[Frame | FrameError]],
                  frame_types: set[str]) -> list[Frame | FrameError] | None:
    """Decode ``message``; assert the outcome is documented and usable by the server.

    Returns the decoded frames, or None when the message is undecodable.
    """
    try:
        items = decode(codec, message)
    except FrameError as exc:
        raise AssertionError(f"FrameError escaped for the whole message: {exc!r}") from exc
    except ProtocolError as exc:
        assert exc.code == CloseCode.INVALID_PAYLOAD
        # The server closes with this text as the reason of a close frame: it must
        # encode in the connection's codec.
        encode_frame(codec, Close(exc.code, str(exc)))
        return None
    assert items, "a decodable message holds at least one frame"
    for item in items:
        if isinstance(item, FrameError):
            assert item.error_code in FRAME_ERROR_CODES, item
            assert item.request_id is None or 0 < item.request_id <= MAX_SAFE_INTEGER
            # The server answers an invalid frame with this error frame.
            encode_frame(codec, Error(item.error_code, str(item), item.request_id))
        else:
            assert item.type in frame_types, item
    return items


def check_round_trip(frame: Frame, decode: Callable[[Codec, bytes], list[Frame | FrameError]],
                     ) -> None:
    """``frame`` encodes in both codecs and decodes back to an equal frame."""
    for codec in CODECS.values():
        assert decode(codec, encode_frame(codec, frame)) == [frame], (codec, frame)


# --- transport messages -----------------------------------------------------------------


def test_client_messages_decode_to_valid_frames_or_documented_errors(
        record_property: RecordProperty) -> None:
    tally = Tally(2000)
    outcomes: set[str] = set()

    @fuzz_settings(tally.target)
    @given(client_messages)
    def run(case: tuple[Codec, bytes]) -> None:
        tally()
        codec, message = case
        items = check_decoded(codec, message, decode_client_message, set(CLIENT_FRAMES))
        if items is None:
            outcomes.add("undecodable")
        for item in items or ():
            if isinstance(item, FrameError):
                outcomes.add("invalid")
            else:
                outcomes.add(item.type)
                # What the server accepts, every subscriber's codec can carry.
                check_round_trip(item, decode_client_message)

    run()
    tally.check("decode_client_message: client messages", record_property)
    # The strategies are not blind: every kind of outcome occurred.
    assert outcomes == {"undecodable", "invalid", *CLIENT_FRAMES}, outcomes


def test_server_messages_decode_to_valid_frames_or_documented_errors(
        record_property: RecordProperty) -> None:
    tally = Tally(800)

    @fuzz_settings(tally.target)
    @given(server_messages)
    def run(case: tuple[Codec, bytes]) -> None:
        tally()
        codec, message = case
        check_decoded(codec, message, decode_server_message, set(SERVER_FRAMES))

    run()
    tally.check("decode_server_message: server messages", record_property)


def test_random_bytes_and_text_in_every_decoder(record_property: RecordProperty) -> None:
    tally = Tally(2600)

    @fuzz_settings(tally.target)
    @given(st.binary(max_size=64) | st.text(max_size=64))
    def run(raw: bytes | str) -> None:
        tally()
        for codec in CODECS.values():
            for decode, types in ((decode_client_message, set(CLIENT_FRAMES)),
                                  (decode_server_message, set(SERVER_FRAMES))):
                check_decoded(codec, raw, decode, types)  # type: ignore[arg-type]
        if isinstance(raw, str):
            check_cursor(raw)
            check_position_text(raw)

    run()
    tally.check("codecs and cursors: random bytes and text", record_property)


def test_valid_client_frames_round_trip_in_both_codecs(record_property: RecordProperty) -> None:
    tally = Tally(600)

    @fuzz_settings(tally.target)
    @given(st.lists(client_frames, min_size=1, max_size=3))
    def run(frames: list[Frame]) -> None:
        tally()
        for codec in CODECS.values():
            assert decode_client_message(codec, encode_frames(codec, frames)) == frames

    run()
    tally.check("round trip: client frames", record_property)


def test_valid_server_frames_round_trip_in_both_codecs(record_property: RecordProperty) -> None:
    tally = Tally(500)

    @fuzz_settings(tally.target)
    @given(st.lists(server_frames, min_size=1, max_size=3))
    def run(frames: list[Frame]) -> None:
        tally()
        for codec in CODECS.values():
            assert decode_server_message(codec, encode_frames(codec, frames)) == frames

    run()
    tally.check("round trip: server frames", record_property)


# --- cursors (subs, Last-Event-ID) and position strings ----------------------------------


def check_cursor(text: str) -> str:
    """Parse a cursor: a ValueError, or valid entries that survive a round trip.
    Returns which of the outcomes it was."""
    try:
        cursor = parse_cursor(text, SUBSCRIPTION_LIMIT)
    except ValueError as exc:
        # The reason goes into a "text/plain; charset=utf-8" HTTP 400 answer.
        str(exc).encode()
        return "refused"
    assert len(cursor) <= SUBSCRIPTION_LIMIT
    for position in cursor.values():
        assert position is None or (0 < len(position.epoch) <= MAX_EPOCH_LENGTH
                                    and 0 <= position.offset <= MAX_SAFE_INTEGER)
    assert list(parse_cursor(format_cursor(cursor), SUBSCRIPTION_LIMIT).items()) \
        == list(cursor.items())
    return "positions" if any(cursor.values()) else "nulls or empty"


def test_cursor_texts_parse_or_are_refused(record_property: RecordProperty) -> None:
    tally = Tally(900)
    outcomes: set[str] = set()

    @fuzz_settings(tally.target)
    @given(cursor_text())
    def run(text: str) -> None:
        tally()
        outcomes.add(check_cursor(text))

    run()
    tally.check("parse_cursor: cursor texts", record_property)
    assert outcomes == {"refused", "positions", "nulls or empty"}


def test_cursors_round_trip(record_property: RecordProperty) -> None:
    tally = Tally(300)

    @fuzz_settings(tally.target)
    @given(cursors)
    def run(cursor: dict[str, Position | None]) -> None:
        tally()
        text = format_cursor(cursor)
        assert text.isascii(), "cursors travel as SSE event ids and request headers"
        assert list(parse_cursor(text, SUBSCRIPTION_LIMIT).items()) \
            == list(cursor.items())

    run()
    tally.check("format_cursor/parse_cursor: round trip", record_property)


def check_position_text(text: str) -> None:
    """``Position.parse``: a ValueError, or a valid position whose text parses back."""
    try:
        position = Position.parse(text)
    except ValueError:
        return
    assert 0 < len(position.epoch) <= MAX_EPOCH_LENGTH
    assert 0 <= position.offset <= MAX_SAFE_INTEGER
    assert Position.parse(str(position)) == position


@st.composite
def position_texts(draw: st.DrawFn) -> str:
    """``epoch:offset`` strings, valid or with a damaged part."""
    epoch = draw(positions).epoch
    offset: Any = draw(hostile_values | st.integers(-5, MAX_SAFE_INTEGER + 5)
                       | st.sampled_from(["", "0" * 17, "٣", "²", "+1", " 1", "1 "]))
    return f"{epoch}{draw(st.sampled_from([':', '', '::']))}{offset}"


def test_position_strings_parse_or_are_refused(record_property: RecordProperty) -> None:
    tally = Tally(400)

    @fuzz_settings(tally.target)
    @given(positions | position_texts())
    def run(case: Position | str) -> None:
        tally()
        if isinstance(case, Position):
            assert Position.parse(str(case)) == case
        else:
            check_position_text(case)

    run()
    tally.check("Position.parse: position strings", record_property)


# --- tokens (the built-in authenticate hook) ------------------------------------------------

AUTH = TokenAuth(TOKEN_SECRET)
_schemes = st.sampled_from(["Bearer ", "bearer  ", " Bearer\t", "Basic ", "Bearer", ""])


def test_tokens_verify_or_are_refused(record_property: RecordProperty) -> None:
    tally = Tally(600)
    outcomes: set[str] = set()

    @fuzz_settings(tally.target)
    @given(tokens(), _schemes)
    def run(token: str, scheme: str) -> None:
        tally()
        for verify in (AUTH.verify, lambda text: AUTH.verify(bearer_token(scheme + text))):
            try:
                identity = verify(token)
            except AuthenticationError as exc:
                str(exc).encode()  # it becomes the reason of a close frame (4500)
                outcomes.add("refused")
                continue
            assert isinstance(identity.subject, str) and identity.subject
            assert identity.expires_at is None or math.isfinite(identity.expires_at)
            outcomes.add("verified")

    run()
    tally.check("TokenAuth.verify, bearer_token: tokens", record_property)
    assert outcomes == {"refused", "verified"}, outcomes

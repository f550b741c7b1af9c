"""Positions and cursors: every text form both ways, malformed input, and is_after.
Plain function calls, no event loop."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rtlink
import rtlink.protocol
from rtlink.errors import FrameError, InvalidInput
from rtlink.positions import (
    MAX_EVENT_ID,
    MAX_SAFE_INTEGER,
    Position,
    format_cursor,
    format_event_id,
    is_after,
    merge_last_event_id,
    parse_cursor,
    parse_subs,
)
from tests.support import run_js

MAX_SAFE = MAX_SAFE_INTEGER
CHANNEL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@/=+,#"

channels = st.text(alphabet=CHANNEL_CHARS, min_size=1, max_size=255)
positions = st.builds(
    Position,
    # No lone surrogates: JSON text could not hold them (a codec refuses them).
    epoch=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=64),
    offset=st.integers(min_value=0, max_value=MAX_SAFE),
)
cursors = st.dictionaries(channels, st.none() | positions, max_size=8)


def test_position_is_one_class_wherever_it_is_imported_from() -> None:
    assert rtlink.Position is rtlink.protocol.Position is Position


def test_position_is_frozen_and_hashable() -> None:
    pos = Position("e", 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        pos.offset = 2  # type: ignore[misc]
    assert len({pos, Position("e", 1)}) == 1


# --- the position map and text ----------------------------------------------------------


@given(positions)
@settings(max_examples=300, deadline=None)
def test_position_round_trips(position: Position) -> None:
    assert Position.parse(str(position)) == position
    assert Position.from_wire(position.to_wire()) == position


def test_position_to_wire() -> None:
    assert Position("e", 3).to_wire() == {"epoch": "e", "offset": 3}
    # Extra fields of a position map are ignored (protocol.md 4.2).
    assert Position.from_wire({"epoch": "e", "offset": 3, "more": 1}) == Position("e", 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "must be a map"), ([1], "must be a map"), ("e:1", "must be a map"),
     ({"offset": 1}, "epoch"), ({"epoch": "", "offset": 1}, "epoch"),
     ({"epoch": "x" * 65, "offset": 1}, "epoch"), ({"epoch": 5, "offset": 1}, "epoch"),
     ({"epoch": "a\udfff", "offset": 1}, "epoch"), ({"epoch": "e"}, "offset"),
     ({"epoch": "e", "offset": -1}, "offset"), ({"epoch": "e", "offset": 1.0}, "offset"),
     ({"epoch": "e", "offset": True}, "offset"), ({"epoch": "e", "offset": "1"}, "offset"),
     ({"epoch": "e", "offset": MAX_SAFE + 1}, "offset")],
)
def test_position_from_wire_errors(value: Any, message: str) -> None:
    with pytest.raises(FrameError, match=message) as info:
        Position.from_wire(value, request_id=7)
    assert (info.value.error_code, info.value.request_id) == (400, 7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("e:0", Position("e", 0)), ("a:b:c:12", Position("a:b:c", 12)), ("::1", Position(":", 1)),
     ("e:007", Position("e", 7)), (f"e:{MAX_SAFE}", Position("e", MAX_SAFE)),
     ("x" * 64 + ":3", Position("x" * 64, 3))],
)
def test_position_parse(text: str, expected: Position) -> None:
    assert Position.parse(text) == expected


def test_position_str() -> None:
    assert str(Position("a:b", 5)) == "a:b:5"


@pytest.mark.parametrize(
    "text",
    ["", "e", "5", ":5", "e:", "e:-1", "e:+1", "e:1.0", "e: 1", "e:1 ", "e:0x1", "e:1e3",
     "e:\u00b2", "e:\u0661", f"e:{MAX_SAFE + 1}", "e:" + "9" * 5000, "x" * 65 + ":1"],
)
def test_position_parse_errors(text: str) -> None:
    with pytest.raises(InvalidInput, match="EPOCH:OFFSET"):
        Position.parse(text)
    with pytest.raises(ValueError, match="EPOCH:OFFSET"):  # InvalidInput is one
        Position.parse(text)


# --- cursors ----------------------------------------------------------------------------


@given(cursors)
@settings(max_examples=200, deadline=None)
def test_cursor_round_trips(cursor: dict[str, Position | None]) -> None:
    text = format_cursor(cursor)
    assert text.isascii()
    assert parse_cursor(text, 256) == cursor
    assert list(parse_cursor(text, 256)) == list(cursor)  # the order is kept


def test_cursor_text_is_compact_json_in_the_order_given() -> None:
    cursor = {"news": Position("a1b2c3d4", 41), "chat:lobby": None}
    assert format_cursor(cursor) == (
        '{"news":{"epoch":"a1b2c3d4","offset":41},"chat:lobby":null}')
    assert format_cursor({}) == "{}"
    assert format_cursor({"é": Position("ü", 1)}) == (
        '{"\\u00e9":{"epoch":"\\u00fc","offset":1}}')


def test_parse_cursor_absent_empty_and_repeated() -> None:
    assert parse_cursor(None, 256) == {}
    assert parse_cursor("", 256) == {}
    assert parse_cursor("{}", 256) == {}
    # A repeated channel counts once, with its last value.
    text = '{"a":null,"a":{"epoch":"e","offset":2}}'
    assert parse_cursor(text, 256) == {"a": Position("e", 2)}


@pytest.mark.parametrize(
    ("text", "message"),
    [("[", "subs must be a JSON object"), ("{", "subs must be a JSON object"),
     ("nul", "subs must be a JSON object"), ("[" * 1500, "subs must be a JSON object"),
     ('{"a":' * 1500, "subs must be a JSON object"),
     ("[]", "subs must be a JSON object of channel -> position or null"),
     ('"news"', "subs must be a JSON object of channel -> position or null"),
     ("null", "subs must be a JSON object of channel -> position or null"),
     ('{"a b":null}', "invalid channel name"), ('{"":null}', "invalid channel name"),
     ('{"a":1}', "position must be a map"), ('{"a":"e:1"}', "position must be a map"),
     ('{"a":{"epoch":"","offset":1}}', "position.epoch must be a non-empty string"),
     ('{"a":{"epoch":"e","offset":-1}}', "position.offset must be an integer >= 0")],
)
def test_parse_cursor_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_cursor(text, 256)


def test_parse_cursor_limit() -> None:
    text = json.dumps({f"c{n}": None for n in range(3)})
    assert len(parse_cursor(text, 3)) == 3
    with pytest.raises(InvalidInput, match="at most 2 subscriptions"):
        parse_cursor(text, 2)


# --- SSE event ids ----------------------------------------------------------------------


def test_event_id_is_the_cursor_text_when_short_enough() -> None:
    cursor = {"news": Position("e", 4), "chat": None}
    assert format_event_id(cursor) == format_cursor(cursor)
    assert format_event_id({}) is None  # no channel: no id
    assert format_event_id(None) is None  # no cursor (more is queued): no id


def test_event_id_longer_than_the_limit_is_left_out() -> None:
    def cursor_of_length(length: int) -> dict[str, Position | None]:
        base = len(format_cursor({"c": Position("", 0)}))
        return {"c": Position("e" * (length - base), 0)}

    assert len(format_event_id(cursor_of_length(MAX_EVENT_ID)) or "") == MAX_EVENT_ID
    assert format_event_id(cursor_of_length(MAX_EVENT_ID + 1)) is None


def test_last_event_id_replaces_positions_of_channels_in_subs() -> None:
    subs = {"a": Position("e", 1), "b": None, "c": Position("e", 9)}
    last = {"a": Position("e", 5), "b": Position("f", 2), "c": None, "z": Position("e", 1)}
    merged = merge_last_event_id(subs, last)
    # Replaced where Last-Event-ID has a position; kept where it has null; channels of
    # Last-Event-ID absent from subs ignored; the order of subs kept.
    assert merged == {"a": Position("e", 5), "b": Position("f", 2), "c": Position("e", 9)}
    assert list(merged) == ["a", "b", "c"]
    assert merge_last_event_id(subs, {}) == subs
    assert subs["a"] == Position("e", 1)  # not changed in place


# --- is_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "last", "new"),
    [
        (Position("e", 1), None, True),  # nothing delivered yet
        (Position("e", 0), None, True),
        (Position("e", 6), Position("e", 5), True),  # the next one
        (Position("e", 9), Position("e", 5), True),  # after a gap: still new
        (Position("e", 5), Position("e", 5), False),  # the same one again
        (Position("e", 4), Position("e", 5), False),  # an older one (replay/live seam)
        (Position("f", 1), Position("e", 5), True),  # a new epoch is adopted
        (Position("f", 9), Position("e", 5), True),  # ... whatever its offset
        (Position("f", 1), Position("e", 0), True),
        (Position("e", 5), Position("E", 5), True),  # epochs are opaque, case and all
    ],
)
def test_is_after(position: Position, last: Position | None, new: bool) -> None:
    assert is_after(position, last) is new


@given(positions, positions)
def test_is_after_matches_the_rule_in_words(position: Position, last: Position) -> None:
    repeat = position.epoch == last.epoch and position.offset <= last.offset
    assert is_after(position, last) is not repeat


# --- the JavaScript client's mirror (js-client/src/positions.js) -------------------------


def test_the_javascript_client_has_the_same_is_after() -> None:
    cases = [(Position("e", 1), None), (Position("e", 6), Position("e", 5)),
             (Position("e", 5), Position("e", 5)), (Position("e", 4), Position("e", 5)),
             (Position("f", 1), Position("e", 5)), (Position("f", 9), Position("e", 5)),
             (Position("e", 5), Position("E", 5)), (Position("e", 0), Position("e", 0))]
    wire = [[position.to_wire(), None if last is None else last.to_wire()]
            for position, last in cases]
    answers = run_js("positions.js", "console.log(JSON.stringify("
                     "input[0].map(([position, last]) => m.isAfter(position, last))));", wire)
    assert answers == [is_after(position, last) for position, last in cases]


def test_the_javascript_client_reads_and_writes_cursors_alike() -> None:
    texts = [format_cursor({"news": Position("a1b2c3d4", 41), "chat:lobby": None}),
             format_cursor({"news": Position("\U0001f600" * 64, 2**53 - 1)}),
             format_cursor({"é": Position("e", 1)}), "", "{}",
             '{"a":null,"a":{"epoch":"e","offset":2}}', '{"a":{"epoch":"e","offset":1,"x":2}}',
             "[", "[]", "null", '"news"', '{"a b":null}', '{"a":1}', '{"a":"e:1"}',
             '{"a":{"epoch":"","offset":1}}', '{"a":{"epoch":"e","offset":-1}}',
             '{"a":{"epoch":"e","offset":1.5}}', '{"a":{"epoch":"' + "x" * 65 + '","offset":1}}',
             '{"a":{"epoch":"\\ud800","offset":1}}', json.dumps({f"c{n}": None for n in range(3)})]
    script = """
const out = input[0].map((text) => {
  try {
    const cursor = m.parseCursor(text, 2);
    return ['ok', cursor, m.formatCursor(cursor)];
  } catch (error) {
    return [error.name, error.message];
  }
});
console.log(JSON.stringify(out));
"""
    answers = run_js("positions.js", script, texts)
    for text, answer in zip(texts, answers, strict=True):
        try:
            cursor = parse_cursor(text, 2)
        except InvalidInput as exc:
            assert answer[0] == "InvalidInput", (text, answer)
            if "channel" not in str(exc):  # the channel rule's words differ a little
                assert answer[1] == str(exc), text
            continue
        assert answer[0] == "ok", (text, answer)
        assert answer[1] == {channel: None if position is None else position.to_wire()
                             for channel, position in cursor.items()}, text
        # The same JSON, except that JS leaves non-ASCII characters unescaped.
        assert answer[2] == json.dumps(json.loads(format_cursor(cursor)), ensure_ascii=False,
                                       separators=(",", ":")), text


def test_cursor_entries_with_last_round_trip() -> None:
    at = Position("e1", 4)
    text = format_cursor({"a": None, "b": at, "c": None}, {"a": 3, "b": 2**53 - 1})
    assert json.loads(text) == {"a": {"last": 3},
                                "b": {"epoch": "e1", "offset": 4, "last": 2**53 - 1},
                                "c": None}
    assert parse_subs(text, 10) == ({"a": None, "b": at, "c": None},
                                    {"a": 3, "b": 2**53 - 1})
    assert parse_cursor(text, 10) == {"a": None, "b": at, "c": None}
    # A repeated channel counts with its last value, last included.
    assert parse_subs('{"a":{"last":2},"a":null}', 10) == ({"a": None}, {})
    # An object without epoch and offset has no position (as presence's {"presence": true}).
    assert parse_subs('{"a":{}}', 10) == ({"a": None}, {})


def test_cursor_presence_null_is_absent() -> None:
    """``"presence": null`` is no request for presence events, as ``"last": null`` is
    no ``last`` (protocol.md 4.2, and 5: absent and null are equivalent); another
    non-boolean is refused."""
    wants: set[str] = {"a"}
    assert parse_subs('{"a":{"presence":null,"last":null}}', 10, wants) == ({"a": None}, {})
    assert wants == set()
    with pytest.raises(InvalidInput, match="presence must be a boolean"):
        parse_subs('{"a":{"presence":1}}', 10, wants)


@pytest.mark.parametrize(("text", "message"), [
    ('{"a":{"last":0}}', "last must be an integer"),
    ('{"a":{"last":true}}', "last must be an integer"),
    ('{"a":{"last":9007199254740992}}', "last must be an integer"),
    ('{"a":{"last":2,"epoch":"e"}}', "position.offset"),
])
def test_parse_cursor_entry_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_subs(text, 10)

"""Presence values without I/O: members, their keys and info, and diff coalescing."""

from __future__ import annotations

import pytest

from rtlink.auth import Identity
from rtlink.errors import FrameError, InvalidInput
from rtlink.positions import Position, format_cursor, parse_cursor
from rtlink.presence import MAX_INFO_BYTES, DiffBuffer, Member, is_session_id
from rtlink.roster import info_of, member_of

ALICE = Member("s1", "alice")
BOB = Member("s2", "bob")


def test_member_round_trips_and_keys_by_client_and_user() -> None:
    member = Member("s1", "alice", {"name": "Alice"})
    assert Member.decode(member.encode()) == member
    assert Member.from_wire(member.to_wire()) == member
    # A client claiming alice's session id as another user is another member.
    assert Member("s1", "mallory").key != member.key
    assert Member("s1").key == "s1"
    with pytest.raises(FrameError):
        Member.from_wire({"client": 1})


def test_member_of_takes_the_subject_and_a_small_info_claim() -> None:
    identity = Identity("alice", {"info": {"name": "Alice", "avatar": "a.png"}})
    assert member_of("s1", identity) == Member("s1", "alice", {"name": "Alice",
                                                               "avatar": "a.png"})
    assert member_of("s1", None) == Member("s1", None, None)
    assert member_of("s1", {"sub": "bob", "info": [1, 2]}) == Member("s1", "bob", [1, 2])


def test_info_over_one_kibibyte_or_unencodable_is_left_out() -> None:
    assert info_of(Identity("a", {"info": "x" * (MAX_INFO_BYTES - 2)})) == "x" * 1022
    assert info_of(Identity("a", {"info": "x" * (MAX_INFO_BYTES - 1)})) is None
    assert info_of({"info": float("nan")}) is None
    assert info_of({"info": b"bytes"}) is None


def test_session_ids() -> None:
    assert is_session_id("AbC-_09")
    assert not is_session_id("")
    assert not is_session_id("a b")
    assert not is_session_id("x" * 65)
    assert not is_session_id(None)


def test_the_last_event_of_a_member_wins() -> None:
    buffer = DiffBuffer("room")
    buffer.add([ALICE, BOB], [], 2)
    buffer.add([], [ALICE], 1)  # joined and left within the interval: a leave
    diff = buffer.take()
    assert (diff.joins, diff.leaves, diff.count, diff.truncated) == ((BOB,), (ALICE,), 1, False)
    assert not buffer
    buffer.add([], [BOB], 0)
    buffer.add([BOB], [], 1)  # left and came back: a join
    assert buffer.take().joins == (BOB,)


def test_a_diff_past_the_limit_is_truncated_to_the_count() -> None:
    buffer = DiffBuffer("room")
    buffer.add([Member(f"s{i}") for i in range(5)], [], 5)
    diff = buffer.take(limit=4)
    assert (diff.joins, diff.leaves, diff.count, diff.truncated) == ((), (), 5, True)
    buffer.add([Member(f"s{i}") for i in range(4)], [], 9)
    assert not buffer.take(limit=4).truncated


def test_cursor_objects_ask_for_presence() -> None:
    position = Position("e1", 4)
    text = format_cursor({"room": position, "lobby": None, "news": None},
                         presence={"room", "lobby"})
    assert text == ('{"room":{"presence":true,"epoch":"e1","offset":4},'
                    '"lobby":{"presence":true},"news":null}')
    wanted: set[str] = set()
    assert parse_cursor(text, 10, wanted) == {"room": position, "lobby": None, "news": None}
    assert wanted == {"room", "lobby"}
    assert parse_cursor('{"a":{"presence":false}}', 10, wanted) == {"a": None}
    with pytest.raises(InvalidInput):
        parse_cursor('{"a":{"presence":1}}', 10)
    with pytest.raises(InvalidInput):
        parse_cursor('{"a":{"presence":true,"epoch":"e"}}', 10)  # offset missing

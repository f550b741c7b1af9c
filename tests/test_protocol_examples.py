"""The frames and cursors docs/protocol.md shows are what rtlink reads and writes.

A third-party client is written from protocol.md alone, so each example there must
parse with :mod:`rtlink.protocol` in the direction its section says, and say nothing
the parser drops: writing the parsed frame again gives the example back (a misspelt
field would be ignored by the parser, and fail here). Plain calls, no event loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rtlink.positions import Position, format_cursor, parse_subs
from rtlink.protocol import Frame, parse_client_frame, parse_server_frame
from tests.support.docs import HTTP_API, PROTOCOL, the_block

_Parse = Callable[[Any], Frame]


def _sections() -> Iterator[tuple[str, str, list[str]]]:
    """(section heading, info string, lines) of each fenced block of protocol.md."""
    heading, block, info = "", None, ""
    for line in PROTOCOL.read_text().splitlines():
        fence = re.fullmatch(r"```(\S*)\s*", line)
        if block is None:
            if fence:
                block, info = [], fence[1]
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif fence and not fence[1]:
            yield heading, info, block
            block = None
        else:
            block.append(line)


def _frame_examples() -> list[tuple[str, str, _Parse]]:
    """Every frame protocol.md shows, with its section and its direction's parser: the
    ``json`` blocks of section 5 (the direction is in the heading), the ``C:``/``S:``
    lines of the exchanges of section 6."""
    examples: list[tuple[str, str, _Parse]] = []
    for heading, info, lines in _sections():
        if info == "json" and heading.startswith("5."):
            if "(C→S)" in heading:
                parse = parse_client_frame
            elif "(S→C)" in heading:
                parse = parse_server_frame
            else:  # ping and pong: both directions
                parse = parse_server_frame
                examples += [(heading, line, parse_client_frame) for line in lines]
            examples += [(heading, line, parse) for line in lines]
        elif not info and heading.startswith("6."):
            for line in lines:
                side, _, text = line.partition(": ")
                if side in ("C", "S") and text.startswith("{"):
                    parse = parse_client_frame if side == "C" else parse_server_frame
                    examples.append((heading, text, parse))
    return examples


FRAMES = _frame_examples()


def test_the_examples_are_found() -> None:
    """The extraction finds the examples of every new frame (an edit of the document's
    layout fails here rather than leaving them untested)."""
    shown = {(heading.split()[0], json.loads(text)["type"]) for heading, text, _ in FRAMES}
    assert {("5.2", "subscribe"), ("5.3", "subscribed"), ("5.11", "history"),
            ("5.12", "history"), ("5.13", "presence"), ("5.14", "presence"),
            ("5.15", "presence_diff"), ("5.16", "unsubscribed"),
            ("6.5", "welcome")} <= shown


@pytest.mark.parametrize(("heading", "text", "parse"), FRAMES,
                         ids=[f"{h.split()[0]}-{i}" for i, (h, _, _) in enumerate(FRAMES)])
def test_every_frame_example_parses_and_says_nothing_the_parser_drops(
        heading: str, text: str, parse: _Parse) -> None:
    raw = json.loads(text)
    frame = parse(raw)
    assert frame.to_wire() == raw, f"{heading}: {text}"


def test_the_subscribed_examples_mean_what_the_text_says() -> None:
    """5.3: the first answers ``since`` 41 with 42 and 43 to follow, the third ``last``
    20 with 24 ... 43 to follow; the server-side one has no id."""
    shown = [parse_server_frame(json.loads(text)) for heading, text, _ in FRAMES
             if heading.startswith("5.3")]
    resumed, plain, last, server = shown
    assert resumed.since == Position("9f3c2a1b", 41) and resumed.position.offset == 43
    assert plain.since is None and plain.id is None and not plain.server
    assert last.since is not None and last.position.offset - last.since.offset == 20
    assert server.server and server.id is None and server.recovered


def test_the_history_example_answers_its_request() -> None:
    """5.11/5.12: a reversed page of 2 is newest first and ends at the latest."""
    request, page = (json.loads(text) for heading, text, _ in FRAMES
                     if heading.startswith(("5.11", "5.12")) and '"id":7' in text)
    offsets = [item["position"]["offset"] for item in page["publications"]]
    assert len(offsets) == request["limit"] and offsets == sorted(offsets, reverse=True)
    assert offsets[0] == page["position"]["offset"]


def test_the_cursor_examples_parse_to_what_the_text_says() -> None:
    """4.2: the cursors shown parse (positions, ``last``, ``presence``) and are written
    back as shown."""
    cursors = [lines[0] for heading, info, lines in _sections()
               if heading.startswith("4.2") and not info]
    assert len(cursors) == 2
    first, with_last = cursors
    presence: set[str] = set()
    positions, lasts = parse_subs(first, 256, presence)
    assert positions == {"news": Position("a1b2c3d4", 41), "chat:lobby": None} and not lasts
    assert format_cursor(positions) == first
    positions, lasts = parse_subs(with_last, 256, presence)
    assert positions == {"chat:lobby": None, "news": Position("a1b2c3d4", 41)}
    assert lasts == {"chat:lobby": 20, "news": 100} and not presence
    assert format_cursor(positions, lasts) == with_last


def test_the_presence_cursor_entries_of_4_2_parse() -> None:
    """4.2 shows the presence entries inline: ``{"room":{"presence":true}}`` and one
    with a position."""
    text = PROTOCOL.read_text()
    section = text[text.index("### 4.2"):text.index("### 4.3")]
    shown = re.findall(r"`(\{\"room\":\{\"presence\":true[^`]*\})`", section)
    assert len(shown) == 2
    for cursor in shown:
        presence: set[str] = set()
        positions, _ = parse_subs(cursor, 256, presence)
        assert presence == {"room"}
        assert format_cursor(positions, presence=presence) == cursor


def test_the_history_api_example_is_a_history_answer_without_type_and_id() -> None:
    """http-api.md §5, History pages: the answer shown is the ``history`` frame's
    fields without ``type`` and ``id``, a reversed page of the ``limit`` asked for."""
    shown = the_block(HTTP_API, "", '"publications"').partition("\n\n")[2]
    answer = json.loads(shown)
    page = parse_server_frame({"type": "history", "id": 1, **answer})
    assert page.to_wire() == {"type": "history", "id": 1, **answer}
    request = json.loads(re.findall(r"-d '([^']*)'", the_block(HTTP_API, "sh",
                                                               "/rt/api/history"))[0])
    offsets = [item["position"]["offset"] for item in answer["publications"]]
    assert len(offsets) == request["limit"] and offsets == sorted(offsets, reverse=True)

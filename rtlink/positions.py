"""Positions and cursors: where a publication sits, how far a client got, and their text.

A **position** ``(epoch, offset)`` places a publication in its channel's stream; a
**cursor** maps channel names to the position reached in each, or None (nothing yet).
``docs/protocol.md`` section 4 is the normative description. Each form has its reader
and writer here, and nowhere else:

==========================  ======================================  =========================
form                        example                                 written / read by
==========================  ======================================  =========================
position map (frames:       ``{"epoch": "9f3c2a1b", "offset": 42}``   :meth:`Position.to_wire` /
``since``, ``position``)                                            :meth:`Position.from_wire`
position text (CLI, logs;   ``9f3c2a1b:42``                         ``str(position)`` /
never on the wire)                                                  :meth:`Position.parse`
cursor text (``subs``,      ``{"news":{"epoch":"9f3c2a1b",``        :func:`format_cursor` /
``Last-Event-ID``)          ``"offset":42},"chat":null}``           :func:`parse_cursor`
SSE event id                the cursor text, at most 4096 bytes     :func:`format_event_id` /
                                                                    :func:`merge_last_event_id`
==========================  ======================================  =========================

One rule says whether a publication is new to someone who got to a position:
:func:`is_after`. The hub, the connections, the backends and both clients apply it at
the seam between a replay and the live stream.

Pure: no asyncio, no aiohttp, plain values. The JavaScript client mirrors this module
in ``js-client/src/positions.js`` (``isAfter``, ``formatCursor``, ``parseCursor``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any, TypeAlias, TypeGuard

import attrs

from .errors import FrameError, InvalidInput
from .names import is_text, validate_channel

__all__ = [
    "MAX_EPOCH_LENGTH",
    "MAX_SAFE_INTEGER",
    "MAX_EVENT_ID",
    "Position",
    "Cursor",
    "is_after",
    "format_cursor",
    "parse_cursor",
    "parse_subs",
    "validate_last",
    "format_event_id",
    "merge_last_event_id",
]

#: An epoch has 1 to this many characters (no lone surrogates).
MAX_EPOCH_LENGTH = 64
#: Offsets (and request ids) stay below 2**53 so JavaScript numbers hold them exactly.
MAX_SAFE_INTEGER = 2**53 - 1
#: Longest SSE event id written: it comes back as the ``Last-Event-ID`` request header.
MAX_EVENT_ID = 4096


def _is_int(value: Any) -> TypeGuard[int]:
    # bool is an int subclass in Python; on the wire it is not a number.
    return isinstance(value, int) and not isinstance(value, bool)


@attrs.frozen(order=False)
class Position:
    """Where a publication sits in its channel's stream.

    Attributes:
        epoch: identifies one unbroken history of the channel; it changes whenever
            the backend may have lost history, so offsets are only comparable within
            one epoch.
        offset: 1 for the first publication of an epoch, +1 for each next one;
            0 means "before the first publication".
    """

    epoch: str
    offset: int

    def to_wire(self) -> dict[str, Any]:
        """The position as it appears in frames: ``{"epoch": ..., "offset": ...}``."""
        return {"epoch": self.epoch, "offset": self.offset}

    @classmethod
    def from_wire(cls, value: Any, request_id: int | None = None) -> Position:
        """Read a position from its map form (extra fields are ignored).

        Args:
            value: the decoded map.
            request_id: the id of the frame it came in, for the error.

        Raises:
            FrameError: ``value`` is not a map with an ``epoch`` of 1-64 characters and
                an integer ``offset`` from 0 to 2**53-1.
        """
        if not isinstance(value, Mapping):
            raise FrameError("position must be a map", request_id=request_id)
        epoch = value.get("epoch")
        offset = value.get("offset")
        if not is_text(epoch, MAX_EPOCH_LENGTH):
            raise FrameError("position.epoch must be a non-empty string", request_id=request_id)
        if not _is_int(offset) or not 0 <= offset <= MAX_SAFE_INTEGER:
            raise FrameError(
                "position.offset must be an integer >= 0", request_id=request_id
            )
        return cls(epoch, offset)

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Parse the ``EPOCH:OFFSET`` text produced by ``str(position)``.

        The text is split at its last colon, so an epoch may contain colons.

        Raises:
            InvalidInput: the text is not of that form (a ``ValueError`` too).
        """
        epoch, sep, offset = text.rpartition(":")
        # isascii(): str.isdigit() also accepts digits such as "²" and "١".
        if (not sep or not 0 < len(epoch) <= MAX_EPOCH_LENGTH or not offset.isascii()
                or not offset.isdigit() or len(offset) > 16
                or int(offset) > MAX_SAFE_INTEGER):
            raise InvalidInput(f"position must look like EPOCH:OFFSET, not {text[:100]!r}")
        return cls(epoch, int(offset))


#: Channel names mapped to the position reached in each, or None when there is none
#: yet (subscribe from now on). What ``subs`` and the SSE event ids carry.
Cursor: TypeAlias = Mapping[str, Position | None]


def is_after(position: Position, last: Position | None) -> bool:
    """Whether a publication at ``position`` is new to a reader that has everything up
    to ``last`` (None: nothing yet), so it must be delivered rather than dropped.

    Same epoch: new when its offset is higher; an offset at or below ``last`` is a
    repeat (the seam between a replay and the live stream, or a backend catching up).
    Another epoch: new; the channel's history was recreated and the reader adopts the
    new epoch (whether publications were missed in between is the caller's to tell:
    the clients warn when the new epoch does not start at offset 1, the Redis feed
    reports the channel lost).
    """
    return last is None or position.offset > last.offset or position.epoch != last.epoch


def validate_last(value: Any, request_id: int | None = None) -> int | None:
    """Return ``value`` if it is a valid ``last`` (a ``subscribe`` field, a cursor
    entry's): None, or an integer from 1 to 2**53-1 (the clients' "all" is 2**53-1).

    Raises:
        FrameError: it is anything else.
    """
    if value is None:
        return None
    if not _is_int(value) or not 0 < value <= MAX_SAFE_INTEGER:
        raise FrameError("last must be an integer from 1 to 2**53-1", request_id=request_id)
    return int(value)


def format_cursor(cursor: Cursor, last: Mapping[str, int] | None = None,
                  presence: Collection[str] = ()) -> str:
    """The text form of a cursor (compact JSON, ASCII only), as :func:`parse_subs`
    reads it: what clients put in ``subs`` and servers in SSE event ids.

    A channel with an entry in ``last``, or in ``presence`` (its presence events are
    asked for), is written in the object form: ``{"last": N}``, ``{"presence": true}``
    or both, with the position's ``epoch`` and ``offset`` when it has one.
    """
    def entry(channel: str, position: Position | None) -> Any:
        wire = None if position is None else position.to_wire()
        count = None if last is None else last.get(channel)
        wants = channel in presence
        if count is None and not wants:
            return wire
        entry: dict[str, Any] = {"presence": True} if wants else {}
        entry.update(wire or {})
        if count is not None:
            entry["last"] = count
        return entry

    return json.dumps({channel: entry(channel, position) for channel, position in cursor.items()},
                      separators=(",", ":"))


def parse_cursor(text: str | None, limit: int,
                 presence: set[str] | None = None) -> dict[str, Position | None]:
    """The positions of a cursor's text (:func:`parse_subs` without the ``last`` counts).

    Raises:
        InvalidInput: as :func:`parse_subs`.
    """
    return parse_subs(text, limit, presence)[0]


def parse_subs(text: str | None, limit: int, presence: set[str] | None = None
               ) -> tuple[dict[str, Position | None], dict[str, int]]:
    """Parse the text of a cursor: a JSON object mapping channel names to a position
    map, null, or an object with ``last`` and/or ``presence`` (``subs``,
    ``Last-Event-ID``). Absent or empty text is no channel.

    ``{"news": {"epoch": "a1b2c3d4", "offset": 41}, "chat:lobby": null}`` subscribes
    to ``news`` resuming after offset 41 and to ``chat:lobby`` from now on;
    ``{"chat:lobby": {"last": 20}}`` to ``chat:lobby`` with its last 20 publications
    replayed first (protocol.md 4.2). A repeated channel counts once, with its last
    value. An object without ``epoch`` and ``offset`` has no position;
    ``"presence": true`` in an object asks for the channel's presence events
    (``{"chat:lobby": {"presence": true}}``).

    Returns:
        The position of each channel (None: none), and the ``last`` of the channels
        that have one.

    Args:
        text: the cursor text.
        limit: the most channels allowed.
        presence: if given, the channels asking for presence events are added to it.

    Raises:
        InvalidInput: the text is not such an object, names an invalid channel or
            position, or has more than ``limit`` entries. The message says which, in
            the words of protocol.md 4.2 (servers answer it as HTTP 400).
    """
    if not text:
        return {}, {}
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        # Absurd nesting ("[[[[...", well within a URL's length) exhausts the parser's
        # recursion limit: still just a malformed cursor, not a server error.
        raise InvalidInput("subs must be a JSON object") from None
    if not isinstance(raw, dict):
        raise InvalidInput("subs must be a JSON object of channel -> position or null")
    if len(raw) > limit:
        raise InvalidInput(f"at most {limit} subscriptions")
    cursor: dict[str, Position | None] = {}
    lasts: dict[str, int] = {}
    try:
        for channel, value in raw.items():
            validate_channel(channel)
            lasts.pop(channel, None)
            if presence is not None:
                presence.discard(channel)
            if isinstance(value, dict):
                count = validate_last(value.get("last"))
                if count is not None:
                    lasts[channel] = count
                wants = value.get("presence")
                if wants is None:  # absent and null alike, as in frames and for last
                    wants = False
                if not isinstance(wants, bool):
                    raise InvalidInput(f"{channel}: presence must be a boolean")
                if wants and presence is not None:
                    presence.add(channel)
                # An object without epoch and offset: no position; with either, both
                # are needed (Position.from_wire says which is missing).
                if "epoch" not in value and "offset" not in value:
                    value = None
            cursor[channel] = None if value is None else Position.from_wire(value)
    except FrameError as exc:
        raise InvalidInput(str(exc)) from None
    return cursor, lasts


def format_event_id(cursor: Cursor | None) -> str | None:
    """The ``id`` of an SSE event (protocol.md 4.3): the cursor's text, or None when
    the event gets no id (no channel, or a text longer than :data:`MAX_EVENT_ID`
    bytes, which the browser could not send back as a header).

    Without an id the browser keeps the previous one: it then resumes a little earlier
    and the client drops the repeats by offset.
    """
    if not cursor:
        return None
    text = format_cursor(cursor)  # ASCII: as many bytes as characters
    return text if len(text) <= MAX_EVENT_ID else None


def merge_last_event_id(cursor: Cursor, last_event_id: Cursor) -> dict[str, Position | None]:
    """The cursor an SSE stream resumes from (protocol.md 4.2): ``cursor`` (from
    ``subs``) with each channel's position replaced by the one in ``last_event_id``
    (the parsed ``Last-Event-ID`` header) where that one is not None. Channels of
    ``last_event_id`` absent from ``cursor`` are ignored."""
    merged = dict(cursor)
    merged.update((channel, position) for channel, position in last_event_id.items()
                  if channel in merged and position is not None)
    return merged

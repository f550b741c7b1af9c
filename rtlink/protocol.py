"""The rtlink wire protocol, version 1: frames, validation, encoding. Pure, no I/O.

Everything here is plain functions and immutable values, so it is tested with
function calls and no event loop; transports only move the bytes it produces.
``docs/protocol.md`` is the normative description; this module implements it, with
:mod:`rtlink.positions` (positions, cursors) and :mod:`rtlink.names` (channel names,
keys), whose names it re-exports (``Position``, ``validate_channel``, ...).

A transport message carries one or more frames (see :mod:`rtlink.codecs` for the
batching). Each frame is a map with a string ``type``:

==============  =========  ==================================================
type            direction  fields
==============  =========  ==================================================
``welcome``     S→C        version, session, ping_interval, pong_timeout,
                           max_message_size
``subscribe``   C→S        id, channel, since?, last?, presence?
``subscribed``  S→C        id?, channel, recovered, position, since?, server?
``history``     C→S        id, channel, since?, limit?, reverse?
``history``     S→C        id, channel, publications, position, recovered
``unsubscribe`` C→S        id, channel
``unsubscribed`` S→C       channel, code, reason
``publish``     C→S        id, channel, data, key?
``ack``         S→C        id, position?
``publication`` S→C        channel, data, position
``error``       S→C        id?, code, message, channel?
``ping``        both       (none)
``pong``        both       (none)
``close``       S→C        code, reason
``presence``    C→S        id, channel
``presence``    S→C        id, channel, count, members
``presence_diff`` S→C      channel, count, joins, leaves, truncated?
==============  =========  ==================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeAlias, TypeGuard

import attrs

from .codecs import Codec
from .codes import ErrorCode
from .errors import FrameError, ProtocolError
from .names import (
    LONE_SURROGATE,
    MAX_CHANNEL_LENGTH,
    MAX_KEY_LENGTH,
    validate_channel,
    validate_key,
)
from .positions import MAX_EPOCH_LENGTH, MAX_SAFE_INTEGER, Position, validate_last
from .presence import Member

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_CHANNEL_LENGTH",
    "MAX_KEY_LENGTH",
    "MAX_EPOCH_LENGTH",
    "MAX_SAFE_INTEGER",
    "MAX_DATA_DEPTH",
    "LAST_ALL",
    "MAX_HISTORY_LIMIT",
    "DEFAULT_HISTORY_LIMIT",
    "Position",
    "Frame",
    "Welcome",
    "Subscribe",
    "Subscribed",
    "History",
    "HistoryPage",
    "Unsubscribe",
    "Unsubscribed",
    "Publish",
    "Ack",
    "Publication",
    "Error",
    "Ping",
    "Pong",
    "Close",
    "Presence",
    "PresenceResult",
    "PresenceDiff",
    "CLIENT_FRAMES",
    "SERVER_FRAMES",
    "validate_channel",
    "validate_data",
    "validate_key",
    "parse_client_frame",
    "parse_server_frame",
    "decode_client_message",
    "decode_server_message",
    "encode_frame",
    "encode_frames",
]

PROTOCOL_VERSION = 1
MAX_DATA_DEPTH = 64
#: ``last`` meaning "every publication the channel still keeps" (the clients' "all").
LAST_ALL = MAX_SAFE_INTEGER
#: Most publications one ``history`` read answers with, and how many by default.
MAX_HISTORY_LIMIT = 1000
DEFAULT_HISTORY_LIMIT = 100
_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1


def _is_int(value: Any) -> TypeGuard[int]:
    # bool is an int subclass in Python; on the wire it is not a number.
    return isinstance(value, int) and not isinstance(value, bool)


# --- frames ---------------------------------------------------------------------------


class Frame:
    """Base class of frames. ``type`` is the frame's name on the wire."""

    type: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        """The frame as a map ready for a codec."""
        raise NotImplementedError


@attrs.frozen
class Welcome(Frame):
    """First frame the server sends on every connection; proof that the transport works."""

    type: ClassVar[str] = "welcome"
    session: str
    ping_interval: float
    pong_timeout: float
    max_message_size: int
    version: int = PROTOCOL_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "version": self.version,
            "session": self.session,
            "ping_interval": self.ping_interval,
            "pong_timeout": self.pong_timeout,
            "max_message_size": self.max_message_size,
        }


@attrs.frozen
class Subscribe(Frame):
    """Ask for a channel's publications, resuming after ``since`` when given; ``last``
    replays at most that many of the latest kept publications first (when there is
    no ``since``, or its gap cannot be filled); with ``presence``, also for its
    ``presence_diff`` events (a presence channel)."""

    type: ClassVar[str] = "subscribe"
    id: int
    channel: str
    since: Position | None = None
    last: int | None = None
    presence: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "id": self.id, "channel": self.channel}
        if self.since is not None:
            wire["since"] = self.since.to_wire()
        if self.last is not None:
            wire["last"] = self.last
        if self.presence:
            wire["presence"] = True
        return wire


@attrs.frozen
class Subscribed(Frame):
    """Answer to ``subscribe``: the channel's current position and whether the gap
    after ``since`` was filled (the replayed publications follow this frame).

    ``id`` is None when the subscription was carried by the request itself (the SSE
    and long-polling transports), not by a ``subscribe`` frame, and when the server
    subscribed the client on its own (``server`` is True then: a server-side
    subscription, :meth:`rtlink.Hub.subscribe`; the client adds it to its own).
    ``since`` is set when replayed publications follow: they are every kept
    publication after it.
    """

    type: ClassVar[str] = "subscribed"
    id: int | None
    channel: str
    recovered: bool
    position: Position
    since: Position | None = None
    server: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        if self.id is not None:
            wire["id"] = self.id
        wire["channel"] = self.channel
        wire["recovered"] = self.recovered
        wire["position"] = self.position.to_wire()
        if self.since is not None:
            wire["since"] = self.since.to_wire()
        if self.server:
            wire["server"] = True
        return wire


@attrs.frozen
class History(Frame):
    """Read a page of a channel's kept history (answered by :class:`HistoryPage`).

    Forward (the default): at most ``limit`` publications after ``since`` (or from
    the oldest kept), oldest first. ``reverse``: at most ``limit`` before ``since``
    (or from the latest), newest first.
    """

    type: ClassVar[str] = "history"
    id: int
    channel: str
    since: Position | None = None
    limit: int = DEFAULT_HISTORY_LIMIT
    reverse: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "id": self.id, "channel": self.channel}
        if self.since is not None:
            wire["since"] = self.since.to_wire()
        wire["limit"] = self.limit
        if self.reverse:
            wire["reverse"] = True
        return wire


@attrs.frozen
class HistoryPage(Frame):
    """A page of a channel's history: the answer to :class:`History` (``id``), and
    what :meth:`rtlink.Hub.history` and :meth:`rtlink.Client.history` return
    (``id`` None there).

    Attributes:
        channel: the channel.
        publications: the page, in the order asked for (newest first when reversed).
        position: the channel's latest position.
        recovered: False when ``since`` was given but is not a position of the
            channel's current history (another epoch, past its end), or (forward) the
            publications right after it are gone: the page then starts from the
            oldest kept (forward) or the latest (reverse).
        id: the request's id.
    """

    type: ClassVar[str] = "history"
    channel: str
    publications: tuple[Publication, ...]
    position: Position
    recovered: bool
    id: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        if self.id is not None:
            wire["id"] = self.id
        wire["channel"] = self.channel
        wire["publications"] = [{"data": publication.data,
                                 "position": publication.position.to_wire()}
                                for publication in self.publications]
        wire["position"] = self.position.to_wire()
        wire["recovered"] = self.recovered
        return wire


@attrs.frozen
class Unsubscribe(Frame):
    """Stop receiving a channel's publications. Answered by ``ack``."""

    type: ClassVar[str] = "unsubscribe"
    id: int
    channel: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "channel": self.channel}


@attrs.frozen
class Unsubscribed(Frame):
    """The server ended a subscription on its own (:meth:`rtlink.Hub.unsubscribe`):
    the client drops it and tells the application. ``code`` is an
    :class:`~rtlink.codes.ErrorCode`-style number saying why (403: the application
    took the channel away)."""

    type: ClassVar[str] = "unsubscribed"
    channel: str
    code: int
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "channel": self.channel, "code": self.code,
                "reason": self.reason}


@attrs.frozen
class Publish(Frame):
    """Publish ``data`` to a channel. ``key`` makes retries idempotent."""

    type: ClassVar[str] = "publish"
    id: int
    channel: str
    data: Any
    key: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": self.type,
            "id": self.id,
            "channel": self.channel,
            "data": self.data,
        }
        if self.key is not None:
            wire["key"] = self.key
        return wire


@attrs.frozen
class Ack(Frame):
    """Success answer to a request; for ``publish`` it carries the assigned position."""

    type: ClassVar[str] = "ack"
    id: int
    position: Position | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "id": self.id}
        if self.position is not None:
            wire["position"] = self.position.to_wire()
        return wire


@attrs.frozen
class Publication(Frame):
    """One message of a channel, delivered to its subscribers."""

    type: ClassVar[str] = "publication"
    channel: str
    data: Any
    position: Position

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "channel": self.channel,
            "data": self.data,
            "position": self.position.to_wire(),
        }


@attrs.frozen
class Error(Frame):
    """Failure answer to the request ``id`` (or to no request when ``id`` is None)."""

    type: ClassVar[str] = "error"
    code: int
    message: str
    id: int | None = None
    channel: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.id is not None:
            wire["id"] = self.id
        if self.channel is not None:
            wire["channel"] = self.channel
        return wire


@attrs.frozen
class Ping(Frame):
    """Heartbeat; the receiver answers ``pong``."""

    type: ClassVar[str] = "ping"

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type}


@attrs.frozen
class Pong(Frame):
    """Answer to ``ping``."""

    type: ClassVar[str] = "pong"

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type}


@attrs.frozen
class Close(Frame):
    """The server ends the connection; ``code`` is a :class:`~rtlink.codes.CloseCode`."""

    type: ClassVar[str] = "close"
    code: int
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "code": self.code, "reason": self.reason}


@attrs.frozen
class Presence(Frame):
    """Ask who is in a presence channel; answered by :class:`PresenceResult`."""

    type: ClassVar[str] = "presence"
    id: int
    channel: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "channel": self.channel}


@attrs.frozen
class PresenceResult(Frame):
    """Who is in a channel: ``count`` members, at most :data:`~rtlink.presence.MAX_MEMBERS`
    of them listed in ``members``."""

    type: ClassVar[str] = "presence"
    id: int
    channel: str
    count: int
    members: tuple[Member, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "channel": self.channel,
                "count": self.count, "members": [m.to_wire() for m in self.members]}


@attrs.frozen
class PresenceDiff(Frame):
    """Members that joined and left a channel (see :class:`rtlink.presence.Diff`)."""

    type: ClassVar[str] = "presence_diff"
    channel: str
    count: int
    joins: tuple[Member, ...] = ()
    leaves: tuple[Member, ...] = ()
    truncated: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "channel": self.channel,
                                "count": self.count,
                                "joins": [m.to_wire() for m in self.joins],
                                "leaves": [m.to_wire() for m in self.leaves]}
        if self.truncated:
            wire["truncated"] = True
        return wire


# --- validation -----------------------------------------------------------------------


def validate_data(data: Any, request_id: int | None = None) -> Any:
    """Return ``data`` if every codec can carry it, else raise :class:`FrameError`.

    Publication data is any JSON value: null, booleans, integers from -2**63 to
    2**64-1, finite floats, strings, lists, and maps with string keys, nested at
    most 64 deep. Binary strings are refused so that JSON and msgpack subscribers of
    one channel receive the same value.
    """
    # This runs on every publish: exact types first (a type() lookup is cheaper than
    # a chain of isinstance), ASCII strings without the surrogate search; subclasses
    # (an IntEnum, a str subclass) take the general checks below.
    stack: list[tuple[Any, int]] = [(data, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        kind = type(value)
        if kind is str:
            if not value.isascii() and LONE_SURROGATE.search(value):
                raise FrameError("lone surrogates are not allowed in data", request_id=request_id)
            continue
        if kind is int:
            if not _INT_MIN <= value <= _UINT_MAX:
                raise FrameError("integer out of range in data", request_id=request_id)
            continue
        if kind is float:
            if value - value != 0.0:  # NaN or an infinity (inf - inf is NaN)
                raise FrameError("NaN and infinity are not allowed in data", request_id=request_id)
            continue
        if value is None or kind is bool:
            continue
        if depth > MAX_DATA_DEPTH and kind in (dict, list, tuple):
            raise FrameError(f"data nested deeper than {MAX_DATA_DEPTH}", request_id=request_id)
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str and not isinstance(key, str):
                    raise FrameError("map keys in data must be strings", request_id=request_id)
                if not key.isascii() and LONE_SURROGATE.search(key):
                    raise FrameError(
                        "lone surrogates are not allowed in data", request_id=request_id
                    )
                # The usual leaves, checked here rather than by a trip through the stack.
                item_kind = type(item)
                if item_kind is str:
                    if item.isascii():
                        continue
                elif item_kind is int:
                    if _INT_MIN <= item <= _UINT_MAX:
                        continue
                elif item_kind is float:
                    if item - item == 0.0:
                        continue
                elif item is None or item_kind is bool:
                    continue
                push((item, depth + 1))
        elif kind is list or kind is tuple:
            next_depth = depth + 1
            stack.extend([(item, next_depth) for item in value])
        else:
            _validate_subclass(value, depth, push, request_id)
    return data


def _validate_subclass(value: Any, depth: int, push: Any, request_id: int | None) -> None:
    """The checks of :func:`validate_data` for instances of subclasses of its types."""
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        if LONE_SURROGATE.search(value):
            raise FrameError("lone surrogates are not allowed in data", request_id=request_id)
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _UINT_MAX:
            raise FrameError("integer out of range in data", request_id=request_id)
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FrameError("NaN and infinity are not allowed in data", request_id=request_id)
        return
    if isinstance(value, list | tuple | dict) and depth > MAX_DATA_DEPTH:
        raise FrameError(f"data nested deeper than {MAX_DATA_DEPTH}", request_id=request_id)
    if isinstance(value, list | tuple):
        for item in value:
            push((item, depth + 1))
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FrameError("map keys in data must be strings", request_id=request_id)
            if LONE_SURROGATE.search(key):
                raise FrameError("lone surrogates are not allowed in data", request_id=request_id)
            push((item, depth + 1))
    else:
        raise FrameError(
            f"{type(value).__name__} values are not allowed in data", request_id=request_id
        )


def _request_id(raw: Mapping[str, Any], required: bool = True) -> int | None:
    value = raw.get("id")
    if value is None and not required:
        return None
    if not _is_int(value) or not 0 < value <= MAX_SAFE_INTEGER:
        raise FrameError("id must be an integer from 1 to 2**53-1")
    return int(value)


def _string(raw: Mapping[str, Any], field: str, request_id: int | None) -> Any:
    value = raw.get(field)
    if not isinstance(value, str) or LONE_SURROGATE.search(value):
        raise FrameError(f"{field} must be a string", request_id=request_id)
    return value


def _number(raw: Mapping[str, Any], field: str, request_id: int | None) -> Any:
    value = raw.get(field)
    if (not (isinstance(value, int | float) and not isinstance(value, bool)) or value < 0
            or (isinstance(value, float) and not math.isfinite(value))):
        raise FrameError(f"{field} must be a finite number >= 0", request_id=request_id)
    return value


def _parse_welcome(raw: Mapping[str, Any]) -> Welcome:
    version = raw.get("version")
    if not _is_int(version):
        raise FrameError("version must be an integer")
    size = raw.get("max_message_size")
    if not _is_int(size) or size <= 0:
        raise FrameError("max_message_size must be a positive integer")
    return Welcome(
        session=_string(raw, "session", None),
        ping_interval=_number(raw, "ping_interval", None),
        pong_timeout=_number(raw, "pong_timeout", None),
        max_message_size=size,
        version=version,
    )


def _position(raw: Mapping[str, Any], field: str, rid: int | None) -> Position | None:
    value = raw.get(field)
    return None if value is None else Position.from_wire(value, rid)


def _flag(raw: Mapping[str, Any], field: str, request_id: int | None) -> bool:
    value = raw.get(field)
    if value is None:  # absent and null are the same (protocol.md 5)
        return False
    if not isinstance(value, bool):
        raise FrameError(f"{field} must be a boolean", request_id=request_id)
    return value


def _count(raw: Mapping[str, Any], request_id: int | None) -> int:
    value = raw.get("count")
    if not _is_int(value) or not 0 <= value <= MAX_SAFE_INTEGER:
        raise FrameError("count must be an integer >= 0", request_id=request_id)
    return value


def _members(raw: Mapping[str, Any], field: str, request_id: int | None) -> tuple[Member, ...]:
    value = raw.get(field)
    if not isinstance(value, list):
        raise FrameError(f"{field} must be a list of members", request_id=request_id)
    try:
        return tuple(Member.from_wire(item) for item in value)
    except FrameError as exc:
        raise FrameError(str(exc), request_id=request_id) from None


def _parse_subscribe(raw: Mapping[str, Any]) -> Subscribe:
    rid = _request_id(raw)
    channel = validate_channel(raw.get("channel"), rid)
    since = raw.get("since")
    if isinstance(since, Mapping) and "epoch" not in since and "offset" not in since:
        # As in cursors (protocol.md 4.2): a map without a position is none. (The JS
        # client's tab sharing passes a tab's cursor entry {"presence": true} on.)
        since = None
    return Subscribe(rid, channel,  # type: ignore[arg-type]
                     None if since is None else Position.from_wire(since, rid),
                     validate_last(raw.get("last"), rid), _flag(raw, "presence", rid))


def _parse_presence(raw: Mapping[str, Any]) -> Presence:
    rid = _request_id(raw)
    return Presence(rid, validate_channel(raw.get("channel"), rid))  # type: ignore[arg-type]


def _parse_presence_result(raw: Mapping[str, Any]) -> PresenceResult:
    rid = _request_id(raw)
    return PresenceResult(rid, validate_channel(raw.get("channel"), rid), _count(raw, rid),  # type: ignore[arg-type]
                          _members(raw, "members", rid))


def _parse_presence_diff(raw: Mapping[str, Any]) -> PresenceDiff:
    return PresenceDiff(validate_channel(raw.get("channel")), _count(raw, None),
                        _members(raw, "joins", None), _members(raw, "leaves", None),
                        _flag(raw, "truncated", None))


def _parse_subscribed(raw: Mapping[str, Any]) -> Subscribed:
    rid = _request_id(raw, required=False)
    recovered = raw.get("recovered")
    if not isinstance(recovered, bool):
        raise FrameError("recovered must be a boolean", request_id=rid)
    return Subscribed(
        rid,
        validate_channel(raw.get("channel"), rid),
        recovered,
        Position.from_wire(raw.get("position"), rid),
        _position(raw, "since", rid),
        _flag(raw, "server", rid),
    )


def _parse_history(raw: Mapping[str, Any]) -> History:
    rid = _request_id(raw)
    channel = validate_channel(raw.get("channel"), rid)
    limit = raw.get("limit", DEFAULT_HISTORY_LIMIT)
    if limit is None:
        limit = DEFAULT_HISTORY_LIMIT
    if not _is_int(limit) or not 0 < limit <= MAX_HISTORY_LIMIT:
        raise FrameError(f"limit must be an integer from 1 to {MAX_HISTORY_LIMIT}",
                         request_id=rid)
    return History(rid, channel, _position(raw, "since", rid), limit,  # type: ignore[arg-type]
                   _flag(raw, "reverse", rid))


def _parse_history_page(raw: Mapping[str, Any]) -> HistoryPage:
    rid = _request_id(raw, required=False)
    channel = validate_channel(raw.get("channel"), rid)
    items = raw.get("publications")
    if not isinstance(items, list):
        raise FrameError("publications must be a list", request_id=rid)
    publications = []
    for item in items:
        if not isinstance(item, Mapping) or "data" not in item:
            raise FrameError("a publication of a page needs data and position",
                             request_id=rid)
        publications.append(Publication(channel, item["data"],
                                        Position.from_wire(item.get("position"), rid)))
    recovered = raw.get("recovered")
    if not isinstance(recovered, bool):
        raise FrameError("recovered must be a boolean", request_id=rid)
    return HistoryPage(channel, tuple(publications),
                       Position.from_wire(raw.get("position"), rid), recovered, rid)


def _code_and_reason(raw: Mapping[str, Any]) -> tuple[int, str]:
    """The ``code`` and ``reason`` of a ``close`` or ``unsubscribed`` frame."""
    code = raw.get("code")
    if not _is_int(code):
        raise FrameError("code must be an integer")
    reason = raw.get("reason")
    if reason is None:  # absent and null alike (protocol.md 5)
        reason = ""
    if not isinstance(reason, str):
        raise FrameError("reason must be a string")
    return code, reason


def _parse_unsubscribed(raw: Mapping[str, Any]) -> Unsubscribed:
    code, reason = _code_and_reason(raw)
    return Unsubscribed(validate_channel(raw.get("channel")), code, reason)


def _parse_unsubscribe(raw: Mapping[str, Any]) -> Unsubscribe:
    rid = _request_id(raw)
    return Unsubscribe(rid, validate_channel(raw.get("channel"), rid))  # type: ignore[arg-type]


def _parse_publish(raw: Mapping[str, Any]) -> Publish:
    rid = _request_id(raw)
    channel = validate_channel(raw.get("channel"), rid)
    if "data" not in raw:
        raise FrameError("publish needs data", request_id=rid)
    key = validate_key(raw.get("key"), rid)
    return Publish(rid, channel, validate_data(raw["data"], rid), key)  # type: ignore[arg-type]


def _parse_ack(raw: Mapping[str, Any]) -> Ack:
    rid = _request_id(raw)
    position = raw.get("position")
    return Ack(rid, None if position is None else Position.from_wire(position, rid))  # type: ignore[arg-type]


def _parse_publication(raw: Mapping[str, Any]) -> Publication:
    if "data" not in raw:
        raise FrameError("publication needs data")
    return Publication(
        validate_channel(raw.get("channel")),
        raw["data"],
        Position.from_wire(raw.get("position")),
    )


def _parse_error(raw: Mapping[str, Any]) -> Error:
    rid = _request_id(raw, required=False)
    code = raw.get("code")
    if not _is_int(code):
        raise FrameError("code must be an integer", request_id=rid)
    channel = raw.get("channel")
    return Error(
        code,
        _string(raw, "message", rid),
        rid,
        None if channel is None else validate_channel(channel, rid),
    )


def _parse_close(raw: Mapping[str, Any]) -> Close:
    return Close(*_code_and_reason(raw))


_Parser: TypeAlias = Callable[[Mapping[str, Any]], Frame]

#: Frames a client may send, by type, with their parsers.
CLIENT_FRAMES: dict[str, _Parser] = {
    "subscribe": _parse_subscribe,
    "history": _parse_history,
    "unsubscribe": _parse_unsubscribe,
    "publish": _parse_publish,
    "presence": _parse_presence,
    "ping": lambda raw: Ping(),
    "pong": lambda raw: Pong(),
}

#: Frames a server may send, by type, with their parsers.
SERVER_FRAMES: dict[str, _Parser] = {
    "welcome": _parse_welcome,
    "subscribed": _parse_subscribed,
    "history": _parse_history_page,
    "unsubscribed": _parse_unsubscribed,
    "ack": _parse_ack,
    "publication": _parse_publication,
    "error": _parse_error,
    "presence": _parse_presence_result,
    "presence_diff": _parse_presence_diff,
    "ping": lambda raw: Ping(),
    "pong": lambda raw: Pong(),
    "close": _parse_close,
}


def _parse(raw: Any, parsers: Mapping[str, _Parser]) -> Frame:
    if not isinstance(raw, Mapping):
        # Not even a frame: nothing to answer to, the message is garbage.
        raise ProtocolError("a frame must be a map")
    frame_type = raw.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError("a frame needs a string 'type'")
    parser = parsers.get(frame_type)
    if parser is None:
        rid = raw.get("id")
        raise FrameError(
            f"unknown frame type {frame_type[:32]!r}",
            ErrorCode.BAD_REQUEST,
            rid if _is_int(rid) and 0 < rid <= MAX_SAFE_INTEGER else None,
        )
    return parser(raw)


def parse_client_frame(raw: Any) -> Frame:
    """Validate one decoded value as a frame sent by a client.

    Raises:
        ProtocolError: the value is not a frame at all (close with 1007).
        FrameError: the frame is invalid; answer with an ``error`` frame.
    """
    return _parse(raw, CLIENT_FRAMES)


def parse_server_frame(raw: Any) -> Frame:
    """Validate one decoded value as a frame sent by a server (see :func:`parse_client_frame`)."""
    return _parse(raw, SERVER_FRAMES)


def decode_client_message(codec: Codec, message: bytes | str) -> list[Frame | FrameError]:
    """Decode a transport message from a client into frames.

    Invalid frames come back as :class:`FrameError` values in their place, so that the
    valid frames of the batch are still handled and each invalid one is answered.

    Raises:
        ProtocolError: the message is not decodable at all (close with 1007).
    """
    return _decode(codec, message, parse_client_frame)


def decode_server_message(codec: Codec, message: bytes | str) -> list[Frame | FrameError]:
    """Decode a transport message from a server into frames (see :func:`decode_client_message`)."""
    return _decode(codec, message, parse_server_frame)


def _decode(
    codec: Codec, message: bytes | str, parse: Callable[[Any], Frame]
) -> list[Frame | FrameError]:
    frames: list[Frame | FrameError] = []
    for raw in codec.decode(message):
        try:
            frames.append(parse(raw))
        except FrameError as exc:
            frames.append(exc)
    return frames


def encode_frame(codec: Codec, frame: Frame) -> bytes:
    """Encode one frame with ``codec``."""
    if type(frame) is Publication:
        position = frame.position
        return codec.encode_publication(frame.channel, frame.data, position.epoch,
                                        position.offset)
    return codec.encode(frame.to_wire())


def encode_frames(codec: Codec, frames: list[Frame]) -> bytes:
    """Encode several frames as one transport message."""
    return codec.join(codec.encode(frame.to_wire()) for frame in frames)

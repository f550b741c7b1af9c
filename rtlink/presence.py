"""Presence values, without I/O: who a member is, and how join/leave events coalesce.

A channel whose :class:`~rtlink.channels.ChannelOptions` say ``presence=True`` keeps
the set of its subscribers (docs/protocol.md 6.8): each is a :class:`Member`, keyed by
its client id and user. The hub's :mod:`rtlink.roster` keeps this node's members in
the backend; the backend announces every join and leave once (to every node); each
node gathers those of a channel for :data:`DIFF_INTERVAL` in a :class:`DiffBuffer`
and sends one ``presence_diff`` to the subscribers that asked for events — or, when
more than :data:`MAX_DIFF` members changed, a truncated one that only says the count
(a reconnect storm of N members then costs each subscriber a few frames, not N).

Pure: no asyncio, plain values, tested with plain calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import FrameError

__all__ = [
    "MAX_INFO_BYTES",
    "MAX_MEMBERS",
    "MAX_DIFF",
    "DIFF_INTERVAL",
    "MAX_DIFF_INTERVAL",
    "Member",
    "PresenceInfo",
    "is_session_id",
    "Diff",
    "DiffBuffer",
]

#: The largest ``info`` of a member, in bytes of compact JSON; a larger one is left out.
MAX_INFO_BYTES = 1024
#: The most members a ``presence`` answer lists (its ``count`` is the whole number).
MAX_MEMBERS = 1000
#: The most members one ``presence_diff`` names; a larger change is sent truncated.
MAX_DIFF = 100
#: Seconds a node gathers a channel's joins and leaves before it sends them.
DIFF_INTERVAL = 0.25
#: While a channel's diffs are truncated (a storm), its interval doubles up to this.
MAX_DIFF_INTERVAL = 4.0

#: Session ids a client may carry over to its next HTTP request (``session`` parameter).
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def is_session_id(text: str | None) -> bool:
    """Whether ``text`` may be a session id (1-64 of ``A-Z a-z 0-9 _ -``)."""
    return text is not None and _SESSION_ID.match(text) is not None


@attrs.frozen
class Member:
    """One client present in a channel.

    Attributes:
        client: the client's session id (the ``session`` of its ``welcome``; kept
            across the requests of an HTTP transport, see protocol.md 6.8).
        user: the subject of its identity (:func:`rtlink.auth.subject_of`), or None.
        info: the ``info`` claim of its identity (at most :data:`MAX_INFO_BYTES`), or None.
    """

    client: str
    user: str | None = None
    info: Any = None

    @property
    def key(self) -> str:
        """What identifies the member in its channel: the client id and the user.

        The user is part of it so that a client claiming another's session id (it is
        no secret) can only ever stand for itself, never replace someone else.
        """
        return self.client if self.user is None else f"{self.client} {self.user}"

    def to_wire(self) -> dict[str, Any]:
        """The member as frames carry it: ``{"client", "user", "info"}``."""
        return {"client": self.client, "user": self.user, "info": self.info}

    @classmethod
    def from_wire(cls, value: Any) -> Member:
        """Read a member map (extra fields are ignored).

        Raises:
            FrameError: not a map with a string ``client`` and a string or null ``user``.
        """
        if not isinstance(value, Mapping):
            raise FrameError("a member must be a map")
        client, user = value.get("client"), value.get("user")
        if not isinstance(client, str) or not (user is None or isinstance(user, str)):
            raise FrameError("a member needs a string client and a string or null user")
        return cls(client, user, value.get("info"))

    def encode(self) -> str:
        """Compact JSON, as backends store it."""
        return json.dumps(self.to_wire(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, text: str | bytes) -> Member:
        """The member :meth:`encode` wrote."""
        return cls.from_wire(json.loads(text))


@attrs.frozen
class PresenceInfo:
    """Who is in a channel (:meth:`rtlink.Hub.presence`, :meth:`rtlink.client.Client.presence`).

    Attributes:
        channel: the channel.
        count: how many members it has (on every node).
        members: at most the ``limit`` asked for of them.
    """

    channel: str
    count: int
    members: tuple[Member, ...]


@attrs.frozen
class Diff:
    """What changed in a channel's presence during one interval.

    Attributes:
        channel: the channel.
        joins: members that joined (or joined again, e.g. with new info).
        leaves: members that left.
        count: the channel's member count after the changes (as last announced).
        truncated: too many changed to list: ``joins`` and ``leaves`` are empty, read
            the presence again if the list matters.
    """

    channel: str
    joins: tuple[Member, ...]
    leaves: tuple[Member, ...]
    count: int
    truncated: bool = False


class DiffBuffer:
    """The joins and leaves of one channel announced since its last diff.

    Only the last event of each member counts: a member that joined and left within
    one interval is sent as a leave (the receiver ignores a leave of someone it never
    saw), one that left and came back as a join.
    """

    __slots__ = ("channel", "_events", "_count")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._events: dict[str, tuple[bool, Member]] = {}
        self._count = 0

    def __bool__(self) -> bool:
        return bool(self._events)

    def add(self, joins: Iterable[Member], leaves: Iterable[Member], count: int) -> None:
        """Record announced joins and leaves, and the count after them."""
        events = self._events
        for member in leaves:
            events.pop(member.key, None)  # re-inserted last: the latest event wins
            events[member.key] = (False, member)
        for member in joins:
            events.pop(member.key, None)
            events[member.key] = (True, member)
        self._count = count

    def take(self, limit: int = MAX_DIFF) -> Diff:
        """The diff of what was recorded (truncated beyond ``limit`` members); empties
        the buffer."""
        events, self._events = self._events, {}
        if len(events) > limit:
            return Diff(self.channel, (), (), self._count, truncated=True)
        joins = tuple(member for joined, member in events.values() if joined)
        leaves = tuple(member for joined, member in events.values() if not joined)
        return Diff(self.channel, joins, leaves, self._count)

"""The client's outbox: publishes not yet acknowledged by the server, in order.

A publish enters the outbox when the application calls ``publish`` and leaves it when
the server acknowledges it (or refuses it for good). While the client is offline, or
after a connection dropped with a publish in flight, the entry waits here and is sent
again on reconnect with the same idempotency key, so the server applies it once.

The outbox is bounded. When it is full, ``publish`` fails at once with
:class:`~rtlink.errors.OutboxFull`: the application learns about the backlog when it
happens instead of losing old messages silently.

Pure: an entry's result is anything future-like (an asyncio future in the client, a
``concurrent.futures.Future`` in tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from ..errors import InvalidInput, OutboxFull
from ..positions import Position

__all__ = ["Outbox", "OutboxEntry", "Result"]


class Result(Protocol):
    """Where the outcome of a publish goes: a future's setters."""

    def done(self) -> bool:
        """Whether the outcome is set already."""

    def set_result(self, result: Position, /) -> None:
        """The publish was acknowledged at ``result``."""

    def set_exception(self, exception: BaseException, /) -> None:
        """The publish failed."""


class OutboxEntry:
    """One publish waiting for its acknowledgement.

    Attributes:
        channel: the channel to publish to.
        data: the data to publish.
        key: the idempotency key, the same on every attempt.
        future: resolved with the :class:`~rtlink.positions.Position` on ack.
        request_id: id of the attempt in flight on the current connection, or None
            when the entry is waiting to be sent.
    """

    __slots__ = ("channel", "data", "key", "future", "request_id")

    def __init__(self, channel: str, data: Any, key: str, future: Result) -> None:
        self.channel = channel
        self.data = data
        self.key = key
        self.future = future
        self.request_id: int | None = None

    def settle(self, error: BaseException | None, position: Position | None = None) -> None:
        """Give the publish its outcome (once; later calls do nothing).

        Args:
            error: why it failed, or None if it succeeded.
            position: where it was published, when it succeeded.
        """
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        elif position is not None:
            self.future.set_result(position)


class Outbox:
    """Bounded, ordered store of :class:`OutboxEntry` objects, keyed by idempotency key."""

    def __init__(self, limit: int = 1000) -> None:
        if limit < 1:
            raise InvalidInput("outbox limit must be >= 1")
        self.limit = limit
        self._entries: dict[str, OutboxEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[OutboxEntry]:
        return iter(list(self._entries.values()))

    def add(self, entry: OutboxEntry) -> None:
        """Append an entry.

        Raises:
            OutboxFull: the outbox holds ``limit`` entries already.
            InvalidInput: an entry with the same key is already waiting.
        """
        if len(self._entries) >= self.limit:
            raise OutboxFull(f"outbox is full ({self.limit} publishes waiting for the server)")
        if entry.key in self._entries:
            raise InvalidInput(f"a publish with key {entry.key!r} is already waiting")
        self._entries[entry.key] = entry

    def remove(self, entry: OutboxEntry) -> None:
        """Remove an entry if it is still there."""
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]

    def unsent(self) -> list[OutboxEntry]:
        """Entries with no attempt in flight, oldest first."""
        return [entry for entry in self._entries.values() if entry.request_id is None]

    def reset_attempts(self) -> None:
        """Forget in-flight attempts (the connection is gone): everything is unsent again."""
        for entry in self._entries.values():
            entry.request_id = None

"""The client's outbox: publishes not yet acknowledged by the server, in order.

A publish enters the outbox when the application calls ``publish`` and leaves it when
the server acknowledges it (or refuses it for good). While the client is offline, or
after a connection dropped with a publish in flight, the entry waits here and is sent
again on reconnect with the same idempotency key, so the server applies it once.

The outbox is bounded. When it is full, ``publish`` fails at once with
:class:`~rtlink.errors.OutboxFull`: the application learns about the backlog when it
happens instead of losing old messages silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from ..errors import OutboxFull
from ..protocol import Position

__all__ = ["Outbox", "OutboxEntry"]


class OutboxEntry:
    """One publish waiting for its acknowledgement.

    Attributes:
        channel: the channel to publish to.
        data: the data to publish.
        key: the idempotency key, the same on every attempt.
        future: resolved with the :class:`~rtlink.protocol.Position` on ack.
        request_id: id of the attempt in flight on the current connection, or None
            when the entry is waiting to be sent.
    """

    __slots__ = ("channel", "data", "key", "future", "request_id")

    def __init__(self, channel: str, data: Any, key: str, future: asyncio.Future[Position]) -> None:
        self.channel = channel
        self.data = data
        self.key = key
        self.future = future
        self.request_id: int | None = None


class Outbox:
    """Bounded, ordered store of :class:`OutboxEntry` objects, keyed by idempotency key."""

    def __init__(self, limit: int = 1000) -> None:
        if limit < 1:
            raise ValueError("outbox limit must be >= 1")
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
            ValueError: an entry with the same key is already waiting.
        """
        if len(self._entries) >= self.limit:
            raise OutboxFull(f"outbox is full ({self.limit} publishes waiting for the server)")
        if entry.key in self._entries:
            raise ValueError(f"a publish with key {entry.key!r} is already waiting")
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

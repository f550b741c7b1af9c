"""The backend contract: what a hub needs from the engine that stores and routes publications.

A backend owns three things and nothing else (no HTTP, no connections):

* **positions** — :meth:`Backend.publish` gives each publication the next offset of its
  channel and the channel's epoch, atomically with storing it in history and with
  de-duplication by idempotency key;
* **history** — :meth:`Backend.history` returns what follows a position, or says the
  gap cannot be filled;
* **node fan-in** — between :meth:`Backend.subscribe` and :meth:`Backend.unsubscribe`
  of a channel, every publication of that channel, from any node, is handed to the
  listener given to :meth:`Backend.start`, in offset order, exactly once. A backend
  that cannot keep that promise for a while (a network engine whose connection
  dropped, whose history was lost meanwhile) says so by calling the ``on_lost``
  listener with the channel before it hands over anything that follows the gap.

Epochs are per channel: a channel's stream gets a fresh random epoch whenever its
history is created anew (first publish, backend restart, expired stream), so a client
position from a lost history can never be mistaken for a position in the new one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import attrs

from ..protocol import Position, Publication

__all__ = [
    "Backend",
    "HistoryPolicy",
    "PublishResult",
    "HistoryResult",
    "PublicationListener",
    "LostListener",
]

#: Called by the backend for each publication of a subscribed channel.
PublicationListener = Callable[[Publication], None]
#: Called by the backend with a subscribed channel whose publications it could not all
#: deliver (they are gone from history); its subscribers must resubscribe.
LostListener = Callable[[str], None]


@attrs.frozen
class HistoryPolicy:
    """How much history a channel keeps, and how long publish keys are remembered.

    Attributes:
        size: at most this many latest publications are kept (0 keeps none).
        ttl: seconds a publication stays in history.
        key_ttl: seconds an idempotency key is remembered for de-duplication.
    """

    size: int = 100
    ttl: float = 300.0
    key_ttl: float = 600.0


@attrs.frozen
class PublishResult:
    """What :meth:`Backend.publish` did.

    Attributes:
        position: the position of the publication (the original one for a duplicate).
        duplicate: True when the key was seen before and nothing was published.
    """

    position: Position
    duplicate: bool = False


@attrs.frozen
class HistoryResult:
    """The answer of :meth:`Backend.history`.

    Attributes:
        publications: the publications after ``since``, oldest first (empty unless
            ``recovered``).
        position: the channel's latest position (offset 0 if nothing was published in
            this epoch).
        recovered: True when every publication after ``since`` is in ``publications``.
    """

    publications: list[Publication]
    position: Position
    recovered: bool


class Backend(abc.ABC):
    """Base class of backends. Subclass it to plug in another engine.

    All methods are coroutines so that network backends fit; a backend is used from
    one event loop.
    """

    @abc.abstractmethod
    async def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Connect, and from now on hand publications of subscribed channels to ``listener``.

        ``on_lost(channel)`` is called when publications of a subscribed channel could
        not be delivered and cannot be recovered from history either (a backend that
        never loses any, like the memory backend, never calls it).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource. The backend is not used afterwards."""

    @abc.abstractmethod
    async def publish(
        self, channel: str, data: object, *, key: str | None, policy: HistoryPolicy
    ) -> PublishResult:
        """Assign the next position, store in history, and deliver to every node.

        When ``key`` was already used on this channel within ``policy.key_ttl``,
        nothing is published and the earlier position is returned with
        ``duplicate=True``.

        Raises:
            BackendUnavailable: the engine cannot be reached; nothing was published.
        """

    @abc.abstractmethod
    async def history(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy
    ) -> HistoryResult:
        """Return the publications after ``since`` and the channel's current position.

        ``since=None`` asks only for the current position (``recovered`` is True).
        The gap is filled (``recovered=True``) only when ``since`` is in the channel's
        current epoch, not past its latest offset, and every publication after it is
        still in history; otherwise ``recovered=False`` and no publications.

        Raises:
            BackendUnavailable: the engine cannot be reached.
        """

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start handing this channel's publications to the listener (node level)."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop handing this channel's publications to the listener."""

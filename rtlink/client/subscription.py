"""A client's subscription to one channel: its position, its messages, its events.

The application's side of a subscription: iteration, callbacks, waiting for the
confirmation. What the server's frames mean for it (its position, whether a
publication is new) is decided by :class:`~rtlink.client.core.ClientCore`, which calls
the underscored methods here (:class:`~rtlink.client.core.SubscriptionState`).
Constructing one needs no running event loop. :class:`Message` and
:class:`SubscribedEvent` come from the core and are importable from here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import ClientClosed, RtlinkError, SubscribeError
from ..positions import Position
from ..presence import Diff
from .core import Message, SubscribedEvent, UnsubscribedEvent
from .events import Events

__all__ = ["Subscription", "Message", "SubscribedEvent", "UnsubscribedEvent"]


_END = object()


class Subscription:
    """Messages of one channel, resumed across reconnects without loss or duplicates.

    Iterate it (``async for message in sub``) or register callbacks with :meth:`on`.
    Use ``async with client.subscribe(channel) as sub:`` to wait for the first
    confirmation and to unsubscribe at the end.

    Args:
        channel: the channel.
        since: the position to resume after, or None to start from now.
        last: replay at most this many of the latest publications the channel keeps
            first (when there is no ``since``, or its gap cannot be filled), or None.
        unsubscribe: called with the subscription by :meth:`unsubscribe` (the client
            core's :meth:`~rtlink.client.core.ClientCore.unsubscribe`).
        presence: ask for the channel's presence events.

    Attributes:
        channel: the channel.
        position: the position of the last message delivered (or of the channel when
            the subscription was confirmed); the client resumes after it.
        recovered: the ``recovered`` flag of the latest confirmation.
        last: what the subscription was asked for with (sent on every resubscribe: it
            bounds the replay when a gap cannot be filled).
        request_id: the id of the subscribe request in flight, if any (the core's).
        active: whether it is confirmed on the current connection (the core's).
        held: whether it was refused for now and waits, out of the cursor, for its
            retry (the core's).
        presence: whether it asks for the channel's presence events.
    """

    def __init__(self, channel: str, since: Position | None,
                 unsubscribe: Callable[[Subscription], None], last: int | None = None, *,
                 presence: bool = False) -> None:
        self.channel = channel
        self.presence = presence
        self.position: Position | None = since
        self.last = last
        self.recovered = True
        self._unsubscribe = unsubscribe
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._events = Events("subscription", ("message", "subscribed", "unsubscribed",
                                               "error", "presence"))
        # Set by the first confirmation, or by an end before it (then with _error).
        self._settled = asyncio.Event()
        self._error: RtlinkError | None = None
        self._ended = False
        self.request_id: int | None = None  # set while a subscribe request is in flight
        self.active = False  # confirmed on the current connection
        self.held = False  # refused for now: left out of the cursor until the retry

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} at {self.position}>"

    # --- application API -------------------------------------------------------------

    def on(self, event: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback`` on ``"message"`` (a :class:`Message`), ``"subscribed"``
        (a :class:`SubscribedEvent`), ``"unsubscribed"`` (an :class:`UnsubscribedEvent`:
        the server ended the subscription; iteration then ends), ``"error"`` (an
        exception) or ``"presence"`` (a :class:`~rtlink.presence.Diff`: members that
        joined and left, the count, and ``truncated`` when too many changed to list:
        call :meth:`~rtlink.client.Client.presence` if the list matters). Returns a
        function that removes the callback."""
        return self._events.on(event, callback)

    async def wait_subscribed(self) -> None:
        """Wait until the server confirmed the subscription once.

        Raises:
            SubscribeError: the server refused it.
            ClientClosed: the client stopped first.
        """
        await self._settled.wait()
        if self._error is not None:
            raise self._error

    async def unsubscribe(self) -> None:
        """Stop the subscription; iteration ends after the messages already received."""
        self._unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        await self.wait_subscribed()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.unsubscribe()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # keep ending for later calls too
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)
            raise item
        message: Message = item
        return message

    # --- driven by the client's core ---------------------------------------------------

    def _confirm(self, event: SubscribedEvent) -> None:
        """The server confirmed the subscription (the core updated its state)."""
        self._settled.set()
        self._events.emit("subscribed", event)

    def _deliver(self, message: Message) -> None:
        """A new publication (the core checked that it is one and moved the position)."""
        self._queue.put_nowait(message)
        self._events.emit("message", message)

    def _presence(self, diff: Diff) -> None:
        """A ``presence_diff`` of the channel (the core checked that it asked)."""
        self._events.emit("presence", diff)

    def _settle(self, error: RtlinkError) -> None:
        """Fail a wait for the first confirmation that has not come (nothing if it has)."""
        if not self._settled.is_set():
            self._error = error
            self._settled.set()

    def _fail(self, error: RtlinkError) -> None:
        """End the subscription with an error (refused, or the client stopped)."""
        if self._ended:
            return
        self._ended = True
        self.active = False
        self._settle(error)
        if isinstance(error, SubscribeError):
            self._events.emit("error", error)
            self._queue.put_nowait(error)
        elif isinstance(error, ClientClosed):
            self._queue.put_nowait(_END)

    def _unsubscribed(self, event: UnsubscribedEvent) -> None:
        """The server ended the subscription (the core dropped it already)."""
        self._events.emit("unsubscribed", event)
        self._end()

    def _end(self) -> None:
        """End the subscription normally (unsubscribed)."""
        if self._ended:
            return
        self._ended = True
        self.active = False
        self._settle(RtlinkError("unsubscribed before the server confirmed"))
        self._queue.put_nowait(_END)

"""A client's subscription to one channel: its position, its messages, its events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ClientClosed, RtlinkError, SubscribeError
from ..protocol import Position, Publication
from .events import Events

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Subscription", "Message", "SubscribedEvent"]

logger = logging.getLogger("rtlink.client")


@attrs.frozen
class Message:
    """One publication delivered to the application.

    Attributes:
        channel: the channel it was published to.
        data: the published value.
        position: its position; pass it as ``since`` to resume after it later.
    """

    channel: str
    data: Any
    position: Position


@attrs.frozen
class SubscribedEvent:
    """Emitted as ``"subscribed"`` each time the server confirms the subscription.

    Attributes:
        recovered: False when the client asked to resume but the server could not
            fill the gap (history window exceeded or history lost): messages were
            missed and the application should re-sync. True otherwise.
        resumed: whether the client asked to resume from a position.
        position: the channel's position when the subscription was confirmed.
    """

    recovered: bool
    resumed: bool
    position: Position


_END = object()


class Subscription:
    """Messages of one channel, resumed across reconnects without loss or duplicates.

    Iterate it (``async for message in sub``) or register callbacks with :meth:`on`.
    Use ``async with client.subscribe(channel) as sub:`` to wait for the first
    confirmation and to unsubscribe at the end.

    Attributes:
        channel: the channel.
        position: the position of the last message delivered (or of the channel when
            the subscription was confirmed); the client resumes after it.
        recovered: the ``recovered`` flag of the latest confirmation.
    """

    def __init__(self, client: Client, channel: str, since: Position | None) -> None:
        self.channel = channel
        self.position: Position | None = since
        self.recovered = True
        self._client = client
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._events = Events("subscription", ("message", "subscribed", "error"))
        self._confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ended = False
        self.request_id: int | None = None  # set while a subscribe request is in flight
        self.active = False  # confirmed on the current connection
        self.held = False  # refused for now: left out of the cursor until the retry

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} at {self.position}>"

    # --- application API -------------------------------------------------------------

    def on(self, event: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback`` on ``"message"`` (a :class:`Message`), ``"subscribed"``
        (a :class:`SubscribedEvent`) or ``"error"`` (an exception). Returns a function
        that removes the callback."""
        return self._events.on(event, callback)

    async def wait_subscribed(self) -> None:
        """Wait until the server confirmed the subscription once.

        Raises:
            SubscribeError: the server refused it.
            ClientClosed: the client stopped first.
        """
        await asyncio.shield(self._confirmed)

    async def unsubscribe(self) -> None:
        """Stop the subscription; iteration ends after the messages already received."""
        await self._client._unsubscribe(self)

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

    # --- driven by the client ----------------------------------------------------------

    def _confirm(self, recovered: bool, position: Position, resumed: bool) -> None:
        self.active = True
        self.request_id = None
        self.recovered = recovered
        # Recovered: replayed messages follow and move the position on. Otherwise the
        # gap is lost for good: continue from the channel's current position.
        if not resumed or not recovered:
            self.position = position
        if not self._confirmed.done():
            self._confirmed.set_result(None)
        self._events.emit("subscribed", SubscribedEvent(recovered, resumed, position))

    def _deliver(self, publication: Publication) -> None:
        position = publication.position
        current = self.position
        if current is not None and position.epoch == current.epoch:
            if position.offset <= current.offset:
                return  # already delivered: the seam between replay and live
        elif current is not None and position.offset != 1:
            logger.warning("channel %s: history epoch changed from %s to %s mid-stream",
                           self.channel, current.epoch, position.epoch)
        self.position = position
        message = Message(publication.channel, publication.data, position)
        self._queue.put_nowait(message)
        self._events.emit("message", message)

    def _fail(self, error: RtlinkError) -> None:
        """End the subscription with an error (refused, or the client stopped)."""
        if self._ended:
            return
        self._ended = True
        self.active = False
        if not self._confirmed.done():
            self._confirmed.set_exception(error)
            self._confirmed.exception()  # retrieved: no "never retrieved" warning
        if isinstance(error, SubscribeError):
            self._events.emit("error", error)
            self._queue.put_nowait(error)
        elif isinstance(error, ClientClosed):
            self._queue.put_nowait(_END)

    def _end(self) -> None:
        """End the subscription normally (unsubscribed)."""
        if self._ended:
            return
        self._ended = True
        self.active = False
        if not self._confirmed.done():
            self._confirmed.set_exception(RtlinkError("unsubscribed before the server confirmed"))
            self._confirmed.exception()  # retrieved: no "never retrieved" warning
        self._queue.put_nowait(_END)

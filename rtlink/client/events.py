"""Named-event callbacks, shared by the client and its subscriptions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInput

__all__ = ["Events"]

logger = logging.getLogger("rtlink.client")


class Events:
    """Callbacks registered by event name; a failing callback is logged, not raised."""

    def __init__(self, owner: str, names: tuple[str, ...]) -> None:
        self._owner = owner
        self._callbacks: dict[str, list[Callable[[Any], None]]] = {name: [] for name in names}

    def on(self, event: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Register ``callback`` for ``event``; return a function that removes it.

        Raises:
            InvalidInput: ``event`` is not one of the names this emitter knows.
        """
        callbacks = self._callbacks.get(event)
        if callbacks is None:
            raise InvalidInput(f"unknown {self._owner} event {event!r}; "
                             f"known: {', '.join(self._callbacks)}")
        callbacks.append(callback)
        return lambda: callbacks.remove(callback) if callback in callbacks else None

    def emit(self, event: str, value: Any) -> None:
        """Call every callback of ``event`` with ``value``."""
        for callback in list(self._callbacks[event]):
            try:
                callback(value)
            except Exception:
                logger.exception("%s %s callback failed", self._owner, event)

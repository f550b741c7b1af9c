"""Publishing from a process that serves no clients: a worker, a cron job, a service.

::

    async with rtlink.Publisher("redis://127.0.0.1:6379/0") as publisher:
        await publisher.publish("orders:42", {"status": "shipped"}, key="order-42-shipped")

The publication goes straight into the engine: positions, history and
de-duplication happen there, and every server node subscribed to the channel delivers
it. With the default in-memory engine a publisher reaches nobody outside its own
process, so a publisher is for shared engines (Redis).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from .backends import Backend, create_backend
from .channels import ChannelOptions, ChannelRules
from .protocol import Position, Publication

__all__ = ["Publisher"]


class Publisher:
    """Publishes into a backend shared with rtlink servers.

    Args:
        backend: a backend URL (``"redis://host:6379/0"``) or object.
        channels: channel pattern → :class:`~rtlink.ChannelOptions`, as given to the
            servers' :class:`~rtlink.Hub` (history size and TTL are applied when
            publishing, so give the same rules). Default: every channel, default options.

    Use it as ``async with Publisher(url) as publisher:``, or call :meth:`start` and
    :meth:`close`.
    """

    def __init__(
        self,
        backend: str | Backend = "memory://",
        *,
        channels: Mapping[str, ChannelOptions] | None = None,
    ) -> None:
        self.backend: Backend = create_backend(backend)
        self.rules = ChannelRules(channels)
        self._started = False

    async def start(self) -> None:
        """Start the backend. Idempotent."""
        if not self._started:
            self._started = True
            await self.backend.start(_ignore_publication, _ignore_lost)

    async def close(self) -> None:
        """Close the backend."""
        if self._started:
            self._started = False
            await self.backend.close()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def publish(self, channel: str, data: Any, *, key: str | None = None) -> Position:
        """Publish ``data`` to ``channel`` and return its position.

        Args:
            channel: a channel name matching one of the publisher's channel patterns.
            data: any JSON value (see :func:`rtlink.protocol.validate_data`).
            key: idempotency key; publishing again with the same key within the
                channel's ``key_ttl`` returns the first position and publishes nothing.
                Without one, a random key (32 hex digits) is used, as every rtlink
                publisher does: each publication carries a key. To retry after an
                error, give your own, the same on the retry: a publish whose answer
                was lost may have happened.

        Raises:
            RuntimeError: the publisher was not started.
            ChannelError: invalid or unknown channel, data no codec can carry, or a
                key that is not 1-128 characters.
            BackendUnavailable: the engine cannot be reached; retry later.
            BackendError: the engine refused the publish.
        """
        if not self._started:
            raise RuntimeError("Publisher not started: use 'async with' or call start()")
        if key is None:
            key = secrets.token_hex(16)
        options = self.rules.check_publication(channel, data, key)
        result = await self.backend.publish(channel, data, key=key, policy=options.policy)
        return result.position


def _ignore_publication(publication: Publication) -> None:
    """A publisher subscribes to nothing; nothing arrives here."""


def _ignore_lost(channel: str) -> None:
    """A publisher subscribes to nothing; nothing is lost."""

"""Several independent Redis servers as one engine: each channel lives on one of them.

``redis+sharded://[[user]:password@]host:port,host:port[,...][/db][?options]`` makes
one :class:`~.backend.RedisBackend` per address (the same credentials, database and
options for all) and sends every operation on a channel to the shard that owns it, by
jump consistent hashing of the channel name (Lamping and Veach, 2014). A channel's
keys, history, positions and pub/sub channel are on its shard alone, so each shard's
Redis carries 1/N of the publications and each node holds one pub/sub connection per
shard. Claims are spread by their key the same way.

Adding a shard moves about 1/N of the channels. A moved channel has no history on
its new shard: it starts a new epoch there, so its clients are told
``recovered = false`` (never a silent gap); its keys on the old shard expire by
themselves. The order of the addresses matters: keep it when adding one at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from urllib.parse import urlsplit

from ...presence import Member
from ...protocol import Position
from ..base import (
    Backend,
    ControlListener,
    HistoryPolicy,
    HistoryResult,
    LostListener,
    PresenceListener,
    PublicationListener,
    PublishResult,
)
from .backend import RedisBackend

__all__ = ["ShardedRedisBackend", "jump_hash"]


def jump_hash(name: str, buckets: int) -> int:
    """The bucket (0 .. ``buckets`` - 1) of ``name``: jump consistent hash of a
    64-bit BLAKE2 digest, so the choice is the same in every process and release."""
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) % 2**64
        jump = int((bucket + 1) * (2**31 / ((key >> 33) + 1)))
    return bucket


class ShardedRedisBackend(Backend):
    """Channels spread over independent Redis servers (see the module docstring).

    Args:
        shards: one backend per Redis server, in a fixed order.

    Raises:
        ValueError: no shard.
    """

    def __init__(self, shards: list[RedisBackend]) -> None:
        if not shards:
            raise ValueError("a sharded backend needs at least one shard")
        self.shards = list(shards)

    @classmethod
    def from_url(cls, url: str) -> ShardedRedisBackend:
        """Build one shard per address of a ``redis+sharded://`` URL.

        Raises:
            ValueError: no address, or an invalid option.
        """
        parts = urlsplit(url)
        credentials, at, hosts = parts.netloc.rpartition("@")
        addresses = [host for host in hosts.split(",") if host]
        if not addresses:
            raise ValueError("a sharded Redis URL is redis+sharded://host:port,host:port[/db]")
        rest = f"{parts.path}?{parts.query}" if parts.query else parts.path
        return cls([RedisBackend.from_url(f"redis://{credentials}{at}{host}{rest}")
                    for host in addresses])

    def shard_for(self, name: str) -> RedisBackend:
        """The shard that owns channel (or claim key) ``name``."""
        return self.shards[jump_hash(name, len(self.shards))]

    def address(self) -> str:
        """The shards' addresses, for messages."""
        return "shards " + ", ".join(shard.address() for shard in self.shards)

    async def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Start every shard with the same listeners."""
        for shard in self.shards:
            await shard.start(listener, on_lost)

    async def close(self) -> None:
        """Close every shard."""
        await asyncio.gather(*(shard.close() for shard in self.shards))

    async def publish(
        self, channel: str, data: object, *, key: str | None, policy: HistoryPolicy
    ) -> PublishResult:
        """Publish on the channel's shard (see :meth:`RedisBackend.publish`)."""
        return await self.shard_for(channel).publish(channel, data, key=key, policy=policy)

    async def history(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy
    ) -> HistoryResult:
        """Read history on the channel's shard."""
        return await self.shard_for(channel).history(channel, since, policy=policy)

    async def replay(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy,
        last: int | None = None,
    ) -> HistoryResult:
        """Read what a subscription replays on the channel's shard."""
        return await self.shard_for(channel).replay(channel, since, policy=policy, last=last)

    async def page(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy, limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        """Read a page of history on the channel's shard."""
        return await self.shard_for(channel).page(channel, since, policy=policy, limit=limit,
                                                  reverse=reverse)

    async def subscribe(self, channel: str) -> None:
        """Subscribe the node to the channel on its shard."""
        await self.shard_for(channel).subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe the node from the channel on its shard."""
        await self.shard_for(channel).unsubscribe(channel)

    async def claim(self, key: str, ttl: float) -> bool:
        """Claim ``key`` on the shard that owns it."""
        return await self.shard_for(key).claim(key, ttl)

    def set_presence_listener(self, listener: PresenceListener) -> None:
        """Every shard announces to ``listener``."""
        for shard in self.shards:
            shard.set_presence_listener(listener)

    async def presence_update(self, channel: str, members: Sequence[Member],
                              ttl: float) -> None:
        """Update presence on the channel's shard."""
        await self.shard_for(channel).presence_update(channel, members, ttl)

    async def presence_remove(self, channel: str, members: Sequence[Member]) -> None:
        """Remove members on the channel's shard."""
        await self.shard_for(channel).presence_remove(channel, members)

    async def presence_read(self, channel: str, limit: int) -> tuple[int, list[Member]]:
        """Read presence on the channel's shard."""
        return await self.shard_for(channel).presence_read(channel, limit)

    async def start_control(self, node: str, listener: ControlListener) -> None:
        """Control messages go through the first shard: every node shares it."""
        await self.shards[0].start_control(node, listener)

    async def send_control(self, message: bytes, node: str | None = None) -> int | None:
        """Send a control message through the first shard (see :meth:`start_control`)."""
        return await self.shards[0].send_control(message, node)

"""Channels spread over independent Redis servers: ``redis+sharded://``."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from rtlink.backends import Backend, HistoryPolicy, create_backend
from rtlink.backends.redis import ShardedRedisBackend
from rtlink.backends.redis.sharded import jump_hash
from rtlink.protocol import Publication
from tests.support import eventually
from tests.support.redis_server import RedisServer, run_redis

from .contract import BackendContract

POLICY = HistoryPolicy(size=100, ttl=300.0, key_ttl=600.0)
NAMES = [f"user:{i}" for i in range(10_000)]


def test_jump_hash_spreads_evenly_and_moves_little_when_a_shard_is_added() -> None:
    three = [jump_hash(name, 3) for name in NAMES]
    assert all(0 <= bucket < 3 for bucket in three)
    assert min(Counter(three).values()) > 3_000  # 10,000 / 3, give or take a few %
    four = [jump_hash(name, 4) for name in NAMES]
    moved = [(a, b) for a, b in zip(three, four, strict=True) if a != b]
    # About a quarter moves, and only to the new shard.
    assert 2_200 < len(moved) < 2_800
    assert {b for _, b in moved} == {3}


def test_jump_hash_is_stable() -> None:
    # The same channel must land on the same shard in every process and release.
    assert [jump_hash(f"user:{i}", 8) for i in range(8)] == [
        jump_hash(f"user:{i}", 8) for i in range(8)]
    assert jump_hash("anything", 1) == 0


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    with run_redis() as first, run_redis() as second:
        yield first, second


def sharded_url(servers: tuple[RedisServer, RedisServer], prefix: str) -> str:
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    return f"redis+sharded://{hosts}/0?prefix={prefix}"


@pytest.mark.redis
class TestShardedContract(BackendContract):
    """The contract on two Redis servers, channels spread between them."""

    @pytest.fixture(autouse=True)
    def _servers(self, two_servers: tuple[RedisServer, RedisServer]) -> None:
        self.url = sharded_url(two_servers, "contract-sharded")

    async def make_backend(self) -> Backend:
        return create_backend(self.url)


@pytest.mark.redis
async def test_channels_live_on_their_shard_and_reach_every_node(
    two_servers: tuple[RedisServer, RedisServer],
) -> None:
    prefix = f"spread-{secrets.token_hex(4)}"
    url = sharded_url(two_servers, prefix)
    publisher, subscriber = create_backend(url), create_backend(url)
    assert isinstance(publisher, ShardedRedisBackend)
    received: list[Publication] = []
    await publisher.start(lambda p: None, lambda c: None)
    await subscriber.start(received.append, lambda c: None)
    channels = [f"user:{i}" for i in range(40)]
    try:
        for channel in channels:
            await subscriber.subscribe(channel)
        for channel in channels:
            await publisher.publish(channel, channel, key=None, policy=POLICY)
        raws = [aioredis.Redis.from_url(server.url) for server in two_servers]
        try:
            held = [{key.decode() for key in await raw.keys(f"{prefix}:*:meta")}
                    for raw in raws]
        finally:
            for raw in raws:
                await raw.aclose()
        # Each channel's keys are on exactly one server, the one jump_hash names.
        for channel in channels:
            where = [f"{prefix}:{{{channel}}}:meta" in keys for keys in held]
            assert where == [jump_hash(channel, 2) == 0, jump_hash(channel, 2) == 1]
        assert all(held)  # both servers hold some
        await eventually(lambda: len(received) == len(channels))
        assert sorted(p.data for p in received) == sorted(channels)
        # A claim is one key on one shard, seen by every node.
        assert await publisher.claim("ticket:1", 10)
        assert not await subscriber.claim("ticket:1", 10)
    finally:
        await publisher.close()
        await subscriber.close()


def test_a_sharded_url_names_every_shard() -> None:
    backend = create_backend("redis+sharded://:secret@10.0.0.1:6379,10.0.0.2:6380/3?prefix=x")
    assert isinstance(backend, ShardedRedisBackend)
    assert backend.address() == "shards 10.0.0.1:6379/3, 10.0.0.2:6380/3"
    assert [shard.prefix for shard in backend.shards] == ["x", "x"]
    with pytest.raises(ValueError, match="redis\\+sharded://host:port"):
        create_backend("redis+sharded:///0")

"""The Redis backend against a real redis-server started by the tests."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from rtlink.backends import Backend, HistoryPolicy, create_backend
from rtlink.backends.redis import RedisBackend
from rtlink.errors import BackendUnavailable
from rtlink.protocol import Position, Publication
from tests.support import Relay, eventually, free_port
from tests.support.redis_server import RedisServer, SentinelSetup, run_redis

from .contract import BackendContract

pytestmark = pytest.mark.redis


class TestRedisBackendContract(BackendContract):
    """The contract on Redis: real TTLs in Redis (milliseconds), real pub/sub."""

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url

    async def make_backend(self) -> Backend:
        return RedisBackend(self.url, prefix="contract")


class TestRedisSentinelContract(BackendContract):
    """The contract on a master found through Sentinel (redis+sentinel://)."""

    @pytest.fixture(autouse=True)
    def _server(self, redis_sentinel: SentinelSetup) -> None:
        self.url = redis_sentinel.url

    async def make_backend(self) -> Backend:
        return create_backend(f"{self.url}?prefix=contract-sentinel")


# --- what only Redis has: keys, connections, faults ---------------------------------------

POLICY = HistoryPolicy(size=100, ttl=300.0, key_ttl=600.0)


class Node:
    """A started RedisBackend and what its listeners received."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.received: list[Publication] = []
        self.lost: list[str] = []

    async def __aenter__(self) -> Node:
        await self.backend.start(self.received.append, self.lost.append)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.backend.close()

    def offsets(self, channel: str) -> list[int]:
        return [p.position.offset for p in self.received if p.channel == channel]


def node(url: str, **options: Any) -> Node:
    return Node(RedisBackend(url, prefix=options.pop("prefix", "t"), **options))


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


async def publish_many(backend: RedisBackend, channel: str, count: int,
                       policy: HistoryPolicy = POLICY) -> list[Position]:
    return [(await backend.publish(channel, i, key=None, policy=policy)).position
            for i in range(count)]


async def test_keys_follow_the_documented_layout(redis_server: RedisServer) -> None:
    channel = unique("chat:lobby")
    raw = aioredis.Redis.from_url(redis_server.url)
    async with node(redis_server.url, prefix="myapp") as a:
        result = await a.backend.publish(channel, {"text": "hi"}, key="k1", policy=POLICY)
        base = f"myapp:{{{channel}}}"
        run_id = (await raw.info("server"))["run_id"].encode()
        assert await raw.hgetall(f"{base}:meta") == {
            b"e": result.position.epoch.encode(), b"o": b"1", b"r": run_id}
        # The log holds "<ms> <offset> <msgpack data>" per kept publication.
        (entry,) = await raw.lrange(f"{base}:log", 0, -1)
        ms, offset, data = entry.split(b" ", 2)
        assert abs(int(ms) / 1000 - time.time()) < 60
        assert (offset, msgpack.unpackb(data)) == (b"1", {"text": "hi"})
        assert await raw.type(f"{base}:log") == b"list"
        assert await raw.get(f"{base}:key:k1") == f"{result.position.epoch} 1".encode()
        assert 0 < await raw.pttl(f"{base}:key:k1") <= 600_000
        assert 0 < await raw.pttl(f"{base}:log") <= 300_000
        assert 300_000 < await raw.pttl(f"{base}:meta") <= 86_400_000

        # The pub/sub channel carries "<epoch> <offset> <msgpack data>".
        pubsub = raw.pubsub()
        await pubsub.subscribe(f"{base}:pub")
        await pubsub.get_message(timeout=1)  # the confirmation
        second = await a.backend.publish(channel, [1, 2], key=None, policy=POLICY)
        message = await pubsub.get_message(timeout=2)
        assert message is not None
        epoch, offset, data = message["data"].split(b" ", 2)
        assert (epoch.decode(), int(offset)) == (second.position.epoch, 2)
        assert msgpack.unpackb(data) == [1, 2]
        await pubsub.aclose()
    await raw.aclose()


async def test_a_client_that_decodes_responses_is_refused(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisBackend(client=client)
    await client.aclose()
    plain = aioredis.Redis.from_url(redis_server.url)
    async with Node(RedisBackend(client=plain, prefix=unique("own"))) as a:
        assert (await a.backend.publish("c", 1, key=None, policy=POLICY)).position.offset == 1
    assert await plain.ping()  # a client passed in is not closed by the backend
    await plain.aclose()


async def test_one_pubsub_connection_and_one_redis_subscription_per_channel(
    redis_server: RedisServer,
) -> None:
    prefix = unique("refcount")
    channels = [f"c{i}" for i in range(5)]
    raw = aioredis.Redis.from_url(redis_server.url)
    before = await pubsub_clients(raw)
    async with node(redis_server.url, prefix=prefix, linger=0) as a:
        for channel in channels:
            await a.backend.subscribe(channel)
        await a.backend.subscribe(channels[0])  # again: no second Redis subscription
        names = [f"{prefix}:{{{c}}}:pub" for c in channels]
        counts = dict(await raw.pubsub_numsub(*names))
        assert set(counts.values()) == {1}
        assert await pubsub_clients(raw) == before + 1
        await a.backend.unsubscribe(channels[0])
        await eventually(lambda: numsub(raw, names[0], 0))
    assert await pubsub_clients(raw) == before
    await raw.aclose()


async def numsub(raw: aioredis.Redis, name: str, expected: int) -> bool:
    return bool(dict(await raw.pubsub_numsub(name))[name.encode()] == expected)


async def test_the_pubsub_connection_is_not_one_of_the_pool(redis_server: RedisServer) -> None:
    # With one command connection, the node still has its pub/sub connection: the pool
    # cannot be starved by it, nor take it down with a pool timeout.
    prefix = unique("own")
    raw = aioredis.Redis.from_url(redis_server.url)
    async with node(redis_server.url, prefix=prefix, max_connections=1) as a:
        channels = [f"c{i}" for i in range(50)]
        await asyncio.gather(*(a.backend.subscribe(c) for c in channels))
        published = await asyncio.gather(*(a.backend.publish(c, c, key=None, policy=POLICY)
                                           for c in channels))
        await eventually(lambda: len(a.received) == 50)
        assert {p.position for p in a.received} == {r.position for r in published}
        assert await pubsub_clients(raw) >= 1
    await raw.aclose()


async def test_an_unsubscribed_channel_lingers_then_leaves_redis(
    redis_server: RedisServer,
) -> None:
    # A long poll unsubscribes after each answer and comes back at once: within the
    # linger its channel costs no command, and nothing is delivered meanwhile.
    prefix = unique("linger")
    raw = aioredis.Redis.from_url(redis_server.url)
    name = f"{prefix}:{{c}}:pub"
    async with node(redis_server.url, prefix=prefix, linger=0.5) as a:
        await a.backend.subscribe("c")
        first = await a.backend.publish("c", 1, key=None, policy=POLICY)
        await eventually(lambda: len(a.received) == 1)
        await a.backend.unsubscribe("c")
        quiet = await a.backend.publish("c", 2, key=None, policy=POLICY)
        assert await numsub(raw, name, 1)
        # Back within the linger: no Redis command, and the node knows the top.
        commands = (await raw.info("stats"))["total_commands_processed"]
        await a.backend.subscribe("c")
        result = await a.backend.history("c", None, policy=POLICY)
        assert (await raw.info("stats"))["total_commands_processed"] == commands + 1  # INFO
        assert result.position == quiet.position and result.recovered
        third = await a.backend.publish("c", 3, key=None, policy=POLICY)
        await eventually(lambda: len(a.received) == 2)
        assert [p.position for p in a.received] == [first.position, third.position]
        await a.backend.unsubscribe("c")
        assert await numsub(raw, name, 1)
        await eventually(lambda: numsub(raw, name, 0))
    await raw.aclose()


async def pubsub_clients(raw: aioredis.Redis) -> int:
    clients = await raw.client_list(_type="pubsub")
    return len(clients)


async def test_a_publishing_process_opens_no_pubsub_connection(
    redis_server: RedisServer,
) -> None:
    raw = aioredis.Redis.from_url(redis_server.url)
    before = await pubsub_clients(raw)
    async with node(redis_server.url) as a:
        await publish_many(a.backend, unique("c"), 3)
        assert await pubsub_clients(raw) == before
    await raw.aclose()


async def test_two_nodes_share_positions_and_deliver_to_each_other(
    redis_server: RedisServer,
) -> None:
    channel = unique("shared")
    async with node(redis_server.url) as a, node(redis_server.url) as b:
        await a.backend.subscribe(channel)
        await b.backend.subscribe(channel)
        positions = []
        for i in range(10):
            publisher = a if i % 2 else b
            positions.append((await publisher.backend.publish(
                channel, i, key=None, policy=POLICY)).position)
        assert [p.offset for p in positions] == list(range(1, 11))
        assert len({p.epoch for p in positions}) == 1
        await eventually(lambda: len(a.received) == 10 and len(b.received) == 10)
        assert a.received == b.received
        assert [p.data for p in a.received] == list(range(10))
        # A duplicate key used on the other node is still a duplicate.
        first = await a.backend.publish(channel, "x", key="k", policy=POLICY)
        again = await b.backend.publish(channel, "x", key="k", policy=POLICY)
        assert again.duplicate and again.position == first.position


async def test_unavailable_redis_raises_a_clear_error_without_secrets() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens there once closed
    backend = RedisBackend(f"redis://:hunter2@127.0.0.1:{port}/0", socket_timeout=1)
    lost: list[str] = []
    await backend.start(lambda publication: None, lost.append)
    try:
        for attempt in (
            backend.publish("c", 1, key=None, policy=POLICY),
            backend.history("c", None, policy=POLICY),
            backend.subscribe("c"),
        ):
            with pytest.raises(BackendUnavailable) as info:
                await attempt
            assert f"127.0.0.1:{port}/0" in str(info.value)
            assert "hunter2" not in str(info.value)
            assert info.value.temporary
    finally:
        await backend.close()


async def test_publish_fails_while_redis_is_down_and_works_once_it_is_back() -> None:
    with run_redis() as redis_server:
        async with node(redis_server.url, socket_timeout=1) as a:
            channel = unique("c")
            first = await a.backend.publish(channel, 1, key=None, policy=POLICY)
            redis_server.stop()
            with pytest.raises(BackendUnavailable):
                await a.backend.publish(channel, 2, key=None, policy=POLICY)
            redis_server.start()
            again = await a.backend.publish(channel, 3, key=None, policy=POLICY)
            # An empty Redis: a new epoch, and the old position is not recoverable.
            assert again.position.offset == 1
            assert again.position.epoch != first.position.epoch
            result = await a.backend.history(channel, first.position, policy=POLICY)
            assert result.recovered is False


async def test_killed_pubsub_connections_lose_nothing() -> None:
    """CLIENT KILL TYPE pubsub, several times, during a publish stream."""
    with run_redis() as redis_server:
        channel = unique("stream")
        async with node(redis_server.url) as a, node(redis_server.url) as publisher:
            await a.backend.subscribe(channel)
            raw = aioredis.Redis.from_url(redis_server.url)
            published: list[Position] = []
            for round_ in range(5):
                published += await publish_many(publisher.backend, channel, 40)
                await eventually(lambda: pubsub_clients(raw), timeout=5)  # reconnected
                assert redis_server.kill_pubsub() == 1
                published += await publish_many(publisher.backend, channel, 40)
                await asyncio.sleep(0.01 * round_)
            published += await publish_many(publisher.backend, channel, 10)
            await eventually(lambda: len(a.received) >= len(published), timeout=10)
            await asyncio.sleep(0.2)  # nothing more may come
            assert [p.position for p in a.received] == published
            assert a.lost == []
            await raw.aclose()


async def test_a_restarted_redis_reports_subscribed_channels_lost_then_goes_live() -> None:
    with run_redis() as redis_server:
        with_history, quiet = unique("busy"), unique("quiet")
        async with node(redis_server.url) as a, node(redis_server.url) as publisher:
            await a.backend.subscribe(with_history)
            await a.backend.subscribe(quiet)
            before = await publish_many(publisher.backend, with_history, 3)
            await eventually(lambda: len(a.received) == 3)

            redis_server.restart()
            await eventually(lambda: a.lost == [with_history], timeout=10)
            # ``quiet`` had nothing delivered: nothing to lose there.
            after = await eventually_publish(publisher.backend, with_history)
            assert after.epoch != before[0].epoch and after.offset == 1
            await eventually(lambda: len(a.received) == 4)
            assert a.received[-1].position == after
            await publisher.backend.publish(quiet, "q", key=None, policy=POLICY)
            await eventually(lambda: a.offsets(quiet) == [1])
            assert a.lost == [with_history]


async def eventually_publish(backend: RedisBackend, channel: str) -> Position:
    """Publish once Redis answers again (the pool notices the restart on first use)."""
    for _ in range(50):
        try:
            return (await backend.publish(channel, "after", key=None, policy=POLICY)).position
        except BackendUnavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("Redis did not come back")


@pytest.mark.slow
async def test_a_silent_pubsub_connection_is_detected_by_ping() -> None:
    with run_redis() as redis_server:
        relay = await Relay(redis_server.port).start()
        channel = unique("c")
        try:
            url = f"redis://127.0.0.1:{relay.port}/0"
            async with node(url, ping_interval=0.1, socket_timeout=1) as a, \
                    node(redis_server.url) as publisher:
                await a.backend.subscribe(channel)
                connections = relay.connections_made
                relay.blackhole = True  # the network drops what Redis sends, silently
                published = await publish_many(publisher.backend, channel, 10)
                await eventually(lambda: relay.connections_made > connections + 1)
                relay.blackhole = False
                await eventually(lambda: len(a.received) == 10)
                assert [p.position for p in a.received] == published
        finally:
            await relay.close()


async def test_a_gap_larger_than_sync_limit_is_reported_lost() -> None:
    with run_redis() as redis_server:
        relay = await Relay(redis_server.port).start()
        channel = unique("c")
        try:
            url = f"redis://127.0.0.1:{relay.port}/0"
            async with node(url, sync_limit=5) as a, node(redis_server.url) as publisher:
                await a.backend.subscribe(channel)
                await publish_many(publisher.backend, channel, 2)
                await eventually(lambda: len(a.received) == 2)
                relay.refuse = True  # the node is cut off from Redis ...
                relay.cut()
                await publish_many(publisher.backend, channel, 8)  # ... while 8 go by
                relay.refuse = False
                await eventually(lambda: a.lost == [channel])
                last = await publisher.backend.publish(channel, "live", key=None,
                                                       policy=POLICY)
                await eventually(lambda: a.received[-1].position == last.position)
                assert a.offsets(channel) == [1, 2, 11]
        finally:
            await relay.close()


async def test_a_gap_within_sync_limit_is_filled_from_history() -> None:
    with run_redis() as redis_server:
        relay = await Relay(redis_server.port).start()
        channel = unique("c")
        try:
            url = f"redis://127.0.0.1:{relay.port}/0"
            async with node(url, sync_limit=8) as a, node(redis_server.url) as publisher:
                await a.backend.subscribe(channel)
                await publish_many(publisher.backend, channel, 2)
                await eventually(lambda: len(a.received) == 2)
                relay.refuse = True
                relay.cut()
                await publish_many(publisher.backend, channel, 8)
                relay.refuse = False
                await eventually(lambda: len(a.received) == 10)
                await publish_many(publisher.backend, channel, 1)
                await eventually(lambda: len(a.received) == 11)
                assert a.offsets(channel) == list(range(1, 12))
                assert [p.data for p in a.received] == [0, 1, *range(8), 0]
                assert a.lost == []
        finally:
            await relay.close()


async def test_a_claim_is_one_key_shared_by_every_node(redis_server: RedisServer) -> None:
    key = unique("ticket:jti")
    raw = aioredis.Redis.from_url(redis_server.url)
    async with node(redis_server.url, prefix="myapp") as a, \
            node(redis_server.url, prefix="myapp") as b:
        assert await a.backend.claim(key, 30) is True
        assert await raw.get(f"myapp:claim:{key}") == b"1"
        assert 0 < await raw.pttl(f"myapp:claim:{key}") <= 30_000
        assert await b.backend.claim(key, 30) is False
    async with node(redis_server.url, prefix="other") as c:
        # Another prefix is another cluster: its claims are its own.
        assert await c.backend.claim(key, 30) is True
    await raw.aclose()


async def test_claim_fails_clearly_while_redis_is_unreachable() -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    await backend.start(lambda publication: None, lambda channel: None)
    try:
        with pytest.raises(BackendUnavailable, match="claim") as info:
            await backend.claim("ticket:x", 30)
        assert info.value.temporary
    finally:
        await backend.close()


# --- an epoch is a promise: failover, restarts, refusals ----------------------------------


async def replication_up(replica: aioredis.Redis) -> bool:
    return bool((await replica.info("replication")).get("master_link_status") == "up")


class Failover:
    """A master and a replica that replicates through a relay, so that the test decides
    what reaches it (``lag()``), then promotes it (``promote()``)."""

    def __init__(self, master: RedisServer, replica: RedisServer) -> None:
        self.master, self.replica = master, replica
        self.replica_client = aioredis.Redis.from_url(replica.url)
        self.link = Relay(master.port)

    async def __aenter__(self) -> Failover:
        await self.link.start()
        # A master waits 5 s for more replicas before a diskless full sync.
        self.master.command("CONFIG", "SET", "repl-diskless-sync-delay", "0")
        await self.replica_client.replicaof("127.0.0.1", self.link.port)
        await eventually(self._replicating, message="replication up")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.link.close()
        await self.replica_client.aclose()

    async def _replicating(self) -> bool:
        info = await self.replica_client.info("replication")
        return bool(info.get("master_link_status") == "up")

    def lag(self) -> None:
        """From now on the replica receives nothing more from the master."""
        self.link.blackhole = True

    async def promote(self) -> None:
        await self.replica_client.replicaof("NO", "ONE")


@pytest.mark.slow
async def test_a_promoted_replica_that_missed_writes_starts_a_new_epoch() -> None:
    # The failover that broke the promise: a replica that had not received the master's
    # last 20 writes is promoted; under the same epoch it handed out offsets 41-60
    # again, and a client that saw the old 41-60 resumed with recovered=true, missing
    # the new ones.
    channel = unique("feed")
    with run_redis() as master, run_redis() as replica:
        async with Failover(master, replica) as failover, node(master.url) as old, \
                node(replica.url) as watcher:
            await watcher.backend.subscribe(channel)  # live, through the replica
            before = await publish_many(old.backend, channel, 40)
            await eventually(lambda: len(watcher.received) == 40)
            failover.lag()
            acknowledged = await publish_many(old.backend, channel, 20)
            assert acknowledged[-1] == Position(before[0].epoch, 60)
            await failover.promote()  # without 41-60
            async with node(replica.url) as new:
                after = await publish_many(new.backend, channel, 20)
                # A new epoch; offsets and history carry on from what the replica has.
                assert {p.epoch for p in after} == {after[0].epoch} != {before[0].epoch}
                assert [p.offset for p in after] == list(range(41, 61))
                kept = await new.backend.history(channel, Position(after[0].epoch, 0),
                                                 policy=POLICY)
                assert [p.data for p in kept.publications] == [*range(40), *range(20)]
                # A client that got 1-60 from the old master resumes: told, not fooled.
                resumed = await new.backend.history(channel, acknowledged[-1], policy=POLICY)
                assert not resumed.recovered
                assert resumed.position == after[-1]
                # A node that was live through the change reports the channel lost (its
                # subscribers resubscribe and learn recovered=false) and goes on.
                await eventually(lambda: watcher.lost == [channel])
                await eventually(lambda: len(watcher.received) == 40 + 20)
                assert [p.position for p in watcher.received[40:]] == after


@pytest.mark.slow
async def test_with_replica_acks_an_acknowledged_publication_survives_a_failover() -> None:
    channel = unique("orders")
    with run_redis() as master, run_redis() as replica:
        async with Failover(master, replica) as failover, \
                node(master.url, replica_acks=1, replica_timeout=5) as old, \
                node(master.url, replica_acks=1, replica_timeout=0.2) as impatient:
            acknowledged = [await old.backend.publish(channel, i, key=f"k{i}", policy=POLICY)
                            for i in range(10)]
            failover.lag()
            for i in range(10, 13):  # the replica does not get them: not acknowledged
                with pytest.raises(BackendUnavailable, match="reached 0 of 1 replicas"):
                    await impatient.backend.publish(channel, i, key=f"k{i}", policy=POLICY)
            await failover.promote()
            async with node(replica.url) as new:
                # The publisher retries the unacknowledged ones with their keys; a retry
                # of an acknowledged one is found again, in the new epoch.
                retried = [await new.backend.publish(channel, i, key=f"k{i}", policy=POLICY)
                           for i in (9, 10, 11, 12)]
                epoch = retried[0].position.epoch
                assert epoch != acknowledged[0].position.epoch
                assert retried[0].duplicate and retried[0].position == Position(epoch, 10)
                assert [r.position.offset for r in retried[1:]] == [11, 12, 13]
                kept = await new.backend.history(channel, Position(epoch, 0), policy=POLICY)
                assert [p.data for p in kept.publications] == list(range(13))  # none lost


async def test_a_key_from_an_unknown_epoch_publishes_again(redis_server: RedisServer) -> None:
    channel = unique("orders")
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        async with node(redis_server.url) as a:
            first = await a.backend.publish(channel, "order", key="k", policy=POLICY)
            # What a failover leaves: the same keys, written by another Redis process.
            await raw.hset(f"t:{{{channel}}}:meta", "r", "another-run-id")
            again = await a.backend.publish(channel, "order", key="k", policy=POLICY)
            assert again.duplicate and again.position.offset == 1
            assert again.position.epoch != first.position.epoch
            # Found again, the key moved to the new epoch: it outlives the next change.
            await raw.hset(f"t:{{{channel}}}:meta", "r", "a-third-run-id")
            third = await a.backend.publish(channel, "order", key="k", policy=POLICY)
            assert third.duplicate and third.position.offset == 1
            # A key of an epoch this channel does not know points into a lost history.
            await raw.set(f"t:{{{channel}}}:key:k", "ffffffff 1", px=60_000)
            fourth = await a.backend.publish(channel, "order", key="k", policy=POLICY)
            assert not fourth.duplicate and fourth.position.offset == 2
    finally:
        await raw.aclose()


@pytest.mark.parametrize("refusal", ["OOM", "READONLY"])
async def test_a_redis_refusing_writes_is_unavailable_not_an_error(refusal: str) -> None:
    # redis-py raises OutOfMemoryError / ReadOnlyError with the reply code stripped from
    # the message; both are conditions that pass (memory freed, a failover completing).
    with run_redis() as server:
        raw = aioredis.Redis.from_url(server.url)
        try:
            async with node(server.url) as a:
                await a.backend.publish("c", 1, key=None, policy=POLICY)
                if refusal == "OOM":
                    await raw.config_set("maxmemory-policy", "noeviction")
                    await raw.config_set("maxmemory", 1)
                else:  # a replica of a master that is gone: it serves reads, refuses writes
                    await raw.replicaof("127.0.0.1", free_port())
                with pytest.raises(BackendUnavailable, match=f"cannot serve publish now "
                                                             rf"\({refusal}\)"):
                    await a.backend.publish("c", 2, key=None, policy=POLICY)
                if refusal == "READONLY":
                    with pytest.raises(BackendUnavailable, match=r"\(READONLY\)"):
                        await a.backend.claim("ticket", 10)
                    await raw.replicaof("NO", "ONE")
                else:
                    await raw.config_set("maxmemory", 0)
                after = await a.backend.publish("c", 3, key=None, policy=POLICY)
                assert after.position.offset == 2  # the refused one took no offset
        finally:
            await raw.aclose()

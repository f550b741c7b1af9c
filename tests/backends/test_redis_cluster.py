"""The Redis engine on a Redis Cluster (rtlink/backends/redis/cluster.py): sharded
pub/sub on the master of each channel's slot, and channels that follow their slot when
it moves (resharding, failover) without a silent gap."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster

from rtlink.backends import Backend, create_backend
from rtlink.backends.redis import RedisBackend
from rtlink.errors import BackendUnavailable
from rtlink.protocol import Publication
from tests.support import eventually, free_port, seconds
from tests.support.redis_server import ClusterNodeServer, ClusterSetup, run_cluster

from .contract import BackendContract
from .test_redis import POLICY, Node, publish_many, unique

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class TestRedisClusterContract(BackendContract):
    """The contract on three masters with a replica each (redis+cluster://)."""

    @pytest.fixture(autouse=True)
    def _server(self, redis_cluster: ClusterSetup) -> None:
        self.url = redis_cluster.url

    async def make_backend(self) -> Backend:
        return create_backend(f"{self.url}?prefix=contract-cluster")


def cluster_node(setup: ClusterSetup, **options: object) -> Node:
    extra = "".join(f"&{name}={value}" for name, value in options.items() if name != "prefix")
    backend = create_backend(f"{setup.url}?prefix={options.get('prefix', 't')}&ping_interval=1"
                             + extra)
    assert isinstance(backend, RedisBackend)
    return Node(backend)


def bus_messages(setup: ClusterSetup) -> dict[int, tuple[int, int]]:
    """Per running node (port): pub/sub messages it sent over the cluster bus so far,
    ``(PUBLISH broadcasts, SPUBLISH to its shard)``."""
    counts = {}
    for node in setup.nodes:
        if node.running:
            info = dict(line.split(":", 1) for line in
                        node.call("CLUSTER", "INFO").splitlines() if ":" in line)
            counts[node.port] = (int(info.get("cluster_stats_messages_publish_sent", 0)),
                                 int(info.get("cluster_stats_messages_publishshard_sent", 0)))
    return counts


def channels_on_every_master(setup: ClusterSetup, prefix: str, count: int) -> list[str]:
    """``count`` channel names, at least one served by each master."""
    masters = {m.port: m for m in setup.masters()}
    names: list[str] = []
    seen: set[int] = set()
    while len(names) < count or len(seen) < len(masters):
        name = unique("feed")
        port = setup.master_for_key(f"{prefix}:{{{name}}}:meta").port
        if len(names) < count or port not in seen:
            names.append(name)
            seen.add(port)
    return names


async def test_a_publication_reaches_only_the_shard_of_its_channel(
        redis_cluster: ClusterSetup) -> None:
    # Measured on the cluster bus: PUBLISH would be sent to every other node (5 here),
    # SPUBLISH goes to the replicas of the channel's master only (1 here).
    channels = channels_on_every_master(redis_cluster, "shard", 12)
    async with cluster_node(redis_cluster, prefix="shard") as subscriber, \
            cluster_node(redis_cluster, prefix="shard") as publisher:
        for channel in channels:
            await subscriber.backend.subscribe(channel)
        before = bus_messages(redis_cluster)
        for channel in channels:
            await publisher.backend.publish(channel, channel, key=None, policy=POLICY)
        await eventually(lambda: len(subscriber.received) == len(channels))
        after = bus_messages(redis_cluster)
        assert publisher.backend._feeds.channels == []  # it publishes, it does not listen
    broadcasts = sum(after[p][0] - before[p][0] for p in after)
    assert broadcasts == 0
    per_master: dict[int, int] = {}
    for channel in channels:
        port = redis_cluster.master_for_key(f"shard:{{{channel}}}:meta").port
        per_master[port] = per_master.get(port, 0) + 1
    sent = {port: after[port][1] - before[port][1] for port in after}
    # One message per publication from its master to its one replica; nothing else.
    assert {p: n for p, n in sent.items() if n} == per_master
    # The counter is the right one: a classic PUBLISH is broadcast to the 5 others.
    any_master = redis_cluster.masters()[0]
    before = bus_messages(redis_cluster)
    any_master.call("PUBLISH", "not-sharded", "x")
    after = bus_messages(redis_cluster)
    assert after[any_master.port][0] - before[any_master.port][0] == 5


async def test_a_node_subscribes_each_channel_on_its_master_only(
        redis_cluster: ClusterSetup) -> None:
    channels = channels_on_every_master(redis_cluster, "links", 6)
    async with cluster_node(redis_cluster, prefix="links", linger=0.3) as a:
        for channel in channels:
            await a.backend.subscribe(channel)
        for channel in channels:
            master = redis_cluster.master_for_key(f"links:{{{channel}}}:meta")
            assert a.backend._feeds.node_of(channel) == f"127.0.0.1:{master.port}"
            assert master.call("PUBSUB", "SHARDNUMSUB", f"links:{{{channel}}}:pub")[1] == 1
        for channel in channels:
            await a.backend.unsubscribe(channel)
        # Unsubscribed channels linger a while, then the links of masters without
        # channels are closed.
        assert sorted(a.backend._feeds.channels) == sorted(channels)
        await eventually(lambda: a.backend._feeds.channels == [])
        await eventually(lambda: a.backend._feeds._links == {})
        for channel in channels:
            master = redis_cluster.master_for_key(f"links:{{{channel}}}:meta")
            assert master.call("PUBSUB", "SHARDNUMSUB", f"links:{{{channel}}}:pub")[1] == 0


async def test_a_cluster_client_can_be_passed_in(redis_cluster: ClusterSetup) -> None:
    client = RedisCluster(startup_nodes=[ClusterNode(h, p)
                                         for h, p in redis_cluster.startup_nodes])
    channel = unique("own")
    async with Node(RedisBackend(client=client, prefix="own")) as a:
        await a.backend.subscribe(channel)
        await publish_many(a.backend, channel, 3)
        await eventually(lambda: a.offsets(channel) == [1, 2, 3])
    assert await client.ping()  # not closed by the backend: it is the caller's
    await client.aclose()


def test_clients_that_cannot_work_are_refused() -> None:
    decoding = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", free_port())],
                            decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisBackend(client=decoding)
    with pytest.raises(TypeError, match="not dict"):
        RedisBackend(client={})  # type: ignore[arg-type]


@pytest.mark.parametrize("url", [
    "redis+cluster://", "redis+cluster://127.0.0.1:7000/1", "redis+cluster://h:port",
])
def test_malformed_cluster_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        create_backend(url)


async def test_errors_name_the_node_of_the_channel_and_no_password() -> None:
    # Nothing listens: the first command fails with the cluster's addresses.
    port = free_port()
    backend = create_backend(f"redis+cluster://:s3cret@127.0.0.1:{port}?socket_timeout=0.5")
    await backend.start(lambda p: None, lambda c: None)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.publish("c", 1, key=None, policy=POLICY)
    finally:
        await backend.close()
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.fixture
def own_cluster() -> Iterator[ClusterSetup]:
    """A cluster for one test that changes its topology."""
    with run_cluster() as setup:
        yield setup


def meta_key(channel: str) -> str:
    return f"t:{{{channel}}}:meta"


def master_of(setup: ClusterSetup, channel: str) -> ClusterNodeServer:
    return setup.master_for_key(meta_key(channel))


async def publish_retrying(backend: RedisBackend, channel: str, data: object) -> None:
    """Publish with an idempotency key until acknowledged (as rtlink.Publisher does)."""
    for _ in range(200):
        try:
            await backend.publish(channel, data, key=f"k{data}", policy=POLICY)
            return
        except BackendUnavailable:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{channel}: publication {data} never acknowledged")


def delivered(node: Node, channel: str) -> list[object]:
    return [p.data for p in node.received if p.channel == channel]


def assert_no_silent_gap(node: Node, channel: str) -> None:
    """Within an epoch, offsets follow each other; a new epoch was reported lost."""
    mine: list[Publication] = [p for p in node.received if p.channel == channel]
    for before, after in zip(mine, mine[1:], strict=False):
        if before.position.epoch == after.position.epoch:
            assert after.position.offset == before.position.offset + 1, (before, after)
        else:
            assert channel in node.lost, f"{channel}: a new epoch was not reported"


async def test_a_channel_follows_its_slot_when_it_is_resharded(
        own_cluster: ClusterSetup) -> None:
    channel = unique("moving")
    async with cluster_node(own_cluster) as subscriber, cluster_node(own_cluster) as publisher:
        await subscriber.backend.subscribe(channel)
        for n in range(5):
            await publish_retrying(publisher.backend, channel, n)
        await eventually(lambda: delivered(subscriber, channel) == [0, 1, 2, 3, 4])
        source = master_of(own_cluster, channel)
        target = next(m for m in own_cluster.masters() if m is not source)
        await asyncio.to_thread(own_cluster.migrate_slot, own_cluster.keyslot(
            meta_key(channel)), target)
        # Redis drops the subscription on the old master (sunsubscribe); the node
        # subscribes on the new one.
        await eventually(lambda: subscriber.backend._feeds.node_of(channel)
                         == f"127.0.0.1:{target.port}", timeout=seconds(10))
        for n in range(5, 10):
            await publish_retrying(publisher.backend, channel, n)
        await eventually(lambda: subscriber.lost == [channel])
        await publish_retrying(publisher.backend, channel, 10)
        await eventually(lambda: delivered(subscriber, channel)[-1:] == [10])
    # The keys moved with the slot; the new master's run id starts a new epoch there
    # (nothing here can tell a migration from a failover), reported to the hub.
    assert delivered(subscriber, channel)[:5] == [0, 1, 2, 3, 4]
    assert_no_silent_gap(subscriber, channel)
    assert subscriber.lost == [channel]


@pytest.mark.parametrize("fault", ["CLUSTER FAILOVER", "kill -9"])
async def test_channels_follow_a_failover_of_their_master(
        own_cluster: ClusterSetup, fault: str) -> None:
    channels = channels_on_every_master(own_cluster, "t", 6)
    victim = master_of(own_cluster, channels[0])
    moved = [c for c in channels if master_of(own_cluster, c) is victim]
    stayed = [c for c in channels if c not in moved]
    async with cluster_node(own_cluster) as subscriber, cluster_node(own_cluster) as publisher:
        for channel in channels:
            await subscriber.backend.subscribe(channel)
        count = 0

        async def publish_round() -> None:
            nonlocal count
            for channel in channels:
                await publish_retrying(publisher.backend, channel, count)
            count += 1

        for _ in range(3):
            await publish_round()
        if fault == "kill -9":
            new = await asyncio.to_thread(own_cluster.kill_master, victim)
        else:
            new = await asyncio.to_thread(own_cluster.failover, victim)
        for _ in range(3):
            await publish_round()
        # The node reports the moved channels lost once it caught up on the new
        # master (what was published before is skipped: their clients resubscribe).
        await eventually(lambda: set(subscriber.lost) >= set(moved), timeout=seconds(20))
        await publish_round()
        await eventually(lambda: all(delivered(subscriber, c)[-1:] == [count - 1]
                                     for c in channels), timeout=seconds(20))
        for channel in moved:
            assert subscriber.backend._feeds.node_of(channel) == f"127.0.0.1:{new.port}"
    for channel in channels:
        assert_no_silent_gap(subscriber, channel)
    # The new master has another run id: its channels start a new epoch, reported;
    # the channels of the other masters were not touched.
    assert sorted(subscriber.lost) == sorted(moved)
    for channel in stayed:
        assert delivered(subscriber, channel) == list(range(count))

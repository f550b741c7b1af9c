"""The Sentinel and Cluster setups of tests/support/redis_server.py, proven through
redis-py itself, and what redis-py does on them (research for the Redis backend).

Measured on redis-server 7.0.15 with redis-py 8.2.0 (``.venv``) and 5.0.2
(``.venv-min``, the declared minimum); each test says what it shows. In short:

Sentinel (``redis.asyncio.sentinel.Sentinel(...).master_for(name)``)
    * A master killed: every command fails until Sentinel has promoted the replica,
      2.3-2.7 s after the kill with ``down-after-milliseconds 1000``: first
      ``redis.exceptions.ConnectionError`` (connection refused) for 1-2 s, until
      the sentinels see the master down (a second without a reply to their
      once-a-second PING), then ``redis.asyncio.sentinel.MasterNotFoundError`` (a
      ConnectionError subclass) for ~0.5 s, until the switch; each command fails
      at once. Then the same client works again by itself, and so does the same
      ``PubSub`` object: after one ConnectionError, polling it again reconnects
      through Sentinel to the new master and subscribes again (messages published
      in between are lost).
    * A forced failover (SENTINEL FAILOVER) is not coordinated: the promoted
      replica takes writes from the moment Sentinel sent it REPLICAOF NO ONE,
      while redis-py's pooled connections still reach the old master, which
      acknowledges writes that are lost when it becomes a replica. Sentinel itself
      demotes it only about 10 s later (8 s of waiting, then its next INFO). Once
      demoted, the first command on a stale connection raises
      ``redis.exceptions.ConnectionError("The previous master is now a slave")``
      (redis-py turns the READONLY error into it and drops the connection), and
      the next one goes to the new master. A pub/sub connection to the old master
      keeps receiving after the demotion: PUBLISH is replicated to replicas.
    * ``SentinelConnectionPool`` re-asks Sentinel only when it opens a connection:
      until then ``pubsub()`` takes an idle pooled connection to the old master.
      ``await client.connection_pool.get_master_address()`` re-asks and drops the
      idle connections if the master changed.

Cluster (``redis.asyncio.cluster.RedisCluster``)
    * Keys in any slot, ``register_script`` on keys of one hash-tag slot, and a
      script calling ``SPUBLISH`` on a channel of that same slot (as KEYS[2] or in
      ARGV) work on both versions; a channel of another slot fails the script
      with ``ResponseError`` ("Script attempted to access a non local key").
    * ``RedisCluster.pubsub()`` (``ClusterPubSub`` with ``ssubscribe`` and
      ``get_sharded_message``) exists in 8.2.0 (new in 8.0.0), not in 5.0.2.
      ``redis.asyncio.client.PubSub.ssubscribe`` and ``get_sharded_message`` also
      exist in 8.2.0 only; on 5.0.2, ``execute_command("SSUBSCRIBE", channel)`` on
      a plain ``redis.asyncio.Redis`` connected to the slot's master works, and
      ``get_message()`` returns the ``smessage`` (but the PubSub does not count it
      as a subscription: no resubscribe on reconnect, and
      ``ignore_subscribe_messages`` drops smessages too).
    * SPUBLISH reaches only SSUBSCRIBE on the shard of the channel's slot: a
      classic SUBSCRIBE to the same name, on that master or another, gets nothing.
    * CLUSTER FAILOVER (coordinated) is invisible to RedisCluster: no error, MOVED
      is followed.
    * A master killed: 8.2.0 retries (10 attempts, exponential backoff up to 1 s),
      so the command in flight blocked about 3 s and then succeeded: no exception
      reached the caller in our runs. 5.0.2 (3 quick attempts) raised
      ``redis.exceptions.ConnectionError`` ("Error 111 connecting to ...") for each
      command, every ~0.2 s, until the replica was promoted (about 2.3 s with
      ``cluster-node-timeout 1000``). Both recover by themselves. A plain PubSub on
      the dead master raises ConnectionError for good; 8.2.0's ClusterPubSub raises
      ConnectionError from ``get_sharded_message`` until the promotion, then
      subscribes again on the new master by itself.

Either topology: in 8.2.0 a plain ``redis.asyncio.Redis(host, port)`` (and its
PubSub) retries a refused connection by default (``Retry(ExponentialWithJitterBackoff(
base=0.01, cap=1), retries=10)``), so a call to a dead server raises ConnectionError
only after 2-5 s; 5.0.2 raises at once. A ``master_for`` client gets no such retry
(its connections come from the SentinelConnectionPool): it fails at once on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from tests.support import seconds
from tests.support.redis_server import (
    ClusterSetup,
    SentinelSetup,
    run_cluster,
    run_sentinel,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: The installed redis-py, as (major, minor).
REDIS_PY = tuple(int(part) for part in redis.__version__.split(".")[:2])


def unique(name: str) -> str:
    """A name no other test uses (the fixtures are shared by the module)."""
    return f"{name}-{secrets.token_hex(4)}"


async def next_message(pubsub: Any, kind: str, timeout: float = 5) -> dict[str, Any]:
    """The next message of type ``kind`` (``message``, ``smessage``, ``subscribe``,
    ...), skipping others; AssertionError after ``timeout`` seconds (scaled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(timeout)
    while (left := deadline - loop.time()) > 0:
        message = await pubsub.get_message(timeout=min(left, 0.5))
        if message is not None and message["type"] == kind:
            return dict(message)
    raise AssertionError(f"no {kind!r} message within {seconds(timeout):.1f} s")


async def ssubscribe(pubsub: Any, channel: str) -> None:
    """SSUBSCRIBE on a plain PubSub: ``ssubscribe()`` where redis-py has it (8.2.0),
    the raw command otherwise (5.0.2); return once confirmed."""
    if hasattr(pubsub, "ssubscribe"):
        await pubsub.ssubscribe(channel)
    else:
        await pubsub.execute_command("SSUBSCRIBE", channel)
    await next_message(pubsub, "ssubscribe")


class Writes:
    """Numbered SETs (``<prefix>:<n>``) in a loop, 10 ms apart, recording how each
    ended: the probe for what a client sees during a failover."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        #: (start, end, number, error or None), in order.
        self.outcomes: list[tuple[float, float, int, RedisError | None]] = []
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    async def __aenter__(self) -> Writes:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        number = 0
        while True:
            number += 1
            start = self.now()
            error: RedisError | None = None
            try:
                await self.client.set(f"{self.prefix}:{number}", number)
            except RedisError as caught:
                error = caught
            self.outcomes.append((start, self.now(), number, error))
            await asyncio.sleep(0.01)

    async def wait_count(self, count: int) -> None:
        """Until ``count`` more writes have ended."""
        target = len(self.outcomes) + count
        while len(self.outcomes) < target:
            await asyncio.sleep(0.005)

    @property
    def acked(self) -> list[int]:
        """The numbers of the writes Redis acknowledged."""
        return [number for _, _, number, error in self.outcomes if error is None]

    @property
    def errors(self) -> list[RedisError]:
        """The exceptions that reached the caller, in order."""
        return [error for *_, error in self.outcomes if error is not None]

    def longest_gap(self) -> float:
        """The longest time between two acknowledged writes (write unavailability)."""
        ends = [end for _, end, _, error in self.outcomes if error is None]
        return max((b - a for a, b in zip(ends, ends[1:], strict=False)), default=0.0)

    def lost(self, keys: set[str]) -> list[int]:
        """The acknowledged writes missing from ``keys`` (a new master's KEYS)."""
        return [number for number in self.acked if f"{self.prefix}:{number}" not in keys]


# --- Sentinel ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sentinel_master(setup: SentinelSetup) -> AsyncIterator[aioredis.Redis]:
    """``Sentinel(...).master_for(name)``, closed afterwards with the sentinel clients
    (left open they warn at garbage collection on 5.0.2)."""
    sentinel = Sentinel(setup.sentinel_addresses, socket_timeout=seconds(2))
    client = sentinel.master_for(setup.master_name, socket_timeout=seconds(2))
    try:
        yield client
    finally:
        await client.aclose()
        for sentinel_client in sentinel.sentinels:
            await sentinel_client.aclose()


def test_sentinel_setup_describes_itself(redis_sentinel: SentinelSetup) -> None:
    """The URL names the three sentinels and the master; a sentinel names the master."""
    ports = ",".join(f"127.0.0.1:{port}" for port in redis_sentinel.sentinel_ports)
    assert redis_sentinel.url == f"redis+sentinel://{ports}/rtlink/0"
    assert len(redis_sentinel.sentinel_ports) == 3
    assert redis_sentinel.current_master_port() == redis_sentinel.master.port
    assert redis_sentinel.master.role() == "master"
    assert [replica.role() for replica in redis_sentinel.replicas] == ["slave"]


async def test_sentinel_master_for_reads_writes_and_subscribes(
        redis_sentinel: SentinelSetup) -> None:
    """``master_for`` reaches the master: SET/GET, and ``pubsub()`` on it subscribes
    on the master (a message published through the same client arrives)."""
    key, channel = unique("key"), unique("channel")
    async with sentinel_master(redis_sentinel) as client:
        await client.set(key, "value")
        assert await client.get(key) == b"value"
        assert redis_sentinel.master.call("GET", key) == "value"
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        await next_message(pubsub, "subscribe")
        assert pubsub.connection is not None
        assert pubsub.connection.port == redis_sentinel.master.port
        await client.publish(channel, "hello")
        assert (await next_message(pubsub, "message"))["data"] == b"hello"
        await pubsub.aclose()


async def test_sentinel_forced_failover() -> None:
    """SENTINEL FAILOVER with the harness demoting the old master at once (what
    Sentinel does itself ~10 s later): writes through the same ``master_for``
    client go on; the first one on the demoted master raises
    ``ConnectionError("The previous master is now a slave")``, the next succeeds
    on the new master. The writes the old master acknowledged after the promotion
    are lost. A pub/sub connection made before still receives (from the old
    master, now a replica); a new ``pubsub()`` subscribes on the new master.

    Measured: the harness's failover() takes ~1-2 s; one error, no longer gap
    between two acknowledged writes than ~20 ms; 50-70 writes (0.5-0.7 s at 10 ms
    apart) lost, on both redis-py versions.
    """
    channel = unique("channel")
    with run_sentinel() as setup:
        old = setup.master
        async with sentinel_master(setup) as client:
            before = client.pubsub()
            await before.subscribe(channel)
            await next_message(before, "subscribe")
            async with Writes(client, "forced") as writes:
                await writes.wait_count(5)
                new = await asyncio.to_thread(setup.failover)
                await writes.wait_count(10)
            assert new is not old and new.port == setup.current_master_port()
            assert old.role() == "slave"
            assert writes.errors, "no write failed: did the failover happen?"
            assert all(type(error) is RedisConnectionError
                       and "previous master is now a slave" in str(error)
                       for error in writes.errors), writes.errors
            lost = writes.lost(set(new.call("KEYS", "forced:*")))
            assert lost, "the old master acknowledged no write after the promotion"
            first_error = next(n for *_, n, error in writes.outcomes if error is not None)
            assert max(lost) < first_error, "a write after the switch was lost"
            assert writes.longest_gap() < seconds(2), writes.longest_gap()

            await client.publish(channel, "after")  # on the new master, replicated
            assert (await next_message(before, "message"))["data"] == b"after"
            assert before.connection is not None and before.connection.port == old.port
            fresh = client.pubsub()
            await fresh.subscribe(channel)
            await next_message(fresh, "subscribe")
            assert fresh.connection is not None and fresh.connection.port == new.port
            await before.aclose()
            await fresh.aclose()


async def test_sentinel_failover_pooled_connections_stay_on_old_master() -> None:
    """Until the old master is demoted, ``master_for``'s pool keeps its idle
    connections to it: a write succeeds there (and never reaches the new master),
    and a new ``pubsub()`` takes such a connection too. ``get_master_address()``
    on the pool re-asks Sentinel and drops the idle connections when the master
    changed: what comes next goes to the new master."""
    with run_sentinel() as setup:
        old = setup.master
        async with sentinel_master(setup) as client:
            await client.set("warm", 1)  # leaves an idle connection to the master
            new = await asyncio.to_thread(setup.failover, 30, False)  # no demotion
            assert old.role() == "master"  # two masters for now

            await client.set("split", 1)
            assert old.call("GET", "split") == "1"
            assert new.call("GET", "split") is None
            stale = client.pubsub()
            await stale.subscribe(unique("channel"))
            assert stale.connection is not None and stale.connection.port == old.port
            await stale.aclose()

            await client.connection_pool.get_master_address()
            fresh = client.pubsub()
            await fresh.subscribe(unique("channel"))
            assert fresh.connection is not None and fresh.connection.port == new.port
            await fresh.aclose()
            await client.set("after", 1)
            assert new.call("GET", "after") == "1"


async def test_sentinel_master_killed() -> None:
    """A killed master: ConnectionError (refused), then MasterNotFoundError once
    the sentinels flag it down, until the replica is promoted; then the same
    client writes again, and the same PubSub, polled after its ConnectionError,
    resubscribes on the new master by itself.

    Measured: 1-2 s of ConnectionError, ~0.5 s of MasterNotFoundError, writes
    back 2.3-2.7 s after the kill, on both redis-py versions; no acknowledged
    write lost (each had reached the replica before the kill).
    """
    channel = unique("channel")
    with run_sentinel() as setup:
        old = setup.master
        async with sentinel_master(setup) as client:
            pubsub = client.pubsub()
            await pubsub.subscribe(channel)
            await next_message(pubsub, "subscribe")
            async with Writes(client, "killed") as writes:
                await writes.wait_count(5)
                killed_at = writes.now()
                old.kill()
                new = await asyncio.to_thread(setup.wait_master_changed, old.port)
                await writes.wait_count(10)
            kinds = [type(error) for error in writes.errors]
            assert set(kinds) == {RedisConnectionError, MasterNotFoundError}, kinds
            assert kinds.index(MasterNotFoundError) > 0  # refused first, then not found
            back = next(end for start, end, _, error in writes.outcomes
                        if error is None and start > killed_at)
            assert back - killed_at < seconds(10)
            # Replication is asynchronous: only a write acknowledged just before the
            # kill may be missing (none was in our runs), never one after the switch.
            lost = writes.lost(set(new.call("KEYS", "killed:*")))
            assert all(start < killed_at for start, _, number, _ in writes.outcomes
                       if number in lost), lost

            with pytest.raises(RedisConnectionError):
                await pubsub.get_message(timeout=1)
            await next_message(pubsub, "subscribe")  # reconnected through Sentinel
            assert pubsub.connection is not None and pubsub.connection.port == new.port
            await client.publish(channel, "after")
            assert (await next_message(pubsub, "message"))["data"] == b"after"
            await pubsub.aclose()


# --- Cluster ----------------------------------------------------------------------------------


def cluster_client(cluster: ClusterSetup) -> RedisCluster:
    """An async RedisCluster knowing the setup's startup nodes."""
    return RedisCluster(startup_nodes=[ClusterNode(host, port)
                                       for host, port in cluster.startup_nodes])


def tag_on_other_master(cluster: ClusterSetup, master_port: int) -> str:
    """A hash tag whose slot another master than ``master_port`` serves."""
    for index in range(1000):
        tag = f"{{other{index}}}"
        if cluster.master_for_key(tag).port != master_port:
            return tag
    raise AssertionError("every tag on one master?")


def test_cluster_setup_describes_itself(redis_cluster: ClusterSetup) -> None:
    """Three masters share the slots, each with one replica; the URL names the
    masters; a key's master is the one that holds it after a SET on it."""
    masters = redis_cluster.masters()
    assert len(masters) == 3 and len(redis_cluster.replicas()) == 3
    scheme, _, hosts = redis_cluster.url.partition("://")
    assert scheme == "redis+cluster"
    assert set(hosts.split(",")) == {f"127.0.0.1:{master.port}" for master in masters}
    assert redis_cluster.startup_nodes == [node.address for node in redis_cluster.nodes[:3]]
    for master in masters:
        assert redis_cluster.replica_of(master).role() == "slave"
    master = redis_cluster.master_for_key("{abc}:x")
    assert master is redis_cluster.master_of_slot(redis_cluster.keyslot("abc"))
    assert master.call("SET", "{abc}:x", "1") == "OK"  # not MOVED: it serves the slot


async def test_cluster_keys_across_masters(redis_cluster: ClusterSetup) -> None:
    """SET/GET through RedisCluster on keys that land on all three masters."""
    keys = [unique(f"key{index}") for index in range(30)]
    assert len({redis_cluster.master_for_key(key).port for key in keys}) == 3
    client = cluster_client(redis_cluster)
    try:
        for key in keys:
            await client.set(key, key)
        assert [await client.get(key) for key in keys] == [key.encode() for key in keys]
    finally:
        await client.aclose()


async def test_cluster_script_publishes_to_the_shard_channel(
        redis_cluster: ClusterSetup) -> None:
    """A script registered through RedisCluster, on keys of one hash-tag slot, SETs
    and SPUBLISHes to a channel with the same hash tag (channel in KEYS[2]; by
    EVALSHA again, directly). SSUBSCRIBE on that slot's master gets both messages;
    a classic SUBSCRIBE to the same name, on that master or another, gets nothing.
    A channel of another slot fails the script (ResponseError)."""
    tag = "{" + unique("room") + "}"
    key, channel = f"{tag}:history", f"{tag}:channel"
    master = redis_cluster.master_for_key(channel)
    other = next(m for m in redis_cluster.masters() if m is not master)
    client = cluster_client(redis_cluster)
    shard = aioredis.Redis(host="127.0.0.1", port=master.port)
    classic_here = aioredis.Redis(host="127.0.0.1", port=master.port)
    classic_there = aioredis.Redis(host="127.0.0.1", port=other.port)
    sharded, here, there = shard.pubsub(), classic_here.pubsub(), classic_there.pubsub()
    try:
        await ssubscribe(sharded, channel)
        for pubsub in (here, there):
            await pubsub.subscribe(channel)
            await next_message(pubsub, "subscribe")
        script = client.register_script(
            "redis.call('SET', KEYS[1], ARGV[1])\n"
            "return redis.call('SPUBLISH', KEYS[2], ARGV[1])"
        )
        assert await script(keys=[key, channel], args=["first"]) == 1  # one subscriber
        assert await client.evalsha(script.sha, 2, key, channel, "second") == 1
        assert master.call("GET", key) == "second"
        assert (await next_message(sharded, "smessage"))["data"] == b"first"
        assert (await next_message(sharded, "smessage"))["data"] == b"second"
        assert await here.get_message(timeout=0.3) is None
        assert await there.get_message(timeout=0.3) is None

        elsewhere = tag_on_other_master(redis_cluster, master.port) + ":channel"
        with pytest.raises(ResponseError, match="non local key"):
            await client.eval("return redis.call('SPUBLISH', ARGV[1], 'x')", 1, key,
                              elsewhere)
    finally:
        for pubsub in (sharded, here, there):
            await pubsub.aclose()
        for connection in (shard, classic_here, classic_there, client):
            await connection.aclose()


def test_redis_py_sharded_pubsub_api() -> None:
    """Which sharded pub/sub APIs this redis-py has: all of them in 8.2.0 (async
    cluster pub/sub is new in 8.0.0), none in 5.0.2 (whose async PubSub still
    passes ``execute_command("SSUBSCRIBE", ...)`` through, see above)."""
    from redis.asyncio.client import PubSub

    apis = {
        "RedisCluster.pubsub": hasattr(RedisCluster, "pubsub"),
        "PubSub.ssubscribe": hasattr(PubSub, "ssubscribe"),
        "PubSub.get_sharded_message": hasattr(PubSub, "get_sharded_message"),
        "RedisCluster.spublish": hasattr(RedisCluster, "spublish"),
    }
    if REDIS_PY >= (8, 0):
        assert all(apis.values()), apis
    elif REDIS_PY == (5, 0):
        assert not any(apis.values()), apis
    else:
        pytest.skip(f"redis-py {redis.__version__}: not surveyed ({apis})")


@pytest.mark.skipif(not hasattr(RedisCluster, "pubsub"),
                    reason=f"redis-py {redis.__version__}: no async cluster pub/sub")
async def test_cluster_pubsub_ssubscribe(redis_cluster: ClusterSetup) -> None:
    """``RedisCluster.pubsub().ssubscribe()`` subscribes on the slot's master;
    ``get_sharded_message`` returns what a script SPUBLISHes there."""
    tag = "{" + unique("room") + "}"
    channel = f"{tag}:channel"
    client = cluster_client(redis_cluster)
    pubsub = client.pubsub()
    try:
        await pubsub.ssubscribe(channel)
        confirmation = await pubsub.get_sharded_message(timeout=seconds(2))
        assert confirmation is not None and confirmation["type"] == "ssubscribe"
        await client.eval("return redis.call('SPUBLISH', KEYS[1], ARGV[1])", 1, channel, "hi")
        message = await pubsub.get_sharded_message(timeout=seconds(2))
        assert message is not None and message["data"] == b"hi"
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_cluster_failover_then_master_killed() -> None:
    """CLUSTER FAILOVER, then SIGKILL of the new master, under a steady writer on
    one slot: the coordinated failover costs no error; the kill costs ~2.5 s of
    unavailability, then the same RedisCluster writes again by itself. Errors that
    reach the caller are ConnectionError only (none on 8.2.0 in our runs: its
    retries outlast the failover; one per command on 5.0.2). A plain PubSub on the
    killed master raises ConnectionError (on 8.2.0 only after the default retries
    of ``redis.asyncio.Redis``, 10 with backoff up to 1 s: 2-5 s per call; at once
    on 5.0.2); 8.2.0's ClusterPubSub subscribes again on the new master by itself.

    Measured: failover() ~0.2-0.5 s, kill_master() ~2.3-2.5 s; the longest gap
    between acknowledged writes ~3 s on 8.2.0 (one SET blocked in retries), ~2.3 s
    on 5.0.2.
    """
    tag = "{" + unique("room") + "}"
    channel = f"{tag}:channel"
    with run_cluster() as cluster:
        client = cluster_client(cluster)
        try:
            async with Writes(client, tag) as writes:
                await writes.wait_count(5)
                first = cluster.master_for_key(channel)
                promoted = await asyncio.to_thread(cluster.failover, first)
                await writes.wait_count(5)
            assert promoted is cluster.master_for_key(channel) and first.role() == "slave"
            assert not writes.errors, writes.errors

            plain = aioredis.Redis(host="127.0.0.1", port=promoted.port)
            sharded = plain.pubsub()
            await ssubscribe(sharded, channel)
            cluster_pubsub = client.pubsub() if hasattr(client, "pubsub") else None
            if cluster_pubsub is not None:
                await cluster_pubsub.ssubscribe(channel)
                await cluster_pubsub.get_sharded_message(timeout=seconds(2))

            async with Writes(client, tag + "k") as writes:
                await writes.wait_count(5)
                killed_at = writes.now()
                new = await asyncio.to_thread(cluster.kill_master, promoted)
                await writes.wait_count(10)
            assert new is first  # its only replica
            assert all(type(error) is RedisConnectionError for error in writes.errors)
            back = next(end for start, end, _, error in writes.outcomes
                        if error is None and start > killed_at)
            assert back - killed_at < seconds(15)
            assert writes.longest_gap() < seconds(15)

            with pytest.raises(RedisConnectionError):
                await sharded.get_message(timeout=0.5)  # after 8.2.0's retries: 2-5 s
            await sharded.aclose()
            await plain.aclose()
            if cluster_pubsub is not None:
                await resubscribed(client, cluster_pubsub, channel)
                await cluster_pubsub.aclose()
        finally:
            await client.aclose()


async def resubscribed(client: RedisCluster, pubsub: Any, channel: str) -> None:
    """Poll ``pubsub`` through its errors until an SPUBLISH on ``channel`` arrives."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(10)
    while loop.time() < deadline:
        await client.spublish(channel, "after")
        try:
            message = await pubsub.get_sharded_message(timeout=0.2)
        except RedisConnectionError:
            await asyncio.sleep(0.05)
            continue
        if message is not None and message["type"] == "smessage":
            return
    raise AssertionError("the ClusterPubSub never got a message after the failover")

"""Storms on the Redis engine converge: a pub/sub reconnection with thousands of live
channels catches every one up (reading history only where a channel moved on), with
one summary line; a thousand clients subscribing at once through a real server all
succeed; reads are shared, batched, and answered from what the node knows.

The full-scale figures (10,000 clients, 100,000 live channels) are measured by
``bench/scenarios/storm.py``; these tests hold the same properties at a scale the suite
can afford.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

import rtlink
from rtlink.backends import HistoryPolicy
from rtlink.backends.redis import RedisBackend
from rtlink.protocol import Position
from tests.support import Relay, eventually, run_server, seconds
from tests.support.redis_server import RedisServer, run_redis

from .test_redis import POLICY, node, unique

pytestmark = pytest.mark.redis


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the module's Redis, to look at what the engine did."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def script_calls(raw: aioredis.Redis) -> int:
    """EVALSHA commands Redis ran so far (every script call of the engine is one)."""
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.slow
async def test_2000_live_channels_catch_up_after_a_reconnection_with_one_summary_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtlink.backends.redis")
    channels = [f"u:{i}" for i in range(2_000)]
    rng = random.Random(19)
    gap_channels = rng.sample(channels, 500)
    with run_redis() as redis_server:
        relay = await Relay(redis_server.port).start()
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            async with node(f"redis://127.0.0.1:{relay.port}/0") as a, \
                    node(redis_server.url) as publisher:
                await asyncio.gather(*(a.backend.subscribe(c) for c in channels))
                before = [(await publisher.backend.publish(c, "before", key=None,
                                                           policy=POLICY)).position
                          for c in gap_channels[:50]]
                await eventually(lambda: len(a.received) == 50)
                caplog.clear()
                reads_before = await script_calls(raw)

                relay.refuse = True  # the node is cut off from Redis ...
                relay.cut()
                gap: dict[str, list[Position]] = {}
                for i, channel in enumerate(gap_channels):  # ... while these go by
                    for n in range(1 + i % 3):
                        result = await publisher.backend.publish(channel, n, key=None,
                                                                 policy=POLICY)
                        gap.setdefault(channel, []).append(result.position)
                published = sum(len(positions) for positions in gap.values())
                relay.refuse = False

                await eventually(lambda: len(a.received) == 50 + published, timeout=30)
                await asyncio.sleep(0.2)  # nothing more may come
                for channel, positions in gap.items():
                    got = [p.position for p in a.received[50:] if p.channel == channel]
                    assert got == positions, channel  # each once, in order
                assert a.lost == []
                assert [p.position for p in a.received[:50]] == before

                # TOPS scripts of up to 500 channels, HISTORY scripts of up to 100
                # channels with a gap (beside the publisher's): a few dozen at most,
                # where reading every channel's history took 2,000.
                scripts = await script_calls(raw) - reads_before - published
                assert scripts <= 40, scripts
                # Bounded logging: the loss (and reconnection attempts), then one
                # summary line, however many channels caught up.
                summaries = [r.getMessage() for r in caplog.records
                             if "caught up" in r.getMessage()]
                assert len(summaries) == 1, summaries
                assert "2000 channels subscribed again" in summaries[0]
                assert (f"500 read a gap from history ({published} publications), 0 lost"
                        in summaries[0])
                assert len(caplog.records) <= 10, [r.getMessage() for r in caplog.records]
        finally:
            await raw.aclose()
            await relay.close()


@pytest.mark.slow
async def test_1000_clients_subscribing_at_once_through_a_real_server_all_succeed(
    redis_server: RedisServer, raw: aioredis.Redis,
) -> None:
    prefix = unique("burst")
    hub = rtlink.Hub(backend=RedisBackend(redis_server.url, prefix=prefix),
                     channels={"u:*": rtlink.ChannelOptions()})
    count = 1_000
    async with run_server(hub) as server:
        # Half the channels have a publication, resumed from before it.
        resumes = {}
        for i in range(0, count, 2):
            position = await hub.publish(f"u:{i}", {"n": i})
            resumes[i] = {"epoch": position.epoch, "offset": 0}
        scripts = await script_calls(raw)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            frames = await asyncio.gather(*(
                subscribe(session, f"ws://127.0.0.1:{server.port}/rt/ws", f"u:{i}",
                          resumes.get(i))
                for i in range(count)))
        errors = [f for f in frames if f[0]["type"] != "subscribed"]
        assert errors == []
        assert all(f[0]["recovered"] for f in frames)
        assert [len(f) - 1 for f in frames] == [1 - i % 2 for i in range(count)]
        # Batched: a thousand subscribes and 500 resumes took a few dozen scripts.
        assert await script_calls(raw) - scripts <= 60


async def subscribe(session: aiohttp.ClientSession, url: str, channel: str,
                    since: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Subscribe on a new WebSocket; the answer and the publications replayed."""
    frame: dict[str, Any] = {"type": "subscribe", "id": 1, "channel": channel}
    if since is not None:
        frame["since"] = since
    async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        await ws.send_str(json.dumps(frame))
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(seconds(30)):
            while not frames or (since is not None and len(frames) < 2):
                message = await ws.receive()
                for line in message.data.split("\n"):
                    decoded = json.loads(line)
                    if decoded["type"] in ("subscribed", "error", "publication"):
                        frames.append(decoded)
                if frames and frames[0]["type"] == "error":
                    break
        return frames


async def test_a_subscribe_without_since_on_a_live_channel_reads_nothing_from_redis(
    redis_server: RedisServer, raw: aioredis.Redis,
) -> None:
    async with node(redis_server.url, prefix=unique("known")) as a:
        await a.backend.subscribe("c")
        published = await a.backend.publish("c", 1, key=None, policy=POLICY)
        await eventually(lambda: len(a.received) == 1)
        # Load the history script first: Redis counts a call that met NOSCRIPT too, and
        # whether this Redis has run the script before depends on the tests before.
        await a.backend.history("warm-up", Position("x", 0), policy=POLICY)
        scripts = await script_calls(raw)
        for _ in range(100):
            result = await a.backend.history("c", None, policy=POLICY)
            assert (result.position, result.recovered) == (published.position, True)
            # A client that has what the node delivered is recovered, from memory.
            again = await a.backend.history("c", published.position, policy=POLICY)
            assert (again.publications, again.recovered) == ([], True)
        assert await script_calls(raw) == scripts
        # Behind the node's position, or on a channel not live here: Redis answers.
        behind = await a.backend.history("c", Position(published.position.epoch, 0),
                                         policy=POLICY)
        assert [p.data for p in behind.publications] == [1]
        await a.backend.history("elsewhere", None, policy=POLICY)
        assert await script_calls(raw) == scripts + 2


async def test_concurrent_reads_are_batched_and_the_same_read_is_shared(
    redis_server: RedisServer, raw: aioredis.Redis,
) -> None:
    async with node(redis_server.url, prefix=unique("shared")) as a:
        channels = [f"c{i}" for i in range(150)]
        tops = {c: (await a.backend.publish(c, c, key=None, policy=POLICY)).position
                for c in channels}
        # The history script loaded first (a call that met NOSCRIPT counts too).
        await a.backend.history("warm-up", Position("x", 0), policy=POLICY)
        scripts = await script_calls(raw)
        # 150 channels, each read by 4 callers at once from before its publication.
        results = await asyncio.gather(*(
            a.backend.history(c, Position(tops[c].epoch, 0), policy=POLICY)
            for c in channels for _ in range(4)))
        assert [r.publications[0].data for r in results] == [
            c for c in channels for _ in range(4)]
        assert await script_calls(raw) - scripts == 2  # 100 channels per script


async def test_resuming_after_a_lost_history_is_one_read_batched_with_the_others(
    redis_server: RedisServer, raw: aioredis.Redis,
) -> None:
    # After Redis lost a channel's history (here: a position of another epoch) a
    # resuming subscription replays what is kept (protocol.md 6.2): the gap and the
    # fallback are one script, and those of many channels share batches.
    async with node(redis_server.url, prefix=unique("replay")) as a:
        channels = [f"c{i}" for i in range(150)]
        for c in channels:
            for n in range(3):
                await a.backend.publish(c, n, key=None, policy=POLICY)
        await a.backend.history("warm-up", Position("x", 0), policy=POLICY)
        scripts = await script_calls(raw)
        results = await asyncio.gather(*(
            a.backend.replay(c, Position("lost", 7), policy=POLICY, last=2)
            for c in channels))
        assert all(([p.data for p in r.publications], r.recovered) == ([1, 2], False)
                   for r in results)
        assert await script_calls(raw) - scripts == 2  # 100 channels per script


async def test_too_many_waiting_reads_are_refused_as_unavailable(
    redis_server: RedisServer,
) -> None:
    # One command connection: half of it for reads is one batch at a time, and at most
    # 1,000 reads may wait for theirs; beyond, a 503 the client retries.
    async with node(redis_server.url, prefix=unique("busy"), max_connections=1) as a:
        outcomes = await asyncio.gather(*(
            a.backend.history(f"c{i}", Position("e", 0), policy=POLICY)
            for i in range(1_500)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, rtlink.BackendUnavailable)]
        assert len(refused) == 500
        assert all("waiting already" in str(o) for o in refused)
        assert all(o.recovered is False for o in outcomes
                   if not isinstance(o, BaseException))


async def test_a_first_subscribe_fails_as_unavailable_when_redis_cannot_answer_in_time(
    redis_server: RedisServer, raw: aioredis.Redis,
) -> None:
    # Redis confirms the subscription, but holds the script that reads the channel's
    # top (writes are paused): the first subscribe fails as temporary, after the
    # command's timeout, rather than waiting; then works once Redis answers.
    async with node(redis_server.url, prefix=unique("paused"), socket_timeout=0.5) as a:
        await raw.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
        try:
            with pytest.raises(rtlink.BackendUnavailable, match="Redis at"):
                await a.backend.subscribe("c")
        finally:
            await raw.execute_command("CLIENT", "UNPAUSE")
        await a.backend.subscribe("c")
        assert (await a.backend.history("c", None, policy=HistoryPolicy())).recovered


async def test_a_long_polling_client_costs_no_redis_command_per_poll(
    redis_server: RedisServer, raw: aioredis.Redis,
) -> None:
    # Every poll subscribes its channels with their positions, and unsubscribes when it
    # is answered. The channel lingers between two polls, and the node answers the
    # resume from its own position: a client that is up to date polls for free. (One
    # that missed a publication between two polls reads it from Redis.)
    prefix = unique("poll")
    hub = rtlink.Hub(backend=RedisBackend(redis_server.url, prefix=prefix),
                     poll_timeout=0.1)

    async def calls() -> dict[str, int]:
        stats = await raw.info("commandstats")
        return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
                for name in ("evalsha", "subscribe", "unsubscribe")}

    async with run_server(hub) as server, \
            rtlink.Client(server.url, transports=["longpoll"]) as client, \
            client.subscribe("news") as subscription:
        await hub.publish("news", 0)
        await asyncio.wait_for(anext(aiter(subscription)), seconds(5))
        before = await calls()
        await asyncio.sleep(1)  # about ten polls, each held 0.1 s
        assert await calls() == before
        for i in range(1, 4):
            await hub.publish("news", i)
            message = await asyncio.wait_for(anext(aiter(subscription)), seconds(5))
            assert message.data == i

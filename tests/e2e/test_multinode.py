"""Several rtlink server processes on one Redis act as one: no stickiness, nothing lost.

Every node is a real ``rtlink serve --backend redis://...`` process; Redis is a real
redis-server started by the tests, and the load balancer a real nginx balancing round
robin (tests/support/proxy.py). Clients are the Python client; publishers are clients of
another node or :class:`rtlink.Publisher` writing straight into Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

import rtlink
from tests.support import FAST_RECONNECT, Relay, collect, eventually, free_port, seconds
from tests.support.proxy import run_nginx
from tests.support.redis_server import RedisServer, run_redis

pytestmark = [pytest.mark.redis, pytest.mark.proxy]

#: Run the CLI as the console script does, without relying on it being installed.
CLI = [sys.executable, "-c", "import sys; from rtlink.cli import main; sys.exit(main())"]


class Node:
    """One ``rtlink serve`` process on a free port, sharing a Redis with the others."""

    def __init__(self, redis_url: str, port: int = 0) -> None:
        self.redis_url = redis_url
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rt"

    async def start(self) -> Node:
        self.process = await asyncio.create_subprocess_exec(
            *CLI, "serve", "--port", str(self.port), "--backend", self.redis_url,
            "--history-size", "1000", "--log-level", "warning",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(seconds(20)):
            line = (await self.process.stdout.readline()).decode()
        found = re.search(r"rtlink serving on http://127\.0\.0\.1:(\d+)/", line)
        assert found, f"node did not start: {line!r}"
        self.port = int(found[1])
        return self

    def kill(self) -> None:
        """SIGKILL: the node vanishes without closing anything."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), seconds(10))
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@contextlib.asynccontextmanager
async def nodes(redis_url: str, count: int = 2) -> AsyncIterator[list[Node]]:
    started = [Node(redis_url) for _ in range(count)]
    try:
        await asyncio.gather(*(node.start() for node in started))
        yield started
    finally:
        await asyncio.gather(*(node.stop() for node in started))


def upstreams(proxy_log: str, uri: str) -> list[str]:
    """The node (``127.0.0.1:port``) that served each logged request for ``uri``."""
    return [line.split()[3] for line in proxy_log.splitlines()
            if line.split()[1] == uri and line.split()[2] == "200"]


class Stream:
    """Publishes numbered messages straight into Redis at a steady rate."""

    def __init__(self, publisher: rtlink.Publisher, channel: str, rate: float = 100) -> None:
        self.publisher = publisher
        self.channel = channel
        self.rate = rate
        self.positions: list[rtlink.Position] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Stream:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            n = len(self.positions)
            self.positions.append(await self.publisher.publish(self.channel, n, key=f"m{n}"))
            await asyncio.sleep(1 / self.rate)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def client(url: str, transport: str, **options: Any) -> rtlink.Client:
    return rtlink.Client(url, transports=[transport], **{**FAST_RECONNECT, **options})


def assert_exactly_once_in_order(messages: list[rtlink.Message], count: int) -> None:
    assert [m.data for m in messages] == list(range(count))
    offsets = [m.position.offset for m in messages]
    assert offsets == sorted(set(offsets))


# --- the tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_for_nodes() -> Any:
    with run_redis() as server:
        yield server


async def test_subscriber_on_one_node_gets_what_is_published_on_another(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url) as (a, b), \
            rtlink.Publisher(redis_server.url) as publisher:
        async with client(a.url, "websocket") as on_a, client(b.url, "websocket") as on_b:
            async with on_a.subscribe("room") as sub:
                for i in range(20):
                    await on_b.publish("room", i)
                for i in range(20, 40):
                    await publisher.publish("room", i)
                assert_exactly_once_in_order(await collect(sub, 40), 40)


@pytest.mark.parametrize("transport", ["longpoll", "sse"])
async def test_requests_alternating_between_nodes_lose_and_repeat_nothing(
    redis_server: RedisServer, transport: str,
) -> None:
    """No stickiness: a round-robin balancer sends each long poll (or each SSE
    reconnection) to the other node; every message arrives once, in order."""
    channel = f"feed-{transport}"
    async with nodes(redis_server.url) as (a, b), \
            run_nginx([a.port, b.port], "transparent") as proxy, \
            rtlink.Publisher(redis_server.url) as publisher:
        relay = await Relay(proxy.port).start()  # to cut SSE streams
        try:
            async with client(f"http://127.0.0.1:{relay.port}/rt", transport) as c:
                async with c.subscribe(channel) as sub, \
                        Stream(publisher, channel, rate=100) as stream:
                    received = await collect(sub, 50)
                    if transport == "sse":
                        for _ in range(3):  # each reconnection goes to the other node
                            relay.cut()
                            received += await collect(sub, 50)
                    else:
                        received += await collect(sub, 150)
                count = len(stream.positions)
                received += await collect(sub, count - len(received))
                assert_exactly_once_in_order(received, count)
                assert [m.position for m in received] == stream.positions
        finally:
            await relay.close()
        uri = "/rt/poll" if transport == "longpoll" else "/rt/sse"
        served_by = upstreams(proxy.access_log, uri)
        nodes_used = {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}
        assert set(served_by) == nodes_used, served_by
        if transport == "longpoll":
            assert len(served_by) >= 6
            # Round robin: consecutive polls of the one client went to different nodes.
            assert all(x != y for x, y in zip(served_by, served_by[1:], strict=False))
        else:
            assert len(served_by) >= 3


async def test_a_killed_node_loses_nothing_for_its_clients(
    redis_for_nodes: RedisServer,
) -> None:
    """kill -9 the node a client is on; it reconnects through the balancer to the
    other node and resumes without a gap."""
    url = redis_for_nodes.url
    a = await Node(url).start()
    spare = Node(url, port=free_port())
    try:
        # Only ``a`` is up: the client's WebSocket goes to it.
        async with run_nginx([a.port, spare.port], "transparent") as proxy, \
                rtlink.Publisher(url) as publisher, \
                client(proxy.url("/rt"), "websocket") as c:
            async with c.subscribe("orders") as sub, \
                    Stream(publisher, "orders", rate=100) as stream:
                received = await collect(sub, 30)
                await spare.start()
                a.kill()
                received += await collect(sub, 100, timeout=20)
            received += await collect(sub, len(stream.positions) - len(received))
            assert [m.position for m in received] == stream.positions
            assert_exactly_once_in_order(received, len(stream.positions))
            assert sub.recovered is True
    finally:
        a.kill()
        await spare.stop()


async def test_killed_pubsub_connections_lose_nothing_end_to_end(
    redis_for_nodes: RedisServer,
) -> None:
    url = redis_for_nodes.url
    async with nodes(url) as (a, _b), rtlink.Publisher(url) as publisher, \
            client(a.url, "websocket") as c:
        states: list[rtlink.StateChange] = []
        c.on("state", states.append)
        async with c.subscribe("ticks") as sub, Stream(publisher, "ticks", rate=200) as stream:
            received: list[rtlink.Message] = []
            for _ in range(4):
                received += await collect(sub, 40)
                assert redis_for_nodes.kill_pubsub() >= 1
            received += await collect(sub, 40)
        received += await collect(sub, len(stream.positions) - len(received))
        assert [m.position for m in received] == stream.positions
        # The nodes caught up by themselves: the client never noticed.
        assert [s.new_state for s in states] == []


async def test_a_restarted_redis_tells_subscribers_recovered_false_then_goes_live() -> None:
    with run_redis() as redis_server:
        async with nodes(redis_server.url) as (a, b):
            async with client(a.url, "websocket") as subscriber, \
                    client(b.url, "websocket") as publisher:
                events: list[rtlink.SubscribedEvent] = []
                async with subscriber.subscribe("news") as sub:
                    sub.on("subscribed", events.append)
                    for i in range(5):
                        await publisher.publish("news", i)
                    before = await collect(sub, 5)

                    redis_server.stop()
                    # Redis is down: a publish stays in the client's outbox (503 means
                    # "retry later"), it is neither lost nor failed.
                    pending = asyncio.ensure_future(publisher.publish("news", "while down"))
                    await asyncio.sleep(0.5)
                    assert not pending.done()
                    redis_server.start()

                    await eventually(lambda: any(not e.recovered for e in events),
                                     timeout=20, message="recovered = false")
                    position = await asyncio.wait_for(pending, seconds(20))
                    live = await publisher.publish("news", "live")
                    after = [await collect_one(sub)]
                    while after[-1].data != "live":
                        after.append(await collect_one(sub))
                assert [m.data for m in before] == list(range(5))
                assert position.epoch != before[-1].position.epoch  # a new history
                assert live == rtlink.Position(position.epoch, position.offset + 1)
                # "while down" landed either before the subscriber resubscribed (then
                # it is among what recovered = false said was missed) or after.
                assert [m.data for m in after] in (["live"], ["while down", "live"])
                assert after[-1].position == live


async def collect_one(sub: rtlink.Subscription) -> rtlink.Message:
    (message,) = await collect(sub, 1, timeout=20)
    return message


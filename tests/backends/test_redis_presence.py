"""Presence on Redis across nodes: a member seen from every node, a killed node's
members leaving within the documented bound, a client moving between nodes, a Redis
blip. The per-backend contract (joins and leaves announced once, expiry) is in
tests/backends/contract.py; the transports in tests/test_roster.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable

import pytest

import rtlink
from rtlink.presence import Member
from tests.support import Server, eventually, run_server, seconds
from tests.support.redis_server import RedisServer, run_redis
from tests.test_roster import ROOM, Events, presence_hub, users

pytestmark = pytest.mark.redis


@pytest.fixture
def codec() -> str:
    """One codec here: the codecs are the transports' business (tests/test_roster.py)."""
    return "json"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis under a prefix of the test's own: its nodes share it, and
    no other test's members (still within their grace period) show up."""
    return f"{redis_server.url}?prefix=presence-{secrets.token_hex(4)}"


@pytest.fixture(params=["websocket", "sse", "longpoll"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def node(redis_url: str, **options: object) -> AsyncIterator[Server]:
    async with run_server(presence_hub(backend=redis_url, **options),
                          handler_cancellation=True) as server:
        yield server


@contextlib.asynccontextmanager
async def node_process(redis_url: str, ttl: float) -> AsyncIterator[tuple[str, Callable[[], None]]]:
    """A node in a process of its own: its URL, and a function that SIGKILLs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.presence_node", redis_url, str(ttl),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(seconds(20)):
            line = (await process.stdout.readline()).decode()
        found = re.match(r"port (\d+)", line)
        assert found, f"the node did not start: {line!r}"
        yield f"http://127.0.0.1:{found[1]}/rt", process.kill
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.mark.slow  # up to 1.5 s on the HTTP transports (the grace period)
async def test_members_of_two_nodes_see_each_other(
        redis_url: str, make_client: Callable[..., rtlink.Client]) -> None:
    async with node(redis_url) as one, node(redis_url) as two:
        async with make_client(one.url, token="alice") as alice, \
                make_client(two.url, token="bob") as bob:
            async with alice.subscribe(ROOM, presence=True) as watching:
                events = Events(watching)
                async with bob.subscribe(ROOM):
                    await eventually(lambda: "bob" in events.joined(), message="bob joins")
                    for server in (one, two):
                        assert users((await server.hub.presence(ROOM)).members) == {"alice",
                                                                                   "bob"}
                    assert (await alice.presence(ROOM)).count == 2
                await eventually(lambda: "bob" in events.left(), message="bob leaves")
                assert sum(1 for d in events.diffs for m in d.leaves if m.user == "bob") == 1


@pytest.mark.slow  # 2 s: three grace periods pass
async def test_a_client_moving_to_another_node_within_the_grace_never_leaves(
        redis_url: str) -> None:
    """What a long-polling client does when its polls go to different nodes: its
    request ends on one (the member is left with the grace period) and the next
    begins on the other under the same session id."""
    async with presence_hub(backend=redis_url, presence_grace=0.4) as one, \
            presence_hub(backend=redis_url, presence_grace=0.4) as two:
        announced: list[tuple[list[Member], list[Member]]] = []
        one.roster.watch(ROOM)
        await one.backend.subscribe(ROOM)
        one.backend.set_presence_listener(
            lambda channel, joins, leaves, count: announced.append((list(joins), list(leaves))))
        carol = Member("carol-session", "carol")
        await one.roster.join(ROOM, carol)
        await two.roster.join(ROOM, carol)
        one.roster.leave(ROOM, carol, grace=True)
        await asyncio.sleep(seconds(1.5))  # more than 3 times the grace
        assert (await one.presence(ROOM)).members == (carol,)
        assert [leaves for _, leaves in announced if leaves] == []
        two.roster.leave(ROOM, carol, grace=True)
        await eventually(lambda: any(leaves for _, leaves in announced), message="the leave")


@pytest.mark.slow  # about 2 s: the TTL must pass
@pytest.mark.parametrize("transport", ["websocket"])
async def test_the_members_of_a_killed_node_leave_within_the_bound(
        redis_url: str, make_client: Callable[..., rtlink.Client]) -> None:
    ttl = 1.2
    async with node(redis_url, presence_ttl=ttl) as survivor, \
            node_process(redis_url, ttl) as (doomed_url, kill):
        async with make_client(survivor.url, token="watcher") as watcher, \
                make_client(doomed_url, token="victim") as victim:
            async with watcher.subscribe(ROOM, presence=True) as watching:
                events = Events(watching)
                async with victim.subscribe(ROOM):
                    await eventually(lambda: "victim" in events.joined(),
                                     message="the victim joins")
                    kill()
                    killed = time.monotonic()
                    # Documented bound: presence_ttl * 4/3 after the last refresh, plus
                    # the diff interval, plus scheduling slack.
                    bound = ttl * 4 / 3 + 0.25
                    await eventually(lambda: "victim" in events.left(), timeout=bound + 3,
                                     message="the victim leaves")
                    took = time.monotonic() - killed
                    print(f"the killed node's member left after {took:.2f} s "
                          f"(bound {bound:.2f} s)")
                    assert took <= seconds(bound + 0.5), f"left after {took:.2f} s"
                    assert sum(1 for d in events.diffs for m in d.leaves
                               if m.user == "victim") == 1
                    await victim.close()


@pytest.mark.slow  # about 2 s: Redis is down for longer than the TTL
@pytest.mark.parametrize("transport", ["websocket"])
async def test_members_are_registered_again_after_a_redis_blip(
        make_client: Callable[..., rtlink.Client]) -> None:
    with run_redis() as redis:
        async with node(redis.url, presence_ttl=0.9) as server:
            async with make_client(server.url, token="alice") as alice, \
                    make_client(server.url, token="bob") as bob:
                async with alice.subscribe(ROOM, presence=True) as watching, \
                        bob.subscribe(ROOM):
                    events = Events(watching)
                    await eventually(lambda: "bob" in events.joined(), message="bob joins")
                    redis.stop()  # everything Redis held is gone
                    await asyncio.sleep(seconds(1.0))
                    seen = len(events.diffs)
                    redis.start()

                    async def both_back() -> bool:
                        try:
                            return (await server.hub.presence(ROOM)).count == 2
                        except rtlink.BackendError:
                            return False

                    await eventually(both_back, timeout=10, message="both registered again")
                    # Announcements may have been lost meanwhile: the watchers are told
                    # to read the list again.
                    await eventually(lambda: any(d.truncated for d in events.diffs[seen:]),
                                     timeout=10, message="a truncated diff")
                    assert (await alice.presence(ROOM)).count == 2

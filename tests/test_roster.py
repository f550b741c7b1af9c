"""Presence through the hub and real clients on every transport (memory backend).

The Redis backend, several nodes, a killed node and a Redis blip are in
tests/backends/test_redis_presence.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import rtlink
from rtlink.codecs import get_codec
from rtlink.presence import Diff
from tests.support import (
    JS_SOURCES,
    Server,
    eventually,
    find_binary,
    missing_component,
    run_server,
    seconds,
)
from tests.test_hub import MemorySink, frames

ROOM = "room:1"


@pytest.fixture(params=["websocket", "sse", "longpoll"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def by_bearer(request: Any) -> Any:
    """Who a request is: ``Authorization: Bearer <user>``, with that user's info."""
    header = request.headers.get("Authorization", "")
    user = header.removeprefix("Bearer ") or None
    return None if user is None else {"sub": user, "info": {"name": user.title()}}


def presence_hub(**options: Any) -> rtlink.Hub:
    defaults: dict[str, Any] = {
        "channels": {"room:*": rtlink.ChannelOptions(presence=True),
                     "*": rtlink.ChannelOptions()},
        "authenticate": by_bearer, "presence_ttl": 3.0, "presence_grace": 0.6,
        "poll_timeout": 0.3,
    }
    return rtlink.Hub(**{**defaults, **options})


@contextlib.asynccontextmanager
async def presence_server(**options: Any) -> AsyncIterator[Server]:
    # As `rtlink serve` and the operations guide run aiohttp: a stream whose client
    # left ends at once, not at the next write that fails.
    async with run_server(presence_hub(**options), handler_cancellation=True) as server:
        yield server


def users(members: Any) -> set[str | None]:
    return {member.user for member in members}


class Events:
    """The ``presence`` events of a subscription."""

    def __init__(self, subscription: rtlink.Subscription) -> None:
        self.diffs: list[Diff] = []
        subscription.on("presence", self.diffs.append)

    def joined(self) -> set[str | None]:
        return {m.user for d in self.diffs for m in d.joins}

    def left(self) -> set[str | None]:
        return {m.user for d in self.diffs for m in d.leaves}


@pytest.mark.slow  # up to 2 s on the HTTP transports (the grace period)
async def test_members_join_and_leave_on_every_transport(
        make_client: Callable[..., rtlink.Client]) -> None:
    async with presence_server() as server:
        async with make_client(server.url, token="alice") as alice:
            async with alice.subscribe(ROOM, presence=True) as watching:
                events = Events(watching)
                first = await alice.presence(ROOM)
                assert (first.count, users(first.members)) == (1, {"alice"})
                assert first.members[0].info == {"name": "Alice"}
                assert first.members[0].client == alice.session_id
                async with make_client(server.url, token="bob") as bob:
                    async with bob.subscribe(ROOM):
                        await eventually(lambda: "bob" in events.joined(), message="bob joins")
                        assert events.diffs[-1].count == 2
                        both = await server.hub.presence(ROOM)
                        assert (both.count, users(both.members)) == (2, {"alice", "bob"})
                        assert users((await bob.presence(ROOM)).members) == {"alice", "bob"}
                # Gone at once on a WebSocket, after the grace period on HTTP transports.
                await eventually(lambda: "bob" in events.left(), message="bob leaves")
                assert events.diffs[-1].count == 1
                assert (await server.hub.presence(ROOM)).count == 1
        await eventually(lambda: _empty(server), message="alice leaves")


async def _empty(server: Server) -> bool:
    return (await server.hub.presence(ROOM)).count == 0


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["longpoll", "sse"])
async def test_an_http_client_stays_one_member_across_its_requests(
        make_client: Callable[..., rtlink.Client]) -> None:
    """Polls end every 0.3 s and the grace is 0.6 s: the member must neither leave nor
    change while the client keeps polling (nor when its stream is reopened)."""
    async with presence_server() as server:
        async with make_client(server.url, token="watcher",
                               transports=["websocket"]) as watcher:
            async with watcher.subscribe(ROOM, presence=True) as watching:
                events = Events(watching)
                async with make_client(server.url, token="carol") as carol:
                    async with carol.subscribe(ROOM):
                        await eventually(lambda: "carol" in events.joined(),
                                         message="carol joins")
                        session = carol.session_id
                        carol.subscribe("other")  # an SSE stream is reopened for it
                        await asyncio.sleep(seconds(2.0))
                        now = await server.hub.presence(ROOM)
                        assert [m.client for m in now.members if m.user == "carol"] == [session]
                        assert "carol" not in events.left()
                        assert [m.user for d in events.diffs for m in d.joins
                                if m.user == "carol"] == ["carol"], events.diffs
                await eventually(lambda: "carol" in events.left(), message="carol leaves")


@pytest.mark.parametrize("transport", ["websocket"])
async def test_refusals(make_client: Callable[..., rtlink.Client]) -> None:
    async with presence_server(channels={
            "room:*": rtlink.ChannelOptions(presence=True, subscribe="authenticated"),
            "plain": rtlink.ChannelOptions()}) as server:
        async with make_client(server.url) as anonymous:
            with pytest.raises(rtlink.ReadError) as refused:
                await anonymous.presence(ROOM)
            assert refused.value.code == 401
            with pytest.raises(rtlink.ReadError) as refused:
                await anonymous.presence("plain")
            assert refused.value.code == 400
            with pytest.raises(rtlink.ReadError) as refused:
                await anonymous.presence("nowhere")
            assert refused.value.code == 404
        with pytest.raises(rtlink.ChannelError):
            await server.hub.presence("plain")
        # presence: true on a channel without presence is ignored.
        async with make_client(server.url, token="dan") as dan:
            async with dan.subscribe("plain", presence=True):
                pass


@pytest.mark.parametrize("transport", ["websocket"])
async def test_a_presence_read_is_sent_again_after_a_reconnect(
        make_client: Callable[..., rtlink.Client]) -> None:
    async with presence_server() as server:
        async with make_client(server.url, token="erin") as erin:
            async with erin.subscribe(ROOM):
                read = asyncio.ensure_future(erin.presence(ROOM))
                erin.reconnect()
                info = await asyncio.wait_for(read, seconds(5))
                assert users(info.members) == {"erin"}


@pytest.mark.slow
async def test_a_reconnect_storm_costs_each_watcher_a_few_frames() -> None:
    """300 members leave and come back under new session ids, all at once: each watcher
    gets a few truncated diffs (one per interval at most), not 600 events."""
    async with presence_hub(presence_ttl=30.0) as hub:
        codec = get_codec("json")

        async def member(n: int, presence: bool = False) -> tuple[Any, MemorySink]:
            sink = MemorySink()
            peer = hub.accept(codec, {"sub": f"user{n}"}, sink, "memory")
            frame = {"type": "subscribe", "id": 1, "channel": ROOM, "presence": presence}
            await peer.receive(codec.encode(frame))
            return peer, sink

        watchers = [await member(n, presence=True) for n in range(10)]
        crowd = [await member(n) for n in range(10, 310)]
        await eventually(lambda: bool(_diffs(watchers[0][1])) and
                         _diffs(watchers[0][1])[-1]["count"] == 310, message="all joined")
        before = [len(_diffs(sink)) for _, sink in watchers]
        for peer, _ in crowd:
            peer.connection.close(1001, "storm")
        crowd = [await member(n) for n in range(10, 310)]
        await eventually(lambda: _diffs(watchers[-1][1])[-1]["count"] == 310
                         and len(_diffs(watchers[-1][1])) > before[-1], message="settled")
        await asyncio.sleep(seconds(0.3))
        for (_, sink), seen in zip(watchers, before, strict=True):
            storm = _diffs(sink)[seen:]
            assert 1 <= len(storm) <= 4, storm
            assert all(diff.get("truncated") for diff in storm)
            assert storm[-1]["count"] == 310
        assert (await hub.presence(ROOM)).count == 310
        # Counted (rtlink_presence_diffs_total): every frame the watchers got, no more.
        assert hub.stats.presence_diffs_sent == sum(len(_diffs(s)) for _, s in watchers)


def _diffs(sink: MemorySink) -> list[dict[str, Any]]:
    return [frame for frame in frames(sink, "json") if frame["type"] == "presence_diff"]


#: The JS client of the test below: a member of room:1 over long polling that reads the
#: list, tracks it until erin joins, and prints what it saw.
_JS_MEMBER = """
const client = new Client(process.argv[1], { transports: ['longpoll'], token: 'dora',
                                             shareConnection: false, storage: null });
client.subscribe('room:1', { presence: true });
await client.connect();
const first = await presence(client, 'room:1');
const seen = [];
await new Promise((resolve) => trackPresence(client, 'room:1', ({ members }) => {
  seen.push([...members.values()].map((m) => m.user).sort());
  if (seen.at(-1).includes('erin')) resolve();
  else if (seen.length == 1) console.log('ready');
}));
console.log(JSON.stringify({ first: first.members.map((m) => m.user).sort(),
                             last: seen.at(-1), session: client.sessionId }));
client.close();
"""


@pytest.mark.slow  # a Node process
@pytest.mark.parametrize("transport", ["websocket"])
async def test_the_js_client_and_its_presence_module_against_the_server(
        make_client: Callable[..., rtlink.Client]) -> None:
    """The JS client (sources, under Node, long polling over fetch) with
    rtlink-client/presence: it reads the list, gets a join, and is present itself."""
    node = find_binary("node")
    if node is None:
        missing_component("node (Node.js) is not installed")
    script = (f"import {{ Client }} from {json.dumps((JS_SOURCES / 'client.js').as_uri())};"
              "import { presence, trackPresence } from "
              f"{json.dumps((JS_SOURCES / 'presence.js').as_uri())};" + _JS_MEMBER)
    async with presence_server() as server:
        async with make_client(server.url, token="alice") as alice:
            async with alice.subscribe(ROOM, presence=True) as watching:
                events = Events(watching)
                process = await asyncio.create_subprocess_exec(
                    node, "--input-type=module", "-e", script, server.url,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                assert process.stdout is not None
                try:
                    async with asyncio.timeout(seconds(15)):
                        assert (await process.stdout.readline()).strip() == b"ready"
                        await eventually(lambda: "dora" in events.joined(), message="dora")
                        async with make_client(server.url, token="erin") as erin:
                            async with erin.subscribe(ROOM):
                                out, err = await process.communicate()
                finally:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                assert process.returncode == 0, err.decode()
                result = json.loads(out.splitlines()[-1])
                assert result["first"] == ["alice", "dora"]
                assert result["last"] == ["alice", "dora", "erin"]
                members = (await server.hub.presence(ROOM)).members
                assert any(m.client == result["session"] for m in members if m.user == "dora")

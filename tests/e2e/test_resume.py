"""Resume across disconnects: nothing lost, nothing duplicated, gaps reported.

Functional tests: a real server on loopback, real clients, real cuts (server-side
aborts, client-side drops, and a TCP relay that fails the network in between).
Every test runs once per codec.
"""

from __future__ import annotations

import asyncio

import pytest

import rtlink
from tests.support import collect, eventually, relay_to, run_server, seconds, take_offline

BIG_HISTORY = {"*": rtlink.ChannelOptions(history_size=2000, client_publish=True)}


@pytest.fixture(params=["websocket", "sse", "longpoll"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test here runs on every transport (and, through make_client, both codecs)."""
    return str(request.param)


async def test_thousand_messages_arrive_once_in_order_across_cuts(make_client) -> None:
    async with run_server(channels=BIG_HISTORY) as server, relay_to(server) as relay:
        async with make_client(server.url_via(relay)) as client:
            async with client.subscribe("feed") as sub:
                received: list[int] = []

                async def consume() -> None:
                    async for message in sub:
                        received.append(message.data["n"])
                        if len(received) == 1000:
                            return

                consumer = asyncio.create_task(consume())
                cuts = {
                    100: lambda: [c.connection.abort()  # server abort
                                  for c in server.hub.connections],
                    250: client.reconnect,                                    # client drop
                    400: relay.cut,                                           # network cut
                    550: lambda: [c.connection.abort() for c in server.hub.connections],
                    700: client.reconnect,
                    850: relay.cut,
                }
                for n in range(1000):
                    await server.hub.publish("feed", {"n": n})
                    if n in cuts:
                        # A long-polling client has a connection on the server only
                        # while a poll is held: between two polls a server abort finds
                        # nothing to abort, and a client drop or network cut breaks no
                        # request (the next poll opens a new one). Cut once the server
                        # holds one, so that every cut really breaks a connection.
                        await eventually(lambda: bool(server.hub.connections),
                                         message="a connection to cut")
                        cuts[n]()
                    if n % 20 == 0:
                        await asyncio.sleep(0.005)  # let deliveries and reconnects interleave
                async with asyncio.timeout(seconds(20)):
                    await consumer
        assert received == list(range(1000))
        # Every cut really forced a new connection through the relay (1 + 6 cuts,
        # two of which happened server-side behind the relay).
        assert relay.connections_made >= 7


async def test_subscriber_away_longer_than_history_gets_recovered_false_what_is_kept_then_live(
    make_client,
) -> None:
    small = {"*": rtlink.ChannelOptions(history_size=5)}
    async with run_server(channels=small) as server, relay_to(server) as relay:
        async with make_client(server.url_via(relay)) as client:
            events: list[rtlink.SubscribedEvent] = []
            sub = client.subscribe("news")
            sub.on("subscribed", events.append)
            await sub.wait_subscribed()
            await server.hub.publish("news", "before")
            assert (await collect(sub, 1))[0].data == "before"

            await take_offline(relay, client)
            for n in range(20):  # 20 > history_size: the gap cannot be filled
                await server.hub.publish("news", f"missed {n}")
            relay.refuse = False
            await eventually(lambda: len(events) == 2, message="re-subscription")
            assert events[0].recovered and not events[0].resumed
            assert events[1].resumed and not events[1].recovered
            assert sub.recovered is False
            # What history still keeps is replayed (protocol.md 6.2), then live.
            kept = await collect(sub, 5)
            assert [m.data for m in kept] == [f"missed {n}" for n in range(15, 20)]

            position = await server.hub.publish("news", "live")
            message = (await collect(sub, 1))[0]
            assert message.data == "live"
            assert message.position == position


async def test_gap_within_history_is_replayed_and_recovered(make_client) -> None:
    async with run_server(channels=BIG_HISTORY) as server, relay_to(server) as relay:
        async with make_client(server.url_via(relay)) as client:
            events: list[rtlink.SubscribedEvent] = []
            sub = client.subscribe("news")
            sub.on("subscribed", events.append)
            await sub.wait_subscribed()
            await take_offline(relay, client)
            for n in range(50):
                await server.hub.publish("news", n)
            relay.refuse = False
            messages = await collect(sub, 50)
            assert [m.data for m in messages] == list(range(50))
            assert events[-1].resumed and events[-1].recovered


async def test_publish_whose_ack_is_lost_is_resent_and_applied_once(make_client) -> None:
    async with run_server(channels=BIG_HISTORY) as server, relay_to(server) as relay:
        async with make_client(server.url) as watcher, \
                make_client(server.url_via(relay)) as publisher:
            watch = watcher.subscribe("orders")
            await watch.wait_subscribed()

            relay.blackhole = True  # the server's answers vanish: the ack is lost
            publish = asyncio.create_task(publisher.publish("orders", {"id": 7}))
            first = await collect(watch, 1)  # the server accepted and published it
            assert not publish.done()
            relay.blackhole = False
            relay.cut()  # the client notices only now; it must re-send on reconnect

            position = await asyncio.wait_for(publish, seconds(10))
            assert position == first[0].position
            history = await server.hub.backend.history(
                "orders", rtlink.Position(position.epoch, 0),
                policy=BIG_HISTORY["*"].policy,
            )
            assert [p.data for p in history.publications] == [{"id": 7}]
            # And the watcher never sees a second copy.
            await publisher.publish("orders", {"id": 8})
            second = await collect(watch, 1)
            assert second[0].data == {"id": 8}
            assert publisher.outbox_size == 0


async def test_publishes_made_offline_are_sent_once_on_reconnect(make_client) -> None:
    async with run_server(channels=BIG_HISTORY) as server, relay_to(server) as relay:
        async with make_client(server.url) as watcher, \
                make_client(server.url_via(relay)) as publisher:
            watch = watcher.subscribe("chat")
            await watch.wait_subscribed()
            await take_offline(relay, publisher)
            pending = [asyncio.create_task(publisher.publish("chat", n)) for n in range(20)]
            await asyncio.sleep(0.1)
            assert publisher.outbox_size == 20
            assert not any(task.done() for task in pending)
            relay.refuse = False
            positions = await asyncio.wait_for(asyncio.gather(*pending), seconds(10))
            messages = await collect(watch, 20)
            assert [m.data for m in messages] == list(range(20))
            assert [m.position for m in messages] == positions


async def test_fresh_client_resumes_from_another_clients_position(make_client) -> None:
    async with run_server(channels=BIG_HISTORY) as server:
        async with make_client(server.url) as first:
            async with first.subscribe("ticks") as sub:
                for n in range(10):
                    await server.hub.publish("ticks", n)
                seen = await collect(sub, 5)
        resume_after = seen[-1].position
        assert seen[-1].data == 4
        for n in range(10, 15):
            await server.hub.publish("ticks", n)

        async with make_client(server.url) as second:
            sub = second.subscribe("ticks", since=resume_after)
            await sub.wait_subscribed()
            assert sub.recovered
            messages = await collect(sub, 10)
            assert [m.data for m in messages] == list(range(5, 15))
            # exactly those: nothing else is pending
            await server.hub.publish("ticks", "next")
            assert (await collect(sub, 1))[0].data == "next"


async def test_server_restart_with_memory_backend_reports_recovered_false(make_client) -> None:
    # The memory backend loses history with the process: a new epoch, never a silent skip.
    async with run_server(channels=BIG_HISTORY) as server:
        async with make_client(server.url) as client:
            async with client.subscribe("news") as sub:
                await server.hub.publish("news", "old")
                old = (await collect(sub, 1))[0].position
    async with run_server(channels=BIG_HISTORY) as server:
        await server.hub.publish("news", "new")
        async with make_client(server.url) as client:
            sub = client.subscribe("news", since=old)
            await sub.wait_subscribed()
            assert sub.recovered is False
            assert sub.position is not None and sub.position.epoch != old.epoch


async def test_graceful_shutdown_tells_clients_to_reconnect(make_client) -> None:
    states: list[rtlink.StateChange] = []
    async with run_server(channels=BIG_HISTORY) as server:
        client = make_client(server.url)
        client.on("state", states.append)
        await client.connect()
        try:
            # (a long-polling client is between polls right after connecting)
            await eventually(lambda: bool(server.hub.connections), message="a held poll")
            await server.stop()  # closes every connection with 1001 (going away)
            await eventually(
                lambda: any(s.new_state is rtlink.ConnectionState.DISCONNECTED for s in states),
                message="disconnect",
            )
            change = next(s for s in states if s.new_state is rtlink.ConnectionState.DISCONNECTED)
            assert change.code == rtlink.CloseCode.GOING_AWAY
            assert client.state is not rtlink.ConnectionState.CLOSED  # it keeps trying
        finally:
            await client.close()

"""The hub without a network: fan-out, buffers, channel rules and backend reference counts.

Connections here are real :class:`rtlink.connection.Connection` objects on an
in-memory sink (a transport that keeps what it is given), so the hub's own logic is
tested directly; the network transports have their own tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import rtlink
import rtlink.hub
from rtlink.backends.memory import MemoryBackend
from rtlink.codecs import get_codec
from rtlink.protocol import Publication
from tests.support import eventually


class MemorySink:
    """A transport that keeps every message; ``stall`` makes writes block forever."""

    def __init__(self, stall: bool = False) -> None:
        self.messages: list[bytes] = []
        self.closed_with: int | None = None
        self.aborted = False
        self._stall = stall

    async def send(self, message: bytes) -> None:
        if self._stall:
            await asyncio.Event().wait()
        self.messages.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code

    def abort(self) -> None:
        self.aborted = True


def frames(sink: MemorySink, codec: str) -> list[dict[str, Any]]:
    decoded: list[dict[str, Any]] = []
    for message in sink.messages:
        decoded.extend(get_codec(codec).decode(message))
    return decoded


async def subscribe(hub: rtlink.Hub, channel: str, codec: str = "json",
                    sink: MemorySink | None = None) -> tuple[Any, MemorySink]:
    sink = sink or MemorySink()
    connection = hub.accept(get_codec(codec), None, sink, "memory")
    await connection.receive(get_codec(codec).encode(
        {"type": "subscribe", "id": 1, "channel": channel}))
    return connection, sink


async def test_fan_out_encodes_once_per_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []
    real_encode = rtlink.hub.encode_frame

    def counting_encode(codec: Any, frame: Any) -> bytes:
        if isinstance(frame, Publication):
            encoded.append(codec.name)
        return real_encode(codec, frame)

    monkeypatch.setattr(rtlink.hub, "encode_frame", counting_encode)
    async with rtlink.Hub() as hub:
        sinks = []
        for n in range(100):
            _, sink = await subscribe(hub, "news", "json" if n % 2 else "msgpack")
            sinks.append(sink)
        await hub.publish("news", {"headline": "once"})
        assert sorted(encoded) == ["json", "msgpack"]
        await eventually(lambda: all(
            any(f["type"] == "publication" for f in frames(s, "json" if n % 2 else "msgpack"))
            for n, s in enumerate(sinks)), message="every subscriber served")


async def test_a_burst_is_batched_into_few_transport_messages() -> None:
    async with rtlink.Hub() as hub:
        _, sink = await subscribe(hub, "burst")
        await eventually(lambda: len(frames(sink, "json")) == 2)  # welcome + subscribed
        before = len(sink.messages)
        for n in range(200):
            await hub.publish("burst", n)
        await eventually(lambda: len(frames(sink, "json")) == 202)
        assert [f["data"] for f in frames(sink, "json")[2:]] == list(range(200))
        # published without yielding to the writer: one batch, not 200 writes
        assert len(sink.messages) - before == 1


async def test_slow_consumer_is_closed_and_its_buffer_stays_bounded() -> None:
    async with rtlink.Hub(outbound_limit=64 * 1024) as hub:
        peer, sink = await subscribe(hub, "flood", sink=MemorySink(stall=True))
        payload = "x" * 1000
        for _ in range(200):  # ~200 KB to a client that reads nothing
            await hub.publish("flood", payload)
            assert peer.connection.queued_bytes <= 64 * 1024 + 2000
        assert peer.connection.close_code == rtlink.CloseCode.SLOW_CONSUMER
        assert peer not in hub.connections
        assert "flood" not in hub._live  # its subscription is gone too


async def test_hub_publish_refuses_bad_channels_and_data() -> None:
    async with rtlink.Hub(channels={"chat:*": rtlink.ChannelOptions()}) as hub:
        with pytest.raises(rtlink.ChannelError) as invalid:
            await hub.publish("bad name", 1)
        assert invalid.value.code == rtlink.ErrorCode.INVALID_CHANNEL
        with pytest.raises(rtlink.ChannelError) as unknown:
            await hub.publish("other", 1)
        assert unknown.value.code == rtlink.ErrorCode.UNKNOWN_CHANNEL
        with pytest.raises(rtlink.ChannelError) as bad_data:
            await hub.publish("chat:x", float("nan"))
        assert bad_data.value.code == rtlink.ErrorCode.BAD_REQUEST
        position = await hub.publish("chat:x", {"ok": True})
        assert position.offset == 1


async def test_hub_history_reads_pages_and_refuses_bad_limits_and_channels() -> None:
    async with rtlink.Hub(channels={"chat:*": rtlink.ChannelOptions()}) as hub:
        positions = [await hub.publish("chat:x", n) for n in range(5)]
        page = await hub.history("chat:x", positions[1], limit=2)
        assert page == rtlink.HistoryPage(
            "chat:x", (Publication("chat:x", 2, positions[2]),
                       Publication("chat:x", 3, positions[3])), positions[-1], True)
        latest = await hub.history("chat:x", limit=2, reverse=True)
        assert [p.data for p in latest.publications] == [4, 3]
        for limit in (0, 1001):
            with pytest.raises(rtlink.InvalidInput):
                await hub.history("chat:x", limit=limit)
        with pytest.raises(rtlink.ChannelError) as unknown:
            await hub.history("other")
        assert unknown.value.code == rtlink.ErrorCode.UNKNOWN_CHANNEL


async def test_publish_key_makes_hub_publish_idempotent() -> None:
    async with rtlink.Hub() as hub:
        first = await hub.publish("orders", {"n": 1}, key="order-1")
        again = await hub.publish("orders", {"n": 1}, key="order-1")
        other = await hub.publish("orders", {"n": 2}, key="order-2")
        assert first == again and other.offset == first.offset + 1


async def test_first_pattern_that_matches_wins() -> None:
    rules = {
        "chat:admin": rtlink.ChannelOptions(client_publish=False),
        "chat:*": rtlink.ChannelOptions(client_publish=True, history_size=7),
    }
    async with rtlink.Hub(channels=rules) as hub:
        assert hub.rules.options("chat:admin").client_publish is False
        assert hub.rules.options("chat:lobby").history_size == 7
        assert hub.rules.match("news") is None


class RecordingBackend(MemoryBackend):
    """The memory backend, noting node-level (un)subscribe calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    async def subscribe(self, channel: str) -> None:
        self.calls.append(("subscribe", channel))
        await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.calls.append(("unsubscribe", channel))
        await super().unsubscribe(channel)


async def test_node_subscribes_a_channel_once_while_it_has_local_subscribers() -> None:
    backend = RecordingBackend()
    async with rtlink.Hub(backend) as hub:
        first, _ = await subscribe(hub, "room")
        second, _ = await subscribe(hub, "room")
        assert backend.calls == [("subscribe", "room")]
        first.connection.abort()
        await asyncio.sleep(0)
        assert backend.calls == [("subscribe", "room")]
        await second.receive(b'{"type":"unsubscribe","id":2,"channel":"room"}')
        await eventually(lambda: backend.calls[-1] == ("unsubscribe", "room"))
        third, _ = await subscribe(hub, "room")
        assert backend.calls == [("subscribe", "room"), ("unsubscribe", "room"),
                                 ("subscribe", "room")]
        assert third.connection in hub._live["room"].subscribers


async def test_publications_during_subscribe_are_neither_lost_nor_doubled() -> None:
    """A publication racing with the history read lands once, after the replay."""

    class SlowHistory(MemoryBackend):
        # Publications arrive both before the read (so they are in history AND in the
        # live queue) and after it (only in the live queue).
        async def history(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.05)
            result = await super().history(*args, **kwargs)
            await asyncio.sleep(0.05)
            return result

    async with rtlink.Hub(SlowHistory()) as hub:
        await hub.publish("race", 0)
        start = await hub.publish("race", 1)
        sink = MemorySink()
        connection = hub.accept(get_codec("json"), None, sink, "memory")
        subscribing = asyncio.create_task(connection.receive(get_codec("json").encode({
            "type": "subscribe", "id": 1, "channel": "race",
            "since": {"epoch": start.epoch, "offset": 0}})))
        await asyncio.sleep(0.01)
        for n in (2, 3):
            await hub.publish("race", n)  # before the read: in history and in pending
        await asyncio.sleep(0.06)
        for n in (4, 5):
            await hub.publish("race", n)  # after the read: only in pending
        await subscribing
        await hub.publish("race", 6)
        await eventually(lambda: len(frames(sink, "json")) >= 9)
        received = [f for f in frames(sink, "json") if f["type"] == "publication"]
        assert [f["data"] for f in received] == [0, 1, 2, 3, 4, 5, 6]


async def test_authorize_hooks_sync_and_async() -> None:
    async def may_subscribe(identity: Any, channel: str) -> bool:
        return channel != "secret"

    def may_publish(identity: Any, channel: str) -> bool:
        return identity == "alice"

    async with rtlink.Hub(
        channels={"*": rtlink.ChannelOptions(client_publish=True)},
        authorize_subscribe=may_subscribe,
        authorize_publish=may_publish,
    ) as hub:
        codec = get_codec("json")
        sink = MemorySink()
        bob = hub.accept(codec, "bob", sink, "memory")
        await bob.receive(codec.join([
            codec.encode({"type": "subscribe", "id": 1, "channel": "secret"}),
            codec.encode({"type": "publish", "id": 2, "channel": "open", "data": 1}),
        ]))
        alice_sink = MemorySink()
        alice = hub.accept(codec, "alice", alice_sink, "memory")
        await alice.receive(codec.encode({"type": "publish", "id": 3, "channel": "open",
                                          "data": 1}))
        await eventually(lambda: len(frames(sink, "json")) == 3
                         and len(frames(alice_sink, "json")) == 2)
        replies = frames(sink, "json")[1:]
        assert [(f["type"], f["code"]) for f in replies] == [("error", 403), ("error", 403)]
        assert frames(alice_sink, "json")[1]["type"] == "ack"


async def test_a_replay_larger_than_the_outbound_limit_still_gets_through() -> None:
    """The limit is for clients that fall behind live traffic; a replay is bounded by
    history and must not close the connection (the client would retry forever)."""
    options = {"*": rtlink.ChannelOptions(history_size=100)}
    async with rtlink.Hub(channels=options, outbound_limit=4096) as hub:
        first = await hub.publish("big", "x" * 200)
        for _ in range(49):
            await hub.publish("big", "x" * 200)  # ~10 KB of history
        sink = MemorySink()
        connection = hub.accept(get_codec("json"), None, sink, "memory")
        await connection.receive(get_codec("json").encode({
            "type": "subscribe", "id": 1, "channel": "big",
            "since": {"epoch": first.epoch, "offset": 0}}))
        await hub.publish("big", "live")  # arrives while the replay is still queued
        assert connection.connection.close_code is None
        await eventually(lambda: len(frames(sink, "json")) == 53)  # welcome, subscribed, 51
        assert frames(sink, "json")[-1]["data"] == "live"
        # Live traffic beyond the limit still marks a slow consumer.
        stalled = MemorySink(stall=True)
        slow = hub.accept(get_codec("json"), None, stalled, "memory")
        await slow.receive(get_codec("json").encode(
            {"type": "subscribe", "id": 1, "channel": "big"}))
        for _ in range(40):
            await hub.publish("big", "x" * 200)
            await asyncio.sleep(0)  # the healthy connection's writer keeps up
        assert slow.connection.close_code == rtlink.CloseCode.SLOW_CONSUMER
        assert connection.connection.close_code is None


async def test_the_cursor_is_only_given_when_nothing_more_is_queued() -> None:
    """An SSE event id must not claim publications that are still queued."""
    async with rtlink.Hub() as hub:
        connection, sink = await subscribe(hub, "c")
        await eventually(lambda: len(frames(sink, "json")) == 2)
        position = await hub.publish("c", 1)
        assert connection.cursor() is None  # queued, not yet written
        await eventually(lambda: len(frames(sink, "json")) == 3)
        assert connection.cursor() == {"c": position}


class DirectMemorySink(MemorySink):
    """A sink the hub's flush writes synchronously (a :class:`DirectSink`)."""

    def write_now(self, frames: list[bytes], codec: Any,
                  framed: dict[bytes | tuple[bytes, ...], bytes]) -> bool:
        self.messages.append(codec.join(frames))
        return True

    def write_one(self, frame: bytes, framed: dict[bytes | tuple[bytes, ...], bytes]) -> bool:
        self.messages.append(frame)
        return True

    async def drained(self) -> None:
        pass


async def test_an_idle_hub_writes_a_publication_before_publish_returns() -> None:
    # A per-user publish loop never yields with the memory backend: before, every user
    # waited for the whole loop; now each is written when its own publish is made.
    async with rtlink.Hub() as hub:
        sinks = [DirectMemorySink() for _ in range(50)]
        for n, sink in enumerate(sinks):
            await subscribe(hub, f"user:{n}", sink=sink)
        await eventually(lambda: all(len(frames(s, "json")) == 2 for s in sinks))
        for n, sink in enumerate(sinks):
            await hub.publish(f"user:{n}", {"n": n})
            assert frames(sink, "json")[-1]["data"] == {"n": n}  # no await in between
        # Under load (a flush pending) publications queue and go out together.
        hub.schedule_flush(hub._live["user:0"].subscribers.__iter__().__next__())
        await hub.publish("user:1", "queued")
        assert frames(sinks[1], "json")[-1]["data"] == {"n": 1}
        await eventually(lambda: frames(sinks[1], "json")[-1]["data"] == "queued")

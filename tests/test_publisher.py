"""rtlink.Publisher: publishing from a process that serves no clients."""

from __future__ import annotations

import re

import pytest

import rtlink
from rtlink.backends import HistoryPolicy, MemoryBackend, PublishResult
from rtlink.codes import ErrorCode
from tests.support import collect, run_server
from tests.support.redis_server import RedisServer, run_redis


async def test_publishes_into_the_backend_with_the_channel_policy() -> None:
    backend = MemoryBackend()
    channels = {"news:*": rtlink.ChannelOptions(history_size=2)}
    async with rtlink.Publisher(backend, channels=channels) as publisher:
        positions = [await publisher.publish("news:a", i) for i in range(3)]
        assert [p.offset for p in positions] == [1, 2, 3]
        again = await publisher.publish("news:a", "retry", key="k")
        assert await publisher.publish("news:a", "retry", key="k") == again
        policy = channels["news:*"].policy
        kept = await backend.history("news:a", rtlink.Position(again.epoch, 2), policy=policy)
        assert [p.data for p in kept.publications] == [2, "retry"]
        lost = await backend.history("news:a", rtlink.Position(again.epoch, 1), policy=policy)
        assert lost.recovered is False  # history_size=2 applied


@pytest.mark.parametrize(
    ("channel", "data", "code"),
    [
        ("bad channel", 1, ErrorCode.INVALID_CHANNEL),
        ("other:a", 1, ErrorCode.UNKNOWN_CHANNEL),
        ("news:a", b"bytes", ErrorCode.BAD_REQUEST),
        ("news:a", float("nan"), ErrorCode.BAD_REQUEST),
    ],
)
async def test_refuses_what_a_hub_would_refuse(channel: str, data: object, code: int) -> None:
    async with rtlink.Publisher(channels={"news:*": rtlink.ChannelOptions()}) as publisher:
        with pytest.raises(rtlink.ChannelError) as info:
            await publisher.publish(channel, data)
        assert info.value.code == code
    async with rtlink.Hub(channels={"news:*": rtlink.ChannelOptions()}) as hub:
        with pytest.raises(rtlink.ChannelError) as same:
            await hub.publish(channel, data)
        assert same.value.code == code


@pytest.mark.parametrize("key", ["", "k" * 129, "\udfff"], ids=repr)
async def test_hub_and_publisher_refuse_keys_the_protocol_refuses(key: str) -> None:
    """The wire protocol's limits (1-128 characters, no lone surrogates) hold for
    server-side publishes too, and a refused publish publishes nothing."""
    async with rtlink.Publisher(channels={"news:*": rtlink.ChannelOptions()}) as publisher:
        with pytest.raises(rtlink.ChannelError, match="key") as info:
            await publisher.publish("news:a", 1, key=key)
        assert info.value.code == ErrorCode.BAD_REQUEST
    async with rtlink.Hub(channels={"news:*": rtlink.ChannelOptions()}) as hub:
        with pytest.raises(rtlink.ChannelError, match="key") as same:
            await hub.publish("news:a", 1, key=key)
        assert same.value.code == ErrorCode.BAD_REQUEST
        assert (await hub.publish("news:a", 1, key="k" * 128)).offset == 1


class KeyRecordingBackend(MemoryBackend):
    """The memory backend, noting the idempotency key of every publish."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str | None] = []

    async def publish(self, channel: str, data: object, *, key: str | None,
                      policy: HistoryPolicy) -> PublishResult:
        self.keys.append(key)
        return await super().publish(channel, data, key=key, policy=policy)


async def test_every_publish_carries_an_idempotency_key() -> None:
    # As every rtlink publisher (the clients, rtlink publish): a random one when the
    # caller gives none (docs/http-api.md §5, next to Idempotency-Key).
    backend = KeyRecordingBackend()
    async with rtlink.Publisher(backend) as publisher:
        await publisher.publish("a", 1)
        await publisher.publish("a", 1)
        await publisher.publish("a", 2, key="mine")
    generated = backend.keys[:2]
    assert all(isinstance(key, str) and re.fullmatch("[0-9a-f]{32}", key) for key in generated)
    assert generated[0] != generated[1]
    assert backend.keys[2] == "mine"


async def test_must_be_started() -> None:
    publisher = rtlink.Publisher()
    with pytest.raises(RuntimeError, match="not started"):
        await publisher.publish("a", 1)


async def test_every_node_delivers_what_a_publisher_sends(redis_server: RedisServer) -> None:
    async with run_server(backend=redis_server.url) as node_a, \
            run_server(backend=redis_server.url) as node_b, \
            rtlink.Publisher(redis_server.url) as publisher:
        async with rtlink.Client(node_a.url) as on_a, rtlink.Client(node_b.url) as on_b:
            async with on_a.subscribe("jobs") as sub_a, on_b.subscribe("jobs") as sub_b:
                sent = [await publisher.publish("jobs", {"n": i}) for i in range(10)]
                for sub in (sub_a, sub_b):
                    assert [m.position for m in await collect(sub, 10)] == sent


@pytest.mark.redis
async def test_an_unavailable_redis_is_a_clear_error_for_hub_and_publisher() -> None:
    with run_redis() as redis_server:
        async with rtlink.Hub(backend=redis_server.url) as hub, \
                rtlink.Publisher(redis_server.url) as publisher:
            await hub.publish("a", 1)
            redis_server.stop()
            for publish in (hub.publish, publisher.publish):
                with pytest.raises(rtlink.BackendUnavailable, match="Redis at 127.0.0.1"):
                    await publish("a", 2)
            redis_server.start()
            assert (await hub.publish("a", 3)).offset == 1  # an empty Redis: new epoch

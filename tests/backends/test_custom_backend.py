"""The Backend interface is real: a backend written only against ``rtlink.backends.base``,
with its own (deliberately plain) logic, passes the same contract suite."""

from __future__ import annotations

import asyncio
import secrets
import time

import attrs

import rtlink
from rtlink.backends import create_backend
from rtlink.backends.base import (
    Backend,
    ControlListener,
    HistoryPolicy,
    HistoryResult,
    LostListener,
    PublicationListener,
    PublishResult,
)
from rtlink.protocol import Position, Publication
from tests.support import FAST_RECONNECT, run_server, seconds

from .contract import BackendContract


@attrs.define
class _Stream:
    epoch: str = attrs.field(factory=lambda: secrets.token_hex(8))
    last_offset: int = 0
    entries: list[tuple[float, Publication]] = attrs.field(factory=list)
    keys: dict[str, tuple[float, Position]] = attrs.field(factory=dict)


class ListBackend(Backend):
    """A dict of lists on the real clock, no cleverness: scans instead of indexes."""

    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self.channels: set[str] = set()
        self.listener: PublicationListener | None = None

    async def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        self.listener = listener

    async def close(self) -> None:
        self.listener = None
        self.streams.clear()

    def _stream(self, channel: str, policy: HistoryPolicy) -> _Stream:
        stream = self.streams.setdefault(channel, _Stream())
        now = time.monotonic()
        stream.entries = [(t, p) for t, p in stream.entries if now - t < policy.ttl]
        stream.entries = stream.entries[max(len(stream.entries) - policy.size, 0) :]
        stream.keys = {k: v for k, v in stream.keys.items() if v[0] > now}
        return stream

    async def publish(
        self, channel: str, data: object, *, key: str | None, policy: HistoryPolicy
    ) -> PublishResult:
        stream = self._stream(channel, policy)
        if key is not None and key in stream.keys:
            return PublishResult(stream.keys[key][1], duplicate=True)
        stream.last_offset += 1
        position = Position(stream.epoch, stream.last_offset)
        publication = Publication(channel, data, position)
        stream.entries.append((time.monotonic(), publication))
        self._stream(channel, policy)  # apply the size bound
        if key is not None:
            stream.keys[key] = (time.monotonic() + policy.key_ttl, position)
        if self.listener is not None and channel in self.channels:
            self.listener(publication)
        return PublishResult(position)

    async def history(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy
    ) -> HistoryResult:
        stream = self._stream(channel, policy)
        top = Position(stream.epoch, stream.last_offset)
        if since is None:
            return HistoryResult([], top, True)
        if since.epoch != stream.epoch or since.offset > top.offset:
            return HistoryResult([], top, False)
        wanted = [p for _, p in stream.entries if p.position.offset > since.offset]
        if len(wanted) != top.offset - since.offset:
            return HistoryResult([], top, False)
        return HistoryResult(wanted, top, True)

    async def page(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy, limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        stream = self._stream(channel, policy)
        top = Position(stream.epoch, stream.last_offset)
        kept = [p for _, p in stream.entries]
        known = (since is not None and since.epoch == stream.epoch
                 and since.offset <= top.offset)
        if reverse:
            before = [p for p in kept if since is None or not known
                      or p.position.offset < since.offset]
            return HistoryResult(before[-limit:] if limit else [], top, since is None or known)
        if since is not None and known:
            after = [p for p in kept if p.position.offset > since.offset]
            if since.offset == top.offset or (after and after[0].position.offset
                                              == since.offset + 1):
                return HistoryResult(after[:limit], top, True)
        return HistoryResult(kept[:limit], top, since is None)

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)


class TestListBackendContract(BackendContract):
    """The contract on a backend with no injectable clock: TTLs pass by real sleeps."""

    has_presence = False

    async def make_backend(self) -> Backend:
        return ListBackend()


def test_a_custom_backend_instance_is_accepted_where_a_url_is() -> None:
    backend = ListBackend()
    assert create_backend(backend) is backend


class Bus:
    """What several BusBackends (the nodes of one fake cluster) share: their control
    listeners, by node."""

    def __init__(self) -> None:
        self.nodes: dict[str, ControlListener] = {}


class BusBackend(ListBackend):
    """A ListBackend whose control messages reach every backend of its bus: the server
    API on several nodes, written against the base class only."""

    def __init__(self, bus: Bus) -> None:
        super().__init__()
        self.bus = bus

    async def start_control(self, node: str, listener: ControlListener) -> None:
        self.bus.nodes[node] = listener

    async def send_control(self, message: bytes, node: str | None = None) -> int | None:
        targets = [listener for name, listener in self.bus.nodes.items()
                   if node is None or name == node]
        for listener in targets:
            listener(message)
        return len(targets)


class TestBusBackendContract(BackendContract):
    has_presence = False

    async def make_backend(self) -> Backend:
        return BusBackend(Bus())


async def test_a_custom_backend_carries_the_server_api_to_other_nodes() -> None:
    bus = Bus()
    async with (run_server(backend=BusBackend(bus), authenticate=lambda r: "zoe") as a,
                run_server(backend=BusBackend(bus), authenticate=lambda r: "zoe") as b):
        client = rtlink.Client(b.url, **FAST_RECONNECT)
        async with client:
            await asyncio.wait_for(client.subscribe("room").wait_subscribed(), seconds(5))
            assert await a.hub.channels() == {"room": 1}
            assert await a.hub.disconnect("zoe", reconnect=True) == 1

"""Test support: real rtlink servers on loopback and a TCP relay that injects faults.

Nothing here mocks rtlink: servers are real aiohttp servers on ("127.0.0.1", 0), and
the relay is a real TCP proxy between a client and a server that can cut connections
(mid-frame included), refuse new ones, or silently drop what the server sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiohttp import web

import rtlink

#: Multiply every timeout in the tests by RTLINK_TEST_TIME_FACTOR on slow machines.
TIME_FACTOR = float(os.environ.get("RTLINK_TEST_TIME_FACTOR", "1"))
#: The repository's root directory.
ROOT = Path(__file__).resolve().parents[2]
#: Reconnect quickly in tests; the backoff itself is tested in tests/test_backoff.py.
FAST_RECONNECT: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.2}


def seconds(value: float) -> float:
    """A test timeout, scaled for slow machines."""
    return value * TIME_FACTOR


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(*names: str) -> str | None:
    """The path of the first of ``names`` on PATH, or in /usr/sbin or /usr/bin (not on
    PATH for non-root users); None when none is installed."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    for name in names:
        for directory in ("/usr/sbin", "/usr/bin"):
            if os.access(f"{directory}/{name}", os.X_OK):
                return f"{directory}/{name}"
    return None


def missing_component(message: str) -> NoReturn:
    """Skip the test because a component it needs is missing; under ``CI=true`` (where
    the test command installs every component) fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


#: The JavaScript client's sources.
JS_SOURCES = ROOT / "js-client" / "src"


def run_js(module: str, script: str, *args: Any) -> Any:
    """Run ``script`` (an ES module body) under Node with ``module`` of the JS client's
    sources imported as ``m``, ``args`` in ``argv`` (JSON) and the parsed ``input``;
    return what it printed, parsed as JSON. Skips (fails under CI) without Node."""
    node = find_binary("node")
    if node is None:
        missing_component("node (Node.js) is not installed")
    source = (f"import * as m from {json.dumps((JS_SOURCES / module).as_uri())};"
              "const input = JSON.parse(process.argv[1]);" + script)
    result = subprocess.run([node, "--input-type=module", "-e", source, json.dumps(args)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class Server:
    """A running rtlink server: ``url`` for clients, ``hub`` for server-side calls."""

    def __init__(self, hub: rtlink.Hub, runner: web.AppRunner, port: int, path: str) -> None:
        self.hub = hub
        self.runner = runner
        self.port = port
        self.path = path
        self.url = f"http://127.0.0.1:{port}{path}"

    def url_via(self, relay: Relay) -> str:
        """The URL reaching this server through ``relay``."""
        return f"http://127.0.0.1:{relay.port}{self.path}"

    async def stop(self) -> None:
        await self.runner.cleanup()


@contextlib.asynccontextmanager
async def run_server(hub: rtlink.Hub | None = None, path: str = "/rt", port: int = 0,
                     handler_cancellation: bool = False,
                     attach_options: Mapping[str, Any] | None = None,
                     **hub_options: Any) -> AsyncIterator[Server]:
    """Serve a hub (made from ``hub_options`` if not given) on a free loopback port, or
    on ``port`` (e.g. that of a server just stopped, to restart it in place).
    ``handler_cancellation`` is aiohttp's (what ``rtlink serve`` sets);
    ``attach_options`` go to :func:`rtlink.attach` (``api_keys``, ``allowed_origins``...)."""
    if hub is None:
        hub = rtlink.Hub(**hub_options)
    app = web.Application()
    rtlink.attach(app, hub, path=path, **(attach_options or {}))
    runner = web.AppRunner(app, shutdown_timeout=2,
                           handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = runner.addresses[0][1]
    server = Server(hub, runner, port, path)
    try:
        yield server
    finally:
        await server.stop()


class Relay:
    """A TCP relay from a free loopback port to ``target_port``, with faults on demand.

    * :meth:`cut` aborts every relayed connection on both sides at once.
    * ``refuse = True`` makes new connections fail (accepted, then reset).
    * ``blackhole = True`` silently drops everything the server sends.
    * ``silence_websockets = True`` lets WebSocket handshakes through (the client
      sees its connection open) and then drops everything the server sends on
      them, as a proxy that mishandles WebSockets does.
    * :meth:`cut_randomly` resets each relayed connection after a random number of
      bytes, in the middle of a chunk (so mid-frame); ``cuts`` counts those resets.
    * ``stall = True`` stops reading what the server sends (a client that stopped
      reading): the server's bytes pile up in the kernel buffers, then TCP
      backpressure stops the server's writes. Set it back to False to read on.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.refuse = False
        self.blackhole = False
        self.silence_websockets = False
        self.connections_made = 0
        self.cuts = 0
        self.stall = False
        self._server: asyncio.AbstractServer | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._random_cuts: RandomCuts | None = None
        #: Bytes each open connection may still relay before it is cut, by direction.
        self._budgets: dict[tuple[asyncio.StreamWriter, asyncio.StreamWriter],
                            dict[bool, float]] = {}

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Abort every relayed connection now, as a network failure would."""
        for client_writer, server_writer in list(self._pairs):
            client_writer.transport.abort()
            server_writer.transport.abort()
        self._pairs.clear()

    def cut_randomly(self, rng: random.Random, downstream: tuple[int, int] = (200, 100_000),
                     upstream: tuple[int, int] | None = None) -> None:
        """From now on, reset every relayed connection at a random byte position.

        Each connection (open or new) gets a byte budget for what the server sends,
        drawn log-uniformly from ``downstream`` (small budgets cut handshakes, large
        ones cut streams in full flow), and, with ``upstream``, one for what the client
        sends. The chunk that exhausts a budget is forwarded only up to it, so the peer
        gets part of a frame, then both sides are reset (RST, no FIN) as a failing
        network would. Draws come from ``rng`` only: seed it to repeat a run.
        """
        self._random_cuts = RandomCuts(rng, downstream, upstream)
        self._budgets.clear()

    def stop_cutting(self) -> None:
        """Relay everything again (after :meth:`cut_randomly`)."""
        self._random_cuts = None
        self._budgets.clear()

    def _allowance(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
                   downstream: bool, size: int) -> int:
        """How many of ``size`` bytes may pass before the connection is cut."""
        if self._random_cuts is None:
            return size
        budgets = self._budgets.get(pair)
        if budgets is None:
            budgets = self._budgets[pair] = self._random_cuts.draw()
        budget = budgets[downstream]
        budgets[downstream] = budget - size
        return size if budget >= size else max(0, int(budget))

    async def _reset(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        """Reset both sides of ``pair`` (RST, no FIN) once what was written has left."""
        for _ in range(100):  # the partial chunk must reach the peer before the reset
            if all(w.transport.get_write_buffer_size() == 0 for w in pair):
                break
            await asyncio.sleep(0.001)
        if pair not in self._pairs:
            return  # cut by someone else meanwhile
        self._pairs.discard(pair)
        self._budgets.pop(pair, None)
        self.cuts += 1
        for writer in pair:
            sock = writer.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # linger 0: close sends RST
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            client_writer.transport.abort()
            return
        self.connections_made += 1
        pair = (client_writer, server_writer)
        self._pairs.add(pair)
        silence_after_handshake = False
        if self.silence_websockets:
            request_line = await client_reader.readline()
            server_writer.write(request_line)
            silence_after_handshake = b"/ws" in request_line.split(b"?")[0]
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, downstream=False, pair=pair),
                self._pump(server_reader, client_writer, downstream=True,
                           silence_after_headers=silence_after_handshake, pair=pair),
            )
        finally:
            self._pairs.discard(pair)
            self._budgets.pop(pair, None)
            client_writer.transport.abort()
            server_writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    downstream: bool, silence_after_headers: bool = False,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter] | None = None,
                    ) -> None:
        try:
            if silence_after_headers:  # forward the handshake answer, then nothing
                writer.write(await reader.readuntil(b"\r\n\r\n"))
                while await reader.read(65536):
                    pass
            while data := await self._read(reader, writer, downstream):
                if downstream and self.blackhole:
                    continue
                if pair is not None and (allowed := self._allowance(pair, downstream,
                                                                     len(data))) < len(data):
                    writer.write(data[:allowed])
                    await self._reset(pair)
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    downstream: bool) -> bytes:
        # Stalled: leave the server's bytes unread, until un-stalled or cut.
        while downstream and self.stall and not writer.transport.is_closing():
            await asyncio.sleep(0.005)
        return await reader.read(65536)


class RandomCuts:
    """Where :meth:`Relay.cut_randomly` cuts: byte budgets drawn from a seeded random.

    A budget is drawn log-uniformly between its bounds, so that cuts a few bytes into
    a connection (in its handshake, its first subscribe) are as common as cuts deep
    into a long stream. A direction without bounds is never cut.
    """

    def __init__(self, rng: random.Random, downstream: tuple[int, int],
                 upstream: tuple[int, int] | None) -> None:
        self.rng = rng
        self.downstream = downstream
        self.upstream = upstream

    def _draw(self, bounds: tuple[int, int] | None) -> float:
        if bounds is None:
            return math.inf
        low, high = bounds
        return math.exp(self.rng.uniform(math.log(low), math.log(high)))

    def draw(self) -> dict[bool, float]:
        """Budgets for one connection, keyed by ``downstream`` (True: server to client)."""
        return {True: self._draw(self.downstream), False: self._draw(self.upstream)}


async def take_offline(relay: Relay, client: rtlink.Client) -> None:
    """Cut ``client``'s connection through ``relay`` and keep it out until
    ``relay.refuse`` is set back to False; return once the client noticed."""
    relay.refuse = True
    relay.cut()
    await client.wait_for_state(rtlink.ConnectionState.DISCONNECTED)


@contextlib.asynccontextmanager
async def relay_to(server: Server) -> AsyncIterator[Relay]:
    """A :class:`Relay` in front of ``server`` for the duration of the block."""
    relay = await Relay(server.port).start()
    try:
        yield relay
    finally:
        await relay.close()


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0,
                     message: str = "condition") -> None:
    """Wait until ``predicate()`` is true, polling; fail after ``timeout`` (scaled)."""
    try:
        async with asyncio.timeout(seconds(timeout)):
            while True:
                result = predicate()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {message}") from None


async def collect(subscription: rtlink.Subscription, count: int,
                  timeout: float = 10.0) -> list[rtlink.Message]:
    """Read ``count`` messages from a subscription, failing after ``timeout`` (scaled)."""
    messages: list[rtlink.Message] = []
    try:
        async with asyncio.timeout(seconds(timeout)):
            async for message in subscription:
                messages.append(message)
                if len(messages) >= count:
                    break
    except TimeoutError:
        raise AssertionError(
            f"received {len(messages)} of {count} messages; last: "
            f"{messages[-1] if messages else None}"
        ) from None
    return messages


class Feed:
    """Publishes numbered messages to one channel at a steady rate until stopped."""

    def __init__(self, server: Server, channel: str = "feed", rate: float = 200) -> None:
        self.server = server
        self.channel = channel
        self.rate = rate
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feed:
        # A marker fixes the starting position: everything after it must arrive.
        self.start = await self.server.hub.publish(self.channel, "start")
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            await self.server.hub.publish(self.channel, self.published)
            self.published += 1
            await asyncio.sleep(1 / self.rate)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

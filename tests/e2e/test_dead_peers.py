"""Dead peers: a client that vanishes without a close (no FIN, no RST) is dropped.

The client is a real :class:`rtlink.Client` in a process of its own, living in a
network namespace joined to the test's by a veth pair. It vanishes when a
``blackhole`` qdisc is put on both ends of the pair: from then on nothing it sends
or is sent arrives, and nothing is ever refused — a pulled cable, a phone that lost
its signal, a NAT that forgot the flow. The server (in the test's process, on the
host end of the pair) must drop the connection within the documented time:

* WebSocket: within ``2 * ping_interval + pong_timeout`` of the vanishing. The hub
  closes a client silent for ``ping_interval + pong_timeout`` at its next tick, and
  the kernel drops the socket once the first ping it sent into the void has stayed
  unacknowledged for ``ping_interval + pong_timeout`` (``TCP_USER_TIMEOUT``).
* SSE: within ``3 * ping_interval + pong_timeout``: the first ping after the
  vanishing (at most ``ping_interval`` later) stays unacknowledged, the kernel drops
  the socket ``ping_interval + pong_timeout`` after it, and the next ping (at most
  ``ping_interval`` later again) finds the transport closed.
* Long polling: when the held poll ends, ``min(poll_timeout, ping_interval)`` after
  it started.

Needs root (network namespaces, qdiscs) and iproute2 (``ip``, ``tc``): skipped
without them, failed under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

import rtlink
from rtlink.peer import Peer
from tests.support import eventually, find_binary, missing_component, seconds

#: Small heartbeat settings, so that detection takes seconds.
PING_INTERVAL = 1.0
PONG_TIMEOUT = 1.0
#: Latitude on top of the documented bounds: a busy machine, the kernel's timers.
MARGIN = 1.5

#: The vanishing client: subscribes, says its transport is up, then just listens.
CLIENT = """
import asyncio, sys
import rtlink

async def main():
    client = rtlink.Client(sys.argv[1], transports=[sys.argv[2]], backoff_cap=1)
    client.subscribe("beat")  # before connecting: the first request carries it
    await client.connect()
    print("connected", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class Link:
    """A network namespace for the client and a veth pair to it from the test's."""

    def __init__(self, ip: str, tc: str) -> None:
        self.ip = ip
        self.tc = tc
        pid = os.getpid()
        self.namespace = f"rtlink-dead-{pid}"
        self.host_device = f"rtd{pid % 10**9}h"[:15]
        self.client_device = f"rtd{pid % 10**9}c"[:15]
        # A /30 of 10.213.0.0/16 of our own, so that runs in parallel do not clash.
        base = (pid % 16384) * 4
        self.host_address = f"10.213.{base // 256}.{base % 256 + 1}"
        self.client_address = f"10.213.{base // 256}.{base % 256 + 2}"

    def run(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise OSError(f"{' '.join(command)}: {result.stderr.strip()}")

    def create(self) -> None:
        ip = self.ip
        self.run(ip, "netns", "add", self.namespace)
        self.run(ip, "link", "add", self.host_device, "type", "veth",
                 "peer", "name", self.client_device, "netns", self.namespace)
        self.run(ip, "addr", "add", f"{self.host_address}/30", "dev", self.host_device)
        self.run(ip, "link", "set", self.host_device, "up")
        self.run(ip, "-n", self.namespace, "addr", "add", f"{self.client_address}/30",
                 "dev", self.client_device)
        self.run(ip, "-n", self.namespace, "link", "set", self.client_device, "up")

    def cut(self) -> None:
        """Drop everything sent either way from now on, silently."""
        self.run(self.tc, "qdisc", "add", "dev", self.host_device, "root", "blackhole")
        self.run(self.ip, "netns", "exec", self.namespace,
                 self.tc, "qdisc", "add", "dev", self.client_device, "root", "blackhole")

    def remove(self) -> None:
        """Remove the pair and the namespace (whatever of them exists)."""
        for command in ((self.ip, "link", "del", self.host_device),
                        (self.ip, "netns", "del", self.namespace)):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.run(*command)


@pytest.fixture
def link() -> Iterator[Link]:
    ip, tc = find_binary("ip"), find_binary("tc")
    if ip is None or tc is None:
        missing_component("iproute2 (ip, tc) is needed to make a client vanish")
    created = Link(ip, tc)
    try:
        created.create()
    except OSError as exc:
        created.remove()
        missing_component(f"cannot create a network namespace and veth pair (root "
                          f"needed) to make a client vanish: {exc}")
    try:
        yield created
    finally:
        created.remove()


@contextlib.asynccontextmanager
async def serve(hub: rtlink.Hub, host: str) -> AsyncIterator[str]:
    """Serve ``hub`` on ``host`` (the host end of the pair); yield the client's URL."""
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        yield f"http://{host}:{runner.addresses[0][1]}/rt"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def client_in(link: Link, url: str, transport: str) -> AsyncIterator[None]:
    """Run the client in the link's namespace until it is connected; kill it at the end."""
    process = await asyncio.create_subprocess_exec(
        link.ip, "netns", "exec", link.namespace, sys.executable, "-c", CLIENT, url,
        transport, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(seconds(20)):
            assert await process.stdout.readline() == b"connected\n"
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def dropped_within(hub: rtlink.Hub, peer: Peer,
                         since: float, bound: float) -> float:
    """Wait until the hub dropped ``peer`` and its transport is closed; fail if that
    takes more than ``bound`` seconds after ``since``. Return the time it took."""
    try:
        async with asyncio.timeout(max(0.0, since + bound - time.monotonic())):
            await peer.connection.wait_closed()
    except TimeoutError:
        raise AssertionError(f"{peer!r} still open {bound:.1f} s after its client "
                             f"vanished (in hub: {peer in hub.connections})") from None
    assert peer not in hub.connections
    return time.monotonic() - since


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_stream_whose_client_vanished_is_dropped_in_documented_time(
    link: Link, transport: str,
) -> None:
    hub = rtlink.Hub(ping_interval=PING_INTERVAL, pong_timeout=PONG_TIMEOUT)
    async with serve(hub, link.host_address) as url, client_in(link, url, transport):
        await eventually(lambda: len(hub.connections) == 1, message="one connection")
        [connection] = hub.connections
        assert "beat" in connection.session.subscriptions
        # Alive through more than one heartbeat timeout: pings are answered (or, on
        # SSE, acknowledged by TCP), so a live client is never taken for dead.
        await asyncio.sleep(PING_INTERVAL + PONG_TIMEOUT + 0.5)
        assert connection in hub.connections and not connection.connection.closing

        link.cut()
        vanished = time.monotonic()
        if transport == "websocket":
            bound = 2 * PING_INTERVAL + PONG_TIMEOUT
        else:
            bound = 3 * PING_INTERVAL + PONG_TIMEOUT
        took = await dropped_within(hub, connection, vanished, bound + seconds(MARGIN))
        assert hub.connections == frozenset()  # it could not come back
        print(f"\n{transport} client vanished: dropped after {took:.2f} s (bound "
              f"{bound:.0f} s), close code {connection.connection.close_code}")


async def test_a_poll_whose_client_vanished_is_dropped_when_the_poll_ends(link: Link) -> None:
    hold = 3.0  # how long a poll is held: min(poll_timeout, ping_interval)
    hub = rtlink.Hub(ping_interval=hold, pong_timeout=PONG_TIMEOUT, poll_timeout=hold)
    async with serve(hub, link.host_address) as url, client_in(link, url, "longpoll"):
        # Vanish as soon as a new poll arrives: the server holds it (nothing is
        # published) for a client that is no longer there.
        earlier = set(hub.connections)
        await eventually(lambda: bool(hub.connections - earlier), message="a new poll")
        started = time.monotonic()
        link.cut()
        [connection] = hub.connections - earlier
        took = await dropped_within(hub, connection, started, hold + seconds(MARGIN))
        assert hub.connections == frozenset()
        print(f"\nlongpoll client vanished: its poll dropped after {took:.2f} s "
              f"(bound {hold:.0f} s)")

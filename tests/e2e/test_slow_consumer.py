"""Slow consumers: a client that stops reading under a publish flood.

The client (a real :class:`rtlink.Client`) reaches the server through a
:class:`~tests.support.Relay` that stops reading (``relay.stall``), so TCP
backpressure builds up on the server exactly as with a stalled client. The server
must close that connection with 4001 (slow consumer) once its outbound buffer passes
``outbound_limit``, without ever holding more than the limit plus one frame for it;
the client then resumes from its position and receives every publication exactly
once, in order.
"""

from __future__ import annotations

import asyncio

import pytest

import rtlink
from rtlink.codecs import CODECS
from rtlink.protocol import Position, Publication, encode_frame
from tests.support import collect, relay_to, run_server

#: Publications in the flood, and the size of each payload: 20,000 x 1 KB is twenty
#: times the default outbound limit (1 MiB).
FLOOD = 20_000
PAD = "x" * 1000
#: History holds the whole flood, so the client can resume whatever it missed.
CHANNELS = {"flood": rtlink.ChannelOptions(history_size=FLOOD)}


@pytest.fixture(params=["websocket", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    """The stream transports, those with a writer and an outbound buffer."""
    return str(request.param)


@pytest.fixture
def codec() -> str:
    """One codec: the buffer bound does not depend on it, and the flood is slow enough."""
    return "json"


def resident_bytes() -> int:
    """This process's resident memory (the server runs in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_stalled_client_is_closed_as_slow_consumer_and_resumes_without_loss(
    make_client, transport: str, codec: str,
) -> None:
    async with run_server(channels=CHANNELS) as server, relay_to(server) as relay:
        hub = server.hub
        async with make_client(server.url_via(relay)) as client:
            changes: list[rtlink.StateChange] = []
            client.on("state", changes.append)
            confirmations: list[rtlink.SubscribedEvent] = []
            sub = client.subscribe("flood")
            sub.on("subscribed", confirmations.append)
            await sub.wait_subscribed()
            # An SSE client replaces its first stream by one with ``subs``; the first one
            # may linger on the server until its next ping write fails.
            [peer] = [c for c in hub.connections if "flood" in c.session.subscriptions]
            connection = peer.connection

            relay.stall = True
            rss_before = resident_bytes()
            largest_queue = 0
            for n in range(FLOOD):
                await hub.publish("flood", {"n": n, "pad": PAD})
                # The memory backend fans out before publish returns: this sees the
                # queue right after each delivery.
                largest_queue = max(largest_queue, connection.queued_bytes)
                if n % 100 == 0:
                    await asyncio.sleep(0)  # let the writer push into the stalled socket
            rss_growth = resident_bytes() - rss_before

            assert connection.close_code == rtlink.CloseCode.SLOW_CONSUMER
            assert peer not in hub.connections
            one_frame = len(encode_frame(
                CODECS[codec],
                Publication("flood", {"n": FLOOD, "pad": PAD}, Position("x" * 8, FLOOD)),
            ))
            assert largest_queue <= hub.outbound_limit + one_frame

            relay.stall = False
            messages = await collect(sub, FLOOD, timeout=25)
            assert [message.data["n"] for message in messages] == list(range(FLOOD))
            # Resumed from its position, on a new connection, with nothing missing.
            assert len(confirmations) >= 2
            assert all(event.resumed and event.recovered for event in confirmations[1:])
            assert any("flood" in c.session.subscriptions for c in hub.connections)
            seen_codes = [change.code for change in changes if change.code is not None]
            print(f"\nslow consumer over {transport}: queue peak {largest_queue} bytes "
                  f"(limit {hub.outbound_limit} + frame {one_frame}); server RSS growth "
                  f"during the flood {rss_growth / 2**20:.1f} MiB (history "
                  f"{FLOOD * one_frame / 2**20:.1f} MiB); client saw close codes "
                  f"{seen_codes}; relay connections {relay.connections_made}")

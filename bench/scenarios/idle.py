"""Idle connections: the server's resident memory per connection.

Method, per (system, transport): start the server (pinned to core 0), open 20
warm-up connections and keep them (the first connections pay for lazily built
things: imports, caches, buffers), wait 0.5 s, read the server's RSS
(``VmRSS`` of /proc/<pid>/status), open N more connections with one subscription each
(5,000; 1,000 with ``--quick``) and wait until all are confirmed, wait 1 s for the
server to settle, read the RSS again: (after - before) / N. For long polling the
connections are held polls: each reader has had its first (``connect=1``) poll
answered and waits on its next one. One repetition.

Cases: WebSocket for every system, all subscribed to one channel; rtlink's SSE and
long polling; and, for rtlink, naive aiohttp and Node ws, the per-user variant: each
connection subscribed to its own channel ``user:<i>`` (so the server also holds N
channels).

RSS counts what the process touched (Python objects, buffers, the allocator's free
lists); freed memory is seldom handed back, so the figure is an upper bound of what
a connection costs, taken the same way for every system.
"""

from __future__ import annotations

import functools
import time

from bench.clients import ClientGroup
from bench.common import SYSTEMS, Row, guarded, rss_bytes, running

__all__ = ["TITLE", "run", "measure", "case"]

TITLE = "Idle connections: server RSS per connection (one subscription each)"
SCENARIO = "idle connections"
METRIC = "server RSS per connection"
WARMUP = 20
#: (system, transport, per-user channels) of each case, in table order.
CASES = [
    ("rtlink", "ws", False), ("rtlink", "sse", False), ("rtlink", "poll", False),
    ("socketio", "ws", False), ("naive", "ws", False), ("nodews", "ws", False),
    ("nodesio", "ws", False),
    ("rtlink", "ws", True), ("naive", "ws", True), ("nodews", "ws", True),
]
TRANSPORT_NAMES = {"ws": "WebSocket", "sse": "SSE", "poll": "long polling (held polls)"}


def measure(system: str, transport: str, connections: int, per_user: bool = False) -> float:
    """Server RSS growth per connection in bytes."""
    with running(system, transport) as server:
        with ClientGroup(system, transport, server.port, WARMUP, processes=1):
            time.sleep(0.5)
            before = rss_bytes(server.pid)
            with ClientGroup(system, transport, server.port, connections,
                             per_user=per_user):
                time.sleep(1)
                after = rss_bytes(server.pid)
    return (after - before) / connections


def run(quick: bool) -> list[Row]:
    connections = 1000 if quick else 5000
    rows = []
    for system, transport, per_user in CASES:
        label = (f"{TRANSPORT_NAMES[transport]}, {connections:,} connections"
                 + (", a channel each" if per_user else ""))
        rows += guarded(SCENARIO, system, label, METRIC, "KiB",
                        functools.partial(case, system, transport, connections, per_user,
                                          label))
    return rows


def case(system: str, transport: str, connections: int, per_user: bool,
         label: str) -> list[Row]:
    """The row of one case."""
    value = measure(system, transport, connections, per_user)
    target = "target ≤ 12 KiB" if (system, transport) == ("rtlink", "ws") else ""
    return [Row(SCENARIO, SYSTEMS[system], label, METRIC, round(value / 1024, 2), "KiB",
                target)]

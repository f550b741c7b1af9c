"""Idle connections: the server's resident memory per connection.

Method, per (system, transport): start the server (pinned to core 0), open 20
warm-up connections and keep them (the first connections pay for lazily built
things: imports, caches, buffers), wait 0.5 s, read the server's RSS
(``VmRSS`` of /proc/<pid>/status), open N more connections with one subscription each
(5,000; 1,000 with ``--quick``) and wait until all are confirmed, wait 1 s for the
server to settle, read the RSS again: (after - before) / N. For long polling the
connections are held polls: each reader has had its first (``connect=1``) poll
answered and waits on its next one. One repetition.

RSS counts what the process touched (Python objects, buffers, the allocator's free
lists); freed memory is seldom handed back, so the figure is an upper bound of what
a connection costs, taken the same way for every system.
"""

from __future__ import annotations

import time

from bench.clients import ClientGroup
from bench.common import SYSTEMS, Row, rss_bytes, running

__all__ = ["TITLE", "run", "measure"]

TITLE = "Idle connections: server RSS per connection (one subscription each)"
WARMUP = 20
CASES = [
    ("rtlink", "ws"), ("rtlink", "sse"), ("rtlink", "poll"),
    ("naive", "ws"), ("socketio", "ws"),
]
TRANSPORT_NAMES = {"ws": "WebSocket", "sse": "SSE", "poll": "long polling (held polls)"}


def measure(system: str, transport: str, connections: int) -> float:
    """Server RSS growth per connection in bytes."""
    with running(system, transport) as server:
        with ClientGroup(system, transport, server.port, WARMUP, processes=1):
            time.sleep(0.5)
            before = rss_bytes(server.pid)
            with ClientGroup(system, transport, server.port, connections):
                time.sleep(1)
                after = rss_bytes(server.pid)
    return (after - before) / connections


def run(quick: bool) -> list[Row]:
    connections = 1000 if quick else 5000
    rows = []
    for system, transport in CASES:
        label = f"{TRANSPORT_NAMES[transport]}, {connections:,} connections"
        try:
            value = measure(system, transport, connections)
        except Exception as error:  # one failed case must not end the whole run
            rows.append(Row("idle connections", SYSTEMS[system], label, "server RSS per connection",
                            float("nan"), "KiB", f"failed: {type(error).__name__}: {error}"[:300]))
            continue
        rows.append(Row("idle connections", SYSTEMS[system], label, "server RSS per connection",
                        round(value / 1024, 2), "KiB"))
    return rows

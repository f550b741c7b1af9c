"""Coalesced burst: the server's CPU time per delivery of a burst to one channel.

A burst of 200 publications back to back is the case rtlink coalesces: what is queued
for a connection goes out in one message, so it makes about one ``send`` per 200
deliveries where every peer makes one per delivery. This is not a latency-bound
fan-out (see ``onechannel``) and says little about per-user channels (see ``peruser``).

Method, per (system, transport, subscribers): the server runs pinned to core 0 and
the readers (bench/clients.py) to core 1, spread over 2-4 processes. Once every
reader confirmed its subscription, one warm-up burst of 5 publications is delivered;
then for each repetition: zero the readers' counters, read the server's CPU time
(the scheduler's run time of its threads, /proc/<pid>/task/*/schedstat),
``POST /control/burst?count=200&size=100``, wait until every reader has received the
last publication, read the CPU time again.
CPU per delivery = CPU used / publications received by all readers (which is
subscribers x 200 unless something was lost; losses are noted). The figure is the
median over the repetitions: 3, or 1 when the first burst took more than 5 s (a long
burst averages over itself); 1 with ``--quick``. The Node peers are measured at 1,000
WebSocket subscribers; python-socketio is not measured at 5,000: its one burst there (a
million deliveries at ~90 µs) takes 1.5-3 minutes.

The notes split the CPU time into user and system (kernel) time, from the 10 ms ticks
of /proc/<pid>/stat. The CPU time includes everything the server process does
meanwhile: encoding, framing, the event loop, the kernel's work for its ``send`` calls
(on loopback that includes the TCP receive path of the data it sends) and the control
request.
"""

from __future__ import annotations

import functools
import time

from bench.clients import ClientGroup
from bench.common import (
    SYSTEMS,
    Row,
    control,
    cpu_seconds,
    cpu_split,
    guarded,
    median,
    running,
)

__all__ = ["TITLE", "run", "measure", "case"]

TITLE = ("Coalesced burst: server CPU µs per delivery (1 channel, 200 publications of ~100 B "
         "back to back; rtlink coalesces them, the peers do not)")
#: A repetition's burst longer than this (s) is not repeated.
LONG_BURST = 5.0
SCENARIO = "coalesced burst"
METRIC = "server CPU per delivery"
PUBLICATIONS = 200
SIZE = 100
#: Publications of the warm-up burst (before the measured ones).
WARMUP = 5
TRANSPORT_NAMES = {"ws": "WebSocket", "sse": "SSE", "poll": "long polling"}

#: (subscribers, transport, systems) of the full run.
FULL = [
    (1000, "ws", ("rtlink", "socketio", "naive", "floor", "nodews", "nodesio")),
    # Peers at 5,000 cost the run more than they tell: one burst of python-socketio
    # takes 1.5-3 minutes, the Node peers' are bound by the readers (40 s on a busy
    # machine).
    (5000, "ws", ("rtlink", "naive", "floor")),
    (1000, "sse", ("rtlink", "naive", "floor")),
    (1000, "poll", ("rtlink", "socketio")),
]
QUICK = [(1000, "ws", ("rtlink", "socketio", "naive", "floor", "nodews", "nodesio"))]


def measure(system: str, transport: str, subscribers: int,
            repetitions: int) -> tuple[list[float], str]:
    """CPU µs per delivery of each repetition, and notes (losses, wall times)."""
    values: list[float] = []
    user: list[float] = []
    system_: list[float] = []
    walls: list[float] = []
    notes: list[str] = []
    with running(system, transport) as server:
        with ClientGroup(system, transport, server.port, subscribers) as clients:
            clients.reset()
            control(server.port, "burst", count=WARMUP, size=SIZE)
            clients.wait_end()
            for _ in range(repetitions):
                if walls and walls[0] > LONG_BURST:
                    break
                clients.reset()
                before = cpu_seconds(server.pid)
                user_before, system_before = cpu_split(server.pid)
                started = time.monotonic()
                control(server.port, "burst", timeout=600, count=PUBLICATIONS, size=SIZE)
                clients.wait_end(timeout=600)
                used = cpu_seconds(server.pid) - before
                wall = time.monotonic() - started
                user_after, system_after = cpu_split(server.pid)
                received = clients.report().received
                expected = subscribers * PUBLICATIONS
                if received != expected:
                    notes.append(f"received {received:,} of {expected:,}")
                values.append(used / received * 1e6)
                user.append((user_after - user_before) / received * 1e6)
                system_.append((system_after - system_before) / received * 1e6)
                walls.append(wall)
    notes.append(f"user {median(user):.2f} + system {median(system_):.2f} µs")
    notes.append("burst wall " + ", ".join(f"{wall:.1f}" for wall in walls) + " s")
    return values, "; ".join(notes)


def case(system: str, transport: str, subscribers: int, label: str,
         repetitions: int) -> list[Row]:
    """The row of one case."""
    values, notes = measure(system, transport, subscribers, repetitions)
    spread = f"runs {', '.join(f'{v:.2f}' for v in values)}; " if len(values) > 1 else ""
    return [Row(SCENARIO, SYSTEMS[system], label, METRIC, round(median(values), 3), "µs",
                spread + notes)]


def run(quick: bool) -> list[Row]:
    rows = []
    for subscribers, transport, systems in QUICK if quick else FULL:
        for system in systems:
            repetitions = 1 if quick else 3
            label = f"{TRANSPORT_NAMES[transport]}, {subscribers:,} subscribers"
            rows += guarded(SCENARIO, system, label, METRIC, "µs",
                            functools.partial(case, system, transport, subscribers, label,
                                              repetitions))
    return rows

"""Latency-bound fan-out on one channel: one publication at a time, each awaited.

Unlike the burst (``fanout``), nothing can be coalesced: each publication is delivered
to every subscriber before the next one is made, as when publications are rare.

Method, per system: the server runs pinned to core 0, the readers (bench/clients.py,
the same raw reader for every system) to core 1. N readers subscribe to "bench" and
wait until each subscription is confirmed. Per round: zero the readers' counters, read
the server's CPU time (the scheduler's, /proc/<pid>/task/*/schedstat), ``POST
/control/burst?count=1&size=100`` (one publication, stamped with the server's wall
clock just before it is handed to the publish call), wait until every reader received
it, read the CPU time again. 3 unmeasured rounds first, then 30 measured at 1,000
subscribers and 10 at 5,000 and 10,000 (``--quick``: 1,000 only, 20 rounds). The
subscriber counts grow on one server: 4,000 readers are added to the first 1,000,
then 5,000 more.

- **server CPU per delivery** = the CPU of all measured rounds / their deliveries. It
  includes the control request that triggers each publication (aiohttp: about
  0.2-0.4 ms of CPU, i.e. 0.2-0.4 µs per delivery at 1,000; Node's HTTP server less).
- **wall per publication** = p50 over the rounds of the time from sending the control
  request to the moment the harness learns that the last reader got the publication
  (it includes the control request's round trip and the readers' report over a pipe,
  about 0.1-0.3 ms).
- **first receipt** = p50 over the rounds of (the earliest ``time.time()`` at which
  any reader got the publication − its ``"t"``): how soon the first subscriber hears
  of a publication.

rtlink's rows note the targets of issue 19: its CPU per delivery as a multiple of the
asyncio floor's in the same case (≤ 1.1 ×), first receipt ≤ 1 ms at 1,000.
"""

from __future__ import annotations

import functools
import time

from bench.clients import ClientGroup
from bench.common import (
    SYSTEMS,
    WS_SYSTEMS,
    Row,
    compare,
    control,
    cpu_seconds,
    failure,
    grouped,
    guarded,
    median,
    running,
)

__all__ = ["TITLE", "run", "measure_rounds", "FULL", "QUICK"]

TITLE = ("Latency-bound fan-out: 1 channel, one ~100 B publication at a time, each "
         "awaited until every WebSocket subscriber got it")
SCENARIO = "latency-bound fan-out"
SIZE = 100
WARMUP = 3
#: (subscribers, measured rounds) of the full and quick runs.
FULL = [(1000, 30), (5000, 10), (10000, 10)]
QUICK = [(1000, 20)]
#: Targets of issue 19, noted in rtlink's rows.
TARGETS = {"first": "; target ≤ 1 ms at 1,000"}


def measure_rounds(server_pid: int, port: int, clients: ClientGroup,
                   rounds: int) -> tuple[float, list[float], list[float], list[str]]:
    """CPU µs per delivery, wall seconds and first receipts (s) of each round, notes."""
    used = 0.0
    delivered = 0
    walls: list[float] = []
    firsts: list[float] = []
    notes: list[str] = []
    for _ in range(rounds):
        clients.reset()
        before = cpu_seconds(server_pid)
        started = time.monotonic()
        control(port, "burst", timeout=120, count=1, size=SIZE)
        clients.wait_end(timeout=120)
        walls.append(time.monotonic() - started)
        used += cpu_seconds(server_pid) - before
        report = clients.report()
        delivered += report.received
        if report.received != clients.connections:
            notes.append(f"received {report.received:,} of {clients.connections:,}")
        if report.zero is not None:
            firsts.append(report.zero)
    return used / max(1, delivered) * 1e6, walls, firsts, notes


def _measure(system: str, cases: list[tuple[int, int]]) -> list[Row]:
    name = SYSTEMS[system]
    rows: list[Row] = []
    with running(system, "ws") as server, ClientGroup(system, "ws", server.port, cases[0][0],
                                                       latency=True) as clients:
        for subscribers, rounds in cases:
            label = f"1 channel × {subscribers:,}"
            try:
                if subscribers > clients.connections:
                    clients.add(subscribers - clients.connections)
                measure_rounds(server.pid, server.port, clients, WARMUP)
                cpu, walls, firsts, notes = measure_rounds(server.pid, server.port, clients,
                                                           rounds)
            except Exception as error:  # reported in place; larger cases need this one
                rows.append(failure(SCENARIO, system, label, "server CPU per delivery", "µs",
                                    error))
                break
            rtlink = system == "rtlink"
            common = f"{rounds} rounds" + "".join(f"; {note}" for note in sorted(set(notes)))
            rows += [
                Row(SCENARIO, name, label, "server CPU per delivery", round(cpu, 2), "µs",
                    f"{common}; includes one control request per publication"),
                Row(SCENARIO, name, label, "wall per publication, p50",
                    round(median(walls) * 1e3, 2), "ms",
                    f"{common}; control request → last subscriber's receipt known; "
                    f"max {max(walls) * 1e3:.1f} ms"),
            ]
            if firsts:
                rows.append(Row(SCENARIO, name, label, "first receipt, p50",
                                round(median(firsts) * 1e3, 3), "ms",
                                f"{common}; earliest receipt − send stamp; max "
                                f"{max(firsts) * 1e3:.2f} ms"
                                + (TARGETS["first"] if rtlink and subscribers == 1000
                                   else "")))
    return rows


def run(quick: bool) -> list[Row]:
    cases = QUICK if quick else FULL
    rows: list[Row] = []
    for system in WS_SYSTEMS:
        rows += guarded(SCENARIO, system, f"1 channel × {cases[0][0]:,}",
                        "server CPU per delivery", "µs",
                        functools.partial(_measure, system, cases))
    compare(rows, "server CPU per delivery", "asyncio floor", "1.1")
    return grouped(rows)

"""Steady rate: publish→deliver latency and server CPU at 10, 100 and 1,000 publications/s.

Each system's server (bench/servers/, pinned to the server core) gets 1,000 WebSocket
subscribers of the channel "bench" from 2 reader processes (bench/scenarios/_support.py
``reader``, pinned to the client core; the same raw reader for every system). After a
warm-up of 50 publications at 100/s, the rates run in turn on the same server and
subscribers: ``POST /control/burst?rate=R`` publishes R messages of ~100 B a second for
6 s at 10/s, 5 s at 100/s and 5 s at 1,000/s (``--quick``: 100/s for 3 s), each
stamped with ``time.time()`` by the server just before it is handed to the system's
publish call. Every 10th subscriber (100 of them, spread over the subscription order)
computes, for every publication it receives, receive time − stamp into a histogram of
10 µs bins; the other subscribers only count what they receive. A rate ends when every
delivery arrived (or nothing more came for 2 s).

Rows per system and rate:

- **latency p50 / p99**: from the send stamp (the issue's publish→deliver), over the
  deliveries to the sampled subscribers. The notes give the same from when each
  publication was due at the asked rate (publication 0's stamp + n / R): a server that
  cannot keep the rate publishes late and stamps late, and only that figure shows what
  a subscriber sees then.
- **server CPU, share of a core**: the server's CPU time (scheduler, all threads) over
  the wall time from the start of the publications to the last delivery; 100 % means
  the server had no time left. The notes give the rate achieved and the readers' CPU.

A rate is *held* when the server published all of it within 5 % of the planned time. A
run still publishing at 1.5 × its planned length + 1 s is cut by stopping the server
and measured on what arrived; the higher rates are then not run for that system (it
could not keep a lower one).

A caveat on the publisher: ``bench.servers.burst`` sleeps only while it is ahead of
schedule and otherwise yields once to the event loop (Node: a timer or
``setImmediate``); a publish call that never suspends (rtlink's memory backend only
queues) still lets the writers run between publications.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from typing import Any

from bench.common import (
    CLIENT_CPU,
    ROOT,
    SERVER_CPU,
    SYSTEMS,
    WS_SYSTEMS,
    Row,
    Server,
    control,
    cpu_seconds,
    failure,
    grouped,
    guarded,
    running,
)

from ._support import Histogram

__all__ = ["TITLE", "run", "measure", "measure_rate", "FULL", "QUICK"]

TITLE = ("Steady rate: 1,000 WebSocket subscribers of 1 channel, publications of ~100 B at "
         "10, 100 and 1,000 per second")
SCENARIO = "steady rate"
SUBSCRIBERS = 1000
READER_PROCESSES = 2
SIZE = 100
#: Every k-th subscriber times its deliveries; the others only count them.
SAMPLE_EVERY = 10
#: (publications per second, seconds) of the full and quick runs, in running order.
FULL = [(10.0, 6.0), (100.0, 5.0), (1000.0, 5.0)]
QUICK = [(100.0, 3.0)]
#: A rate is held when it was published within this factor of its planned time.
HELD = 1.05
#: Targets of issue 19 for rtlink, by rate.
TARGETS = {100.0: ("latency p99", "target ≤ 10 ms"),
           1000.0: ("server CPU, share of a core", "target: held in every run, ≤ 60 %")}


class Readers:
    """The reader processes of one run."""

    def __init__(self, port: int, system: str, total: int, processes: int) -> None:
        share = [total // processes + (i < total % processes) for i in range(processes)]
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.scenarios._support", "reader", "--port",
                 str(port), "--system", system, "--count", str(count),
                 "--sample-every", str(SAMPLE_EVERY), "--cpu", str(CLIENT_CPU)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for count in share
        ]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def _ask(self, command: str | None) -> list[dict[str, Any]]:
        answers = []
        for process in self.processes:
            assert process.stdin is not None and process.stdout is not None
            if command is not None:
                process.stdin.write(command + "\n")
                process.stdin.flush()
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"reader {process.pid} exited ({process.poll()})")
            answers.append(json.loads(line))
        return answers

    def ready(self) -> int:
        """Wait until every reader has its subscribers in place; how many are."""
        return sum(answer["ready"] for answer in self._ask(None))

    def reset(self, rate: float) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(f"reset {rate}\n")
            process.stdin.flush()

    def received(self) -> int:
        return sum(answer["received"] for answer in self._ask("count"))

    def histograms(self, command: str = "report") -> tuple[Histogram, Histogram, int, int]:
        """Latencies since the last reset from the send stamps and from the schedule,
        deliveries counted and connections lost (``command="stop"`` also stops the
        readers)."""
        stamped, scheduled = Histogram(), Histogram()
        received = lost = 0
        for answer in self._ask(command):
            stamped.merge(answer["counts"])
            scheduled.merge(answer["scheduled"])
            received += answer["received"]
            lost += answer["lost"]
        return stamped, scheduled, received, lost

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def burst(port: int, count: int, rate: float, timeout: float) -> tuple[float, bool]:
    """Publish ``count`` messages at ``rate``; (seconds taken, whether it finished)."""
    began = time.monotonic()
    try:
        control(port, "burst", timeout=timeout, count=count, size=SIZE, rate=rate)
    except OSError:  # urllib's timeout: the server is far behind the rate
        return time.monotonic() - began, False
    return time.monotonic() - began, True


def drain(readers: Readers, expected: int) -> None:
    """Wait until ``expected`` deliveries arrived, or nothing more came for 2 s."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.0:
        got = readers.received()
        if got >= expected:
            return
        if got != last:
            last, stable_since = got, time.monotonic()
        time.sleep(0.05)


def measure_rate(system: str, server: Server, readers: Readers, rate: float,
                 seconds: float) -> tuple[list[Row], bool]:
    """One rate on a running server of ``system``; its rows and whether the server is
    still up."""
    name = SYSTEMS[system]
    label = f"1,000 subscribers, {rate:,.0f}/s"
    count = int(rate * seconds)
    readers.reset(rate)
    cpu_before = [cpu_seconds(pid) for pid in (server.pid, *readers.pids)]
    began = time.monotonic()
    elapsed, finished = burst(server.port, count, rate, timeout=seconds * 1.5 + 1)
    if not finished:
        server_cpu = cpu_seconds(server.pid) - cpu_before[0]
        server.stop()  # cut the run: what arrived so far is measured
    expected = count * SUBSCRIBERS
    drain(readers, expected)
    # The share of a core: until the last delivery, or until the cut.
    wall = time.monotonic() - began if finished else elapsed
    if finished:
        server_cpu = cpu_seconds(server.pid) - cpu_before[0]
    readers_cpu = sum(cpu_seconds(pid) for pid in readers.pids) - sum(cpu_before[1:])
    stamped, scheduled, delivered, lost = readers.histograms()
    held = finished and elapsed <= seconds * HELD + 0.05
    if finished:
        sent = (f"{'held' if held else 'NOT held'}: {count:,} publications in "
                f"{elapsed:.2f} s ({count / elapsed:,.0f}/s)")
    else:
        sent = (f"NOT held: cut after {elapsed:.1f} s (server stopped) with about "
                f"{delivered // SUBSCRIBERS:,} of {count:,} publications delivered")
    arrived = f"{delivered:,} of {expected:,} deliveries arrived, {lost} connections lost"
    sample = f"{stamped.total:,} deliveries to every {SAMPLE_EVERY}th subscriber"
    target = TARGETS.get(rate) if system == "rtlink" else None

    def noted(metric: str, text: str) -> str:
        return text + (f"; {target[1]}" if target and target[0] == metric else "")

    rows = []
    if stamped.total:
        late = (f"from schedule p50 {ms(scheduled.percentile(0.5))} / p99 "
                f"{ms(scheduled.percentile(0.99))} ms") if scheduled.total else ""
        rows += [
            Row(SCENARIO, name, label, "latency p50", ms(stamped.percentile(0.5)), "ms",
                noted("latency p50", f"{sent}; from the send stamp; {sample}; {late}")),
            Row(SCENARIO, name, label, "latency p99", ms(stamped.percentile(0.99)), "ms",
                noted("latency p99", f"{sent}; from the send stamp; {late}")),
        ]
    else:
        rows.append(Row(SCENARIO, name, label, "latency p99", float("nan"), "ms",
                        f"no delivery timed: {arrived}"))
    rows.append(Row(SCENARIO, name, label, "server CPU, share of a core",
                    round(server_cpu / wall * 100, 1), "%",
                    noted("server CPU, share of a core",
                          f"{sent}; {server_cpu:.2f} s of server CPU in {wall:.1f} s "
                          f"({server_cpu / max(1, delivered) * 1e6:.2f} µs per delivery), "
                          f"readers {readers_cpu:.1f} s; {arrived}")))
    return rows, finished


def measure(system: str, plan: list[tuple[float, float]]) -> list[Row]:
    """Every rate of ``plan`` against one server of ``system``; its rows."""
    rows: list[Row] = []
    with running(system, "ws", cpu=SERVER_CPU) as server:
        readers = Readers(server.port, system, SUBSCRIBERS, READER_PROCESSES)
        try:
            subscribed = readers.ready()
            if subscribed < SUBSCRIBERS:
                raise RuntimeError(f"{system}: only {subscribed} of {SUBSCRIBERS} subscribed")
            readers.reset(0)
            burst(server.port, 50, 100.0, timeout=30)  # warm-up, 0.5 s
            drain(readers, 50 * SUBSCRIBERS)
            for index, (rate, seconds) in enumerate(plan):
                rate_rows, up = measure_rate(system, server, readers, rate, seconds)
                rows += rate_rows
                if not up:
                    rows += [failure(SCENARIO, system, f"1,000 subscribers, {later:,.0f}/s",
                                     "server CPU, share of a core", "%",
                                     f"not run: {rate:,.0f}/s was not held")
                             for later, _ in plan[index + 1:]]
                    break
        finally:
            readers.close()
    return rows


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def run(quick: bool) -> list[Row]:
    plan = QUICK if quick else FULL
    rows: list[Row] = []
    for system in WS_SYSTEMS:
        rows += guarded(SCENARIO, system, f"1,000 subscribers, {plan[0][0]:,.0f}/s",
                        "latency p99", "ms", functools.partial(measure, system, plan))
    return grouped(rows)

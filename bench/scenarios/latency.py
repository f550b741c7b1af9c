"""Steady rate: publish→deliver latency with 1,000 WebSocket subscribers, 1,000 msgs/s.

Each system's server (bench/servers/, pinned to the server core) gets 1,000 WebSocket
subscribers of the channel "bench" from 2 reader processes (bench/scenarios/_support.py
``reader``, pinned to the client core; the same raw reader for every system). After a
0.5 s warm-up, ``POST /control/burst?rate=1000`` publishes 1,000 messages a second for
10 s (3 s with ``--quick``), each stamped with ``time.time()`` by the server just
before it is handed to the system's publish call. Every 10th subscriber (100 of them,
spread over the subscription order) computes, for every publication it receives,
receive time − stamp into a histogram of 10 µs bins; the other subscribers only count
what they receive, so the readers cost far less per delivery than any server.

Two latencies are reported: from the send stamp (the issue's publish→deliver), and
from when the publication was due at 1,000/s (publication 0's stamp + n / 1,000). They
differ when a server cannot keep the rate: its publish loop waits for the fan-out, so it
publishes late and stamps late, and only the second figure shows what a subscriber
sees. A run still publishing at twice its planned length (+5 s) is cut by stopping the
server and measured on what arrived; rtlink runs alone in ``--quick`` (the peers take
minutes: they fall far behind the rate).

A caveat on the publisher: ``bench.servers.burst`` sleeps only while it is ahead of
schedule. A server whose publish call never suspends (rtlink with the memory backend:
``hub.publish`` only queues) and that falls behind the rate then runs the whole burst
without giving its writers a turn: nothing is written until the burst ends, the
deliveries come all at once (well coalesced, late), and a 10 s burst overflows rtlink's
1 MiB outbound limit, which closes every subscriber as a slow consumer.
"""

from __future__ import annotations

import asyncio
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
    Row,
    control,
    cpu_seconds,
    running,
)

from ._support import BIN_SECONDS, BINS, SYSTEM_PROTOCOLS, Histogram

__all__ = ["TITLE", "run"]

TITLE = "steady rate: 1,000 WS subscribers, 1,000 publications/s"
SCENARIO = "latency"
SUBSCRIBERS = 1000
READER_PROCESSES = 2
RATE = 1000.0
SIZE = 100
#: Every k-th subscriber times its deliveries; the others only count them.
SAMPLE_EVERY = 10


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

    def histograms(self) -> tuple[Histogram, Histogram, int, int]:
        """Stop the readers: latencies from the send stamps and from the schedule,
        deliveries counted and connections lost."""
        stamped, scheduled = Histogram(), Histogram()
        received = lost = 0
        for answer in self._ask("stop"):
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


def burst(port: int, count: int, timeout: float) -> tuple[float, bool]:
    """Publish ``count`` messages at RATE; (seconds taken, whether it finished)."""
    began = time.monotonic()
    try:
        control(port, "burst", timeout=timeout, count=count, size=SIZE, rate=RATE)
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
        time.sleep(0.1)


def measure(system: str, seconds: float) -> list[Row]:
    """One run against ``system``; its rows."""
    name = SYSTEMS.get(system, system)
    count = int(RATE * seconds)
    with running(system, "ws", cpu=SERVER_CPU) as server:
        readers = Readers(server.port, system, SUBSCRIBERS, READER_PROCESSES)
        try:
            subscribed = readers.ready()
            if subscribed < SUBSCRIBERS:
                raise RuntimeError(f"{system}: only {subscribed} of {SUBSCRIBERS} subscribed")
            readers.reset(0)
            burst(server.port, int(RATE / 2), timeout=30)  # warm-up, 0.5 s
            drain(readers, int(RATE / 2) * SUBSCRIBERS)
            readers.reset(RATE)
            cpu_before = [cpu_seconds(pid) for pid in (server.pid, *readers.pids)]
            wall_before = time.monotonic()
            elapsed, finished = burst(server.port, count, timeout=2 * seconds + 5)
            if not finished:
                server_cpu = cpu_seconds(server.pid) - cpu_before[0]
                server.stop()  # cut the run: what arrived so far is measured
            expected = count * SUBSCRIBERS
            drain(readers, expected)
            wall = time.monotonic() - wall_before
            cpu = [cpu_seconds(pid) - before
                   for pid, before in zip((server.pid, *readers.pids), cpu_before, strict=True)
                   ] if finished else []
            if finished:
                server_cpu = cpu[0]
            stamped, scheduled, delivered, lost = readers.histograms()
        finally:
            readers.close()
    if finished:
        rate, sent = count / elapsed, f"{count:,} publications in {elapsed:.1f} s"
    else:  # what arrived says how many were sent, at least
        rate = delivered / SUBSCRIBERS / elapsed
        sent = (f"cut after {elapsed:.1f} s (server stopped) with about "
                f"{delivered // SUBSCRIBERS:,} of {count:,} publications sent")
    if cpu:
        sent += (f"; {wall:.1f} s to the last delivery: server CPU {cpu[0]:.1f} s, "
                 f"readers {sum(cpu[1:]):.1f} s")
    arrived = (f"{delivered:,} of {expected:,} deliveries arrived, {lost} connections lost"
               + ("" if finished else " (server stopped)"))
    rows = [Row(SCENARIO, name, "ws", "publish rate achieved", round(rate, 1), "msgs/s",
                f"asked {RATE:.0f}/s; {sent}; {arrived}")]
    if delivered:
        rows.append(Row(SCENARIO, name, "ws", "server CPU per delivery",
                        round(server_cpu / delivered * 1e6, 2), "µs",
                        f"{server_cpu:.1f} s of server CPU for {delivered:,} deliveries"
                        + ("" if finished else " (until the cut)")))
    sample = f"deliveries to every {SAMPLE_EVERY}th subscriber ({stamped.total:,})"
    if stamped.total:
        target = "; target ≤ 20 ms" if system == "rtlink" else ""
        rows += [
            Row(SCENARIO, name, "ws", "latency p50", ms(stamped.percentile(0.5)), "ms",
                f"from the send stamp; {sample}"),
            Row(SCENARIO, name, "ws", "latency p99", ms(stamped.percentile(0.99)), "ms",
                f"from the send stamp; {sample}; {arrived}{target}"),
        ]
    else:
        rows.append(Row(SCENARIO, name, "ws", "latency p99", float("nan"), "ms",
                        f"no delivery timed: {arrived}"))
    if scheduled.total:
        rows += [
            Row(SCENARIO, name, "ws", "latency p50 from schedule",
                ms(scheduled.percentile(0.5)), "ms",
                f"from when due at {RATE:.0f}/s (counts a server falling behind)"),
            Row(SCENARIO, name, "ws", "latency p99 from schedule",
                ms(scheduled.percentile(0.99)), "ms",
                f"from when due at {RATE:.0f}/s; {sample}; histogram ends at "
                f"{BINS * BIN_SECONDS:.0f} s"),
        ]
    return rows


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def systems(quick: bool) -> list[str]:
    """rtlink, then the peers whose server and reader protocol exist."""
    available: list[str] = [name for name in ("rtlink", "floor", "naive", "socketio")
                 if (ROOT / "bench" / "servers" / f"{name}.py").exists()
                 and name in SYSTEM_PROTOCOLS]
    return available[:1] if quick else available


async def run(quick: bool) -> list[Row]:
    seconds = 3.0 if quick else 10.0
    rows: list[Row] = []
    loop = asyncio.get_running_loop()
    for system in systems(quick):
        rows += await loop.run_in_executor(None, measure, system, seconds)
    return rows

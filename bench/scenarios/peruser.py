"""Per-user channels: N channels with one WebSocket subscriber each, server CPU per delivery.

The shape of a notification feed. Each system serves it its natural way: rtlink a
channel pattern ``user:*`` (a ``subscribe`` frame per connection), python-socketio and
Node socket.io a room per user (joined on connect), the naive aiohttp, asyncio floor
and Node ws servers a dict of channel → set of sockets (``?channel=`` in the URL).

Method, per system and backend: the server runs pinned to core 0, the readers
(bench/clients.py, the same raw reader for every system) to core 1. N readers connect,
reader *i* subscribed to ``user:<i>``, and wait until each subscription is confirmed.
Two warm-up passes, then per repetition: zero the readers' counters, read the server's
CPU time (the scheduler's, /proc/<pid>/task/*/schedstat), ``POST
/control/users?channels=N`` (the server publishes one ~100 B publication to each of the
N channels in one loop, back to back, ``user:0`` first), wait until every reader
received its publication, read the CPU time again. A pass has exactly one publication
per connection, so nothing can be coalesced.

- **server CPU per delivery** = CPU used / deliveries (N unless some were lost): the
  median over the repetitions (memory: 9 at 1,000 channels, 5 at 5,000, 3 at 10,000;
  Redis: 5 at 1,000, 2 at 10,000; ``--quick``: 5, 3 and 3). It includes the one
  control request of a pass (well under 1 µs per delivery at 1,000). The notes give
  each repetition, the user/system split summed over them (10 ms ticks) and the wall
  time of a pass.
- **first user's receipt** = when ``user:0``'s reader got its publication minus the
  publication's ``"t"`` (the server's wall clock just before it handed it to the
  publish call), median over the repetitions: how long the first user waits while the
  server publishes to everybody else. At 5,000 channels this is the first user of a
  per-user loop of 5,000 publications.

The channel counts grow on one server: 4,000 readers are added to the first 1,000,
then 5,000 more. On Redis (a private redis-server on a free loopback port, never 6379,
one per system): rtlink with its Redis backend, python-socketio with
``AsyncRedisManager`` (its standard Redis adapter); the CPU is the server process's
(the node's), redis-server's own is in the notes. Node socket.io's Redis adapter is
another npm package: not measured. ``--quick``: memory at 1,000 and 5,000 channels,
Redis at 1,000.

rtlink's rows note the targets of issue 19: on memory its CPU per delivery as a multiple
of Node ws's in the same case (≤ 0.8 ×), on Redis ≤ 30 µs, the first user ≤ 1 ms.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.clients import ClientGroup
from bench.common import (
    SYSTEMS,
    WS_SYSTEMS,
    Row,
    compare,
    control,
    cpu_seconds,
    cpu_split,
    failure,
    grouped,
    guarded,
    median,
    running,
)

from .redis import redis_server_binary

__all__ = ["TITLE", "run", "Pass", "measure_passes", "FULL", "QUICK"]

TITLE = ("Per-user channels: N channels × 1 WebSocket subscriber, one ~100 B publication "
         "to each, back to back")
SCENARIO = "per-user channels"
SIZE = 100
#: Systems measured on Redis: those whose standard Redis adapter the bench can run.
REDIS_SYSTEMS = ("rtlink", "socketio")
#: Targets of issue 19, noted in rtlink's rows.
TARGETS = {
    "Redis": "target ≤ 30 µs of node CPU per delivery",
    "first": "; target ≤ 1 ms",
}
#: Unmeasured passes before the measured ones (imports, caches, JIT, Redis streams).
WARMUP = 2


@dataclass
class Pass:
    """The figures of one set of repetitions of a per-user loop."""

    cpu: list[float] = field(default_factory=list)  # µs per delivery, per repetition
    user: float = 0.0  # s, all repetitions (10 ms ticks: too coarse for one pass)
    kernel: float = 0.0
    deliveries: int = 0
    first: list[float] = field(default_factory=list)  # user:0's receipt of publication 0, s
    wall: list[float] = field(default_factory=list)  # s per pass
    redis: list[float] = field(default_factory=list)  # redis-server CPU µs per delivery
    lost: list[str] = field(default_factory=list)


def measure_passes(server_pid: int, port: int, clients: ClientGroup, channels: int,
                   repetitions: int, redis_pid: int | None = None) -> Pass:
    """``repetitions`` passes of one publication to each of ``channels`` channels."""
    result = Pass()
    for _ in range(repetitions):
        clients.reset()
        before = cpu_seconds(server_pid)
        user_before, kernel_before = cpu_split(server_pid)
        redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
        started = time.monotonic()
        control(port, "users", timeout=600, channels=channels, size=SIZE)
        clients.wait_end(timeout=600)
        wall = time.monotonic() - started
        used = cpu_seconds(server_pid) - before
        user_after, kernel_after = cpu_split(server_pid)
        report = clients.report()
        if report.received != channels:
            result.lost.append(f"received {report.received:,} of {channels:,}")
        received = max(1, report.received)
        result.cpu.append(used / received * 1e6)
        result.user += user_after - user_before
        result.kernel += kernel_after - kernel_before
        result.deliveries += received
        result.wall.append(wall)
        if report.zero is not None:
            result.first.append(report.zero)
        if redis_pid:
            result.redis.append((cpu_seconds(redis_pid) - redis_before) / received * 1e6)
    return result


def _rows(system: str, place: str, channels: int, result: Pass) -> list[Row]:
    name = SYSTEMS[system]
    label = f"{place}, {channels:,} channels × 1"
    runs = ", ".join(f"{value:.1f}" for value in result.cpu)
    notes = [f"runs {runs}; user {result.user / result.deliveries * 1e6:.0f} + system "
             f"{result.kernel / result.deliveries * 1e6:.0f} µs (10 ms ticks); wall per "
             f"pass {median(result.wall) * 1e3:,.0f} ms"]
    if result.redis:
        notes.append(f"redis-server CPU {median(result.redis):.1f} µs per delivery")
    notes += result.lost
    if system == "rtlink" and place in TARGETS:
        notes.append(TARGETS[place])
    rows = [Row(SCENARIO, name, label, "server CPU per delivery",
                round(median(result.cpu), 2), "µs", "; ".join(notes))]
    if result.first:
        rows.append(Row(SCENARIO, name, label, "first user's receipt, p50",
                        round(median(result.first) * 1e3, 3), "ms",
                        f"user:0's receipt of its publication − its send stamp, in a loop "
                        f"of {channels:,} publications (user:0 first); median of "
                        f"{len(result.first)}" + (TARGETS["first"] if system == "rtlink"
                                                  else "")))
    return rows


def _failed(system: str, label: str, error: BaseException | str) -> Row:
    return failure(SCENARIO, system, label, "server CPU per delivery", "µs", error)


@contextlib.contextmanager
def _redis() -> Iterator[tuple[str, int] | None]:
    """A private redis-server (URL, pid) for the block, or None if none is installed."""
    binary = redis_server_binary()
    if binary is None:
        yield None
        return
    from bench.redis_publish import private_server_process

    with private_server_process(binary) as (url, process):
        yield url, process.pid


def _measure(system: str, backend: str, sizes: list[int],
             repetitions: list[int]) -> list[Row]:
    """The rows of one system on one backend, at growing channel counts."""
    rows: list[Row] = []
    place = "Redis" if backend == "redis" else "memory"
    with contextlib.ExitStack() as stack:
        extra: list[str] = []
        redis_pid = None
        if backend == "redis":
            redis = stack.enter_context(_redis())
            if redis is None:
                return [_failed(system, place, "not measured: redis-server is not installed")]
            extra = ["--backend", redis[0]]
            redis_pid = redis[1]
        server = stack.enter_context(running(system, "ws", extra_args=extra))
        clients = stack.enter_context(ClientGroup(system, "ws", server.port, sizes[0],
                                                  latency=True, per_user=True))
        for channels, reps in zip(sizes, repetitions, strict=True):
            try:
                if channels > clients.connections:
                    clients.add(channels - clients.connections)
                measure_passes(server.pid, server.port, clients, channels, WARMUP)
                result = measure_passes(server.pid, server.port, clients, channels, reps,
                                        redis_pid)
                rows += _rows(system, place, channels, result)
            except Exception as error:  # reported in place; larger sizes need this one
                rows.append(_failed(system, f"{place}, {channels:,} channels × 1", error))
                break
    return rows


#: (backend, systems, channel counts, repetitions at each) of the full and quick runs.
FULL = [("memory", WS_SYSTEMS, [1000, 5000, 10000], [9, 5, 3]),
        ("redis", REDIS_SYSTEMS, [1000, 10000], [5, 2])]
QUICK = [("memory", WS_SYSTEMS, [1000, 5000], [5, 3]),
         ("redis", REDIS_SYSTEMS, [1000], [3])]


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    for backend, systems, sizes, repetitions in QUICK if quick else FULL:
        for system in systems:
            rows += guarded(SCENARIO, system, backend, "server CPU per delivery", "µs",
                            functools.partial(_measure, system, backend, sizes, repetitions))
    compare(rows, "server CPU per delivery", "Node ws", "0.8")  # the memory rows
    return grouped(rows)

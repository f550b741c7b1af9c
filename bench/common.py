"""Shared pieces of the benchmark harness: rows, ports, process meters, servers, pinning.

Everything here is stable API for the scenario modules (``bench/scenarios/*.py``):

``Row``, ``failure(...)``, ``guarded(...)``
    One measured figure (scenario, system, transport, metric, value, unit, notes); the
    row of a case that failed or could not run (NaN and the reason); a measurement
    whose failure becomes such a row.
``free_port()``
    A free TCP port on 127.0.0.1.
``cpu_seconds(pid)``
    User + system CPU time of a process: the scheduler's nanosecond run time of its
    threads (``/proc/<pid>/task/*/schedstat``), else ``/proc/<pid>/stat`` (10 ms ticks).
``cpu_split(pid)``
    (user, system) CPU seconds from ``/proc/<pid>/stat`` (10 ms ticks).
``rss_bytes(pid)``
    Resident set size of a process, from ``/proc/<pid>/status`` (``VmRSS``).
``start_server(module, port, transport, cpu)``
    Runs the server of a system (``python -m bench.servers.<module>``, or for the Node
    peers ``node bench/servers/node/<file>.mjs``) with ``--port P --transport T`` as a
    subprocess pinned to ``cpu``, waits until it prints ``ready`` and returns a
    :class:`Server` (``pid``, ``port``, ``url``, ``stop()``; also a context manager).
``missing(module)``
    Why a system's server cannot run here (Node or its packages absent), or None.
``raise_nofile()``
    Raises this process's RLIMIT_NOFILE soft limit to the hard limit.
``pin(cpu)``
    Pins this process to one CPU (no-op when it does not exist); ``SERVER_CPU`` and
    ``CLIENT_CPU`` say which cores servers and load clients use.
``median(values)``, ``percentile(values, fraction)``, ``grouped(rows)``, ``compare``
    Small helpers: the median of repetitions, a nearest-rank percentile, rows ordered
    case by case, rtlink's ratio to a peer noted on its rows.
``SYSTEMS``
    Display names of the systems (server modules), in table order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "Row", "failure", "guarded", "free_port", "cpu_seconds", "cpu_split", "rss_bytes",
    "start_server", "server_command", "Server", "raise_nofile", "pin", "median", "percentile",
    "grouped", "compare", "control", "running", "missing", "SERVER_CPU", "CLIENT_CPU", "SYSTEMS",
    "WS_SYSTEMS", "NODE_SERVERS", "ROOT",
]

#: The repository root (servers run with it as working directory and on sys.path).
ROOT = Path(__file__).resolve().parent.parent
_CORES = os.cpu_count() or 1
#: The core the server under test runs on.
SERVER_CPU = 0
#: The core load clients run on: another one than the server's when there are 2+.
CLIENT_CPU = 1 if _CORES > 1 else 0
#: Display name of each system (its server module in bench/servers/), in table order.
SYSTEMS = {
    "rtlink": "rtlink",
    "socketio": "python-socketio",
    "naive": "naive aiohttp",
    "floor": "asyncio floor",
    "nodews": "Node ws",
    "nodesio": "Node socket.io",
}
#: The systems that serve WebSocket subscribers, in table order.
WS_SYSTEMS = tuple(SYSTEMS)
#: The Node peers: system -> script in bench/servers/node/ (packages: npm ci there).
NODE_SERVERS = {"nodews": "ws.mjs", "nodesio": "socketio.mjs"}
_NODE_DIR = ROOT / "bench" / "servers" / "node"


@dataclasses.dataclass
class Row:
    """One measured figure; the runner prints rows as tables and writes them to JSON."""

    scenario: str
    system: str
    transport: str
    metric: str
    value: float
    unit: str
    notes: str = ""


def failure(scenario: str, system: str, case: str, metric: str, unit: str,
            error: BaseException | str) -> Row:
    """The row reported in place of a figure that could not be measured: NaN, with the
    reason (a string such as "not measured: ...", or the exception) in its notes."""
    reason = error if isinstance(error, str) else f"failed: {type(error).__name__}: {error}"
    return Row(scenario, SYSTEMS.get(system, system), case, metric, float("nan"), unit,
               reason[:300])


def guarded(scenario: str, system: str, case: str, metric: str, unit: str,
            measure: Callable[[], list[Row]]) -> list[Row]:
    """The rows of ``measure()``, or one :func:`failure` row in their place: "not
    measured" when the system cannot run here (:func:`missing`), the exception when
    the measurement fails (one failed case must not end the whole run)."""
    reason = missing(system)
    if reason is not None:
        return [failure(scenario, system, case, metric, unit, f"not measured: {reason}")]
    try:
        return measure()
    except Exception as error:
        return [failure(scenario, system, case, metric, unit, error)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by the threads of process ``pid``.

    Read from ``/proc/<pid>/task/*/schedstat`` (the scheduler's run time, in
    nanoseconds) where the kernel provides it: the 10 ms ticks of ``/proc/<pid>/stat``
    would limit a 0.2 s burst to 5 % precision. Both agree within a tick on this
    machine. Falls back to utime + stime of ``/proc/<pid>/stat``.
    """
    try:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` from ``/proc/<pid>/stat`` (ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces: fields after it start past ")".
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 in proc(5)
    ticks = os.sysconf("SC_CLK_TCK")
    return utime / ticks, stime / ticks


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_nofile() -> int:
    """Raise the soft limit of open files to the hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin(cpu: int) -> None:
    """Run this process on core ``cpu`` only (ignored where the core does not exist)."""
    if cpu < _CORES and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def grouped(rows: Sequence[Row]) -> list[Row]:
    """``rows`` reordered so the rows of one (case, metric) follow each other, cases in
    the order they first appear (measurements run system by system; tables compare
    the systems case by case)."""
    order: dict[tuple[str, str], int] = {}
    for row in rows:
        order.setdefault((row.transport, row.metric), len(order))
    return sorted(rows, key=lambda row: order[(row.transport, row.metric)])


def compare(rows: Sequence[Row], metric: str, peer: str, target: str) -> None:
    """Note on each rtlink row of ``metric`` its ratio to ``peer``'s row of the same case
    (the table's ratios are the other way round), with the target for that ratio."""
    values = {row.transport: row.value for row in rows
              if row.system == peer and row.metric == metric}
    for row in rows:
        other = values.get(row.transport)
        if (row.system == "rtlink" and row.metric == metric and other
                and not math.isnan(other) and not math.isnan(row.value)):
            ratio = row.value / other
            row.notes = "; ".join(filter(None, [
                row.notes, f"= {ratio:.2f} × {peer} (target ≤ {target} ×)"]))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank ``fraction`` percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (the mean of the middle two for an even count)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def control(port: int, action: str, timeout: float = 120.0, **params: object) -> str:
    """POST ``/control/<action>?params`` to a bench server; returns the response body.

    Every server in bench/servers/ answers ``POST /control/burst?count=N&size=B``
    (publishes N messages of about B bytes to the channel "bench" as fast as it can,
    answers once they are all handed to the transports) and ``GET``-or-``POST``
    ``/control/subscribers`` (the number of subscribers of "bench", as text).
    """
    query = "&".join(f"{key}={value}" for key, value in params.items())
    url = f"http://127.0.0.1:{port}/control/{action}" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return str(response.read().decode())


class Server:
    """A bench server subprocess: ``pid``, ``port``, ``url`` and :meth:`stop`."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.pid = process.pid
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Terminate the server (kill after 5 s); safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def missing(module: str) -> str | None:
    """Why the server of ``module`` cannot run on this machine, or None if it can."""
    if module not in NODE_SERVERS:
        return None
    if shutil.which("node") is None:
        return "node is not installed"
    if not (_NODE_DIR / "node_modules" / ".package-lock.json").exists():
        return "its packages are not installed (npm ci in bench/servers/node; bench/run.sh does)"
    return None


def server_command(module: str) -> list[str]:
    """The command line of a system's server, up to its ``--port`` argument."""
    if module in NODE_SERVERS:
        return ["node", str(_NODE_DIR / NODE_SERVERS[module])]
    return [sys.executable, "-m", f"bench.servers.{module}"]


def start_server(module: str, port: int | None = None, transport: str = "ws",
                 cpu: int | None = SERVER_CPU, timeout: float = 30.0,
                 extra_args: Sequence[str] = ()) -> Server:
    """Start ``bench.servers.<module>`` and wait for its "ready" line.

    Args:
        module: a system of :data:`SYSTEMS` ("rtlink", "socketio", "naive", "floor",
            "nodews", "nodesio").
        port: the port to listen on (default: a free one).
        transport: "ws", "sse" or "poll" (servers serve what they can; the transport
            tells those that need it, e.g. python-socketio, what to enable).
        cpu: the core to pin the server to (None: no pinning).
        timeout: seconds to wait for "ready".
        extra_args: more command-line arguments for the server.

    Raises:
        RuntimeError: the server exited or did not get ready in time (its output is in
            the message).
    """
    port = port or free_port()
    reason = missing(module)
    if reason is not None:
        raise RuntimeError(f"server {module} cannot run: {reason}")
    command = [*server_command(module), "--port", str(port), "--transport", transport,
               *extra_args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")

    def prepare() -> None:  # in the child, before exec
        raise_nofile()
        if cpu is not None:
            pin(cpu)

    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, preexec_fn=prepare)
    server = Server(process, port)
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    output: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                break
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.strip() == b"ready":
                _drain_output(process)
                return server
    server.stop()
    raise RuntimeError(f"server {module} ({transport}) did not get ready:\n"
                       + b"".join(output).decode(errors="replace"))


def _drain_output(process: subprocess.Popen[bytes]) -> None:
    """Keep reading the server's output in a thread so a chatty server never blocks."""
    import threading

    def drain() -> None:
        assert process.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in iter(process.stdout.readline, b""):
                sys.stderr.write(f"[server {process.pid}] {line.decode(errors='replace')}")

    threading.Thread(target=drain, daemon=True).start()


@contextlib.contextmanager
def running(module: str, transport: str = "ws", **kwargs: object) -> Iterator[Server]:
    """``with running("rtlink", "ws") as server:`` — start_server, stopped on exit."""
    server = start_server(module, transport=transport, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()

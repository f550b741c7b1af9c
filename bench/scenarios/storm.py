"""Redis at the scale of per-user channels: delivery cost, burst connects, reconnect
catch-up, and Redis memory per channel (issue 19).

Every case runs a private redis-server (127.0.0.1, a free port, no persistence), one
node under test pinned to :data:`~bench.common.SERVER_CPU` and raw WebSocket readers
(``python -m bench.scenarios.storm readers``: a hand-written asyncio protocol, JSON
codec, one process per 5,000 connections) pinned to :data:`~bench.common.CLIENT_CPU`.
The rtlink node (``python -m bench.scenarios.storm node``) is ``rtlink.Hub`` on the
Redis backend with channels ``u:*`` of default options (history of 100 for 300 s),
served by ``rtlink.attach``. Publications come from this process through
:class:`rtlink.backends.redis.RedisBackend` (the publish script another node would
run), so the node under test spends its CPU only on what a subscriber node does. CPU
time is the scheduler's run time of the node's threads, as in the other scenarios.

``per-user``
    N channels ``u:0`` .. ``u:N-1`` with one WebSocket subscriber each (N = 5,000;
    ``--quick``: 1,000); after a warm-up round, two shapes: **steady**, 500 publications
    per second for 10 s (``--quick``: 4 s) round robin over the channels, and **back to
    back**, one publication per channel with 64 publishes in flight. **Node CPU µs per
    delivery** = the node's CPU time from the first publish until the readers received
    the last one, divided by the publications received. The same for the **asyncio
    floor** (``python -m bench.scenarios.storm floor``): one Redis pub/sub connection
    read by an ``asyncio.Protocol``, each message turned into one WebSocket frame
    (msgpack data to JSON) written at once to the channel's one subscriber, and nothing
    else (no history, positions, batching, or error handling): what any server fed by
    Redis pub/sub pays per delivery on this machine.
``burst``
    C clients (10,000; ``--quick``: 2,000) connect to the node at once (at most 1,000
    handshakes in flight, the rest queued by the readers) and each subscribes its own
    channel: without ``since`` (fresh clients), and again with ``since`` (clients moving
    from a node that went away: each channel had one publication, each client resumes
    from before it and must get it back with ``recovered: true``). **Seconds from the
    first connect until every client is subscribed**, the ``error`` frames the node
    answered (a client answered 503 retries after 0.5-1 s, as rtlink's clients back
    off), and the node's log lines (INFO and above).
``memory``
    10,000 channels (``--quick``: 2,000) with 1, then 10, publications of ~80 bytes
    each: **bytes per channel** as ``MEMORY USAGE`` summed over each channel's keys
    (mean of 200 channels), and the growth of ``used_memory`` divided by the channels.
``reconnect``
    L live channels on the node (20,000, 50,000 and 100,000; ``--quick``: 20,000),
    subscribed by L / 200 WebSocket connections of 200 channels each. The node process
    is stopped (SIGSTOP), Redis drops its pub/sub connection (``CLIENT KILL TYPE
    pubsub``), 1,000 publications are made to 1,000 random live channels (the gap: the
    node cannot have seen them), and the node is continued (SIGCONT). **Seconds from the
    SIGCONT until the readers got every gap publication**, whether each was delivered
    (counted per channel), the node's log lines meanwhile, its last one (the catch-up's
    summary), and the connections the node closed (4002 would mean a channel reported
    lost).

For developers: ``python -m bench.scenarios.storm run [--quick]`` runs the cases alone
and prints the rows; ``STORM_CASES=per-user,burst,memory,reconnect`` picks cases,
``STORM_LIVE=20000,50000`` the reconnect sizes, and ``STORM_PROFILE=PATH`` has the
rtlink node run cProfile over the per-user windows (slower: not for figures).

Everything stops by itself within its timeouts; the servers and readers are child
processes stopped in ``finally`` blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    CLIENT_CPU,
    ROOT,
    SERVER_CPU,
    Row,
    cpu_seconds,
    cpu_split,
    free_port,
    pin,
    raise_nofile,
)

__all__ = ["TITLE", "run"]

TITLE = "Redis storms: per-user channels, burst connects, pub/sub reconnect catch-up"
SCENARIO = "storm"
#: Connections per reader process.
_PER_PROCESS = 5_000
#: Channels per connection in the reconnect case.
_RECONNECT_FANIN = 200
_GAP = 1_000


# --------------------------------------------------------------------------------------
# The node under test
# --------------------------------------------------------------------------------------


class _CountingHandler(logging.Handler):
    """Counts the node's log records (INFO and above) and keeps the first and last."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.first: list[str] = []
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        line = f"{record.levelname} {record.getMessage()[:300]}"
        if len(self.first) < 3:
            self.first.append(line)
        self.last = line


async def _serve_node(args: argparse.Namespace) -> None:
    """The rtlink node under test, with two control routes beside it."""
    from aiohttp import web

    import rtlink

    counter = _CountingHandler()
    logging.getLogger("rtlink").addHandler(counter)
    logging.getLogger("rtlink").setLevel(logging.INFO)
    hub = rtlink.Hub(backend=args.redis,
                     channels={"u:*": rtlink.ChannelOptions(client_publish=False)},
                     max_subscriptions=args.max_subscriptions, publish_rate=None)
    app = web.Application()
    rtlink.attach(app, hub, path="/rt", transports=["websocket"], serve_client=False)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"connections": len(hub.connections),
                                  "log_lines": counter.count, "first_lines": counter.first,
                                  "last_line": counter.last})

    async def profile(request: web.Request) -> web.Response:
        # A developer's aid (STORM_PROFILE): cProfile over the measured window.
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        await asyncio.sleep(float(request.query["seconds"]))
        profiler.disable()
        profiler.dump_stats(request.query["path"])
        return web.Response(text="ok")

    app.router.add_get("/control/stats", stats)
    app.router.add_post("/control/profile", profile)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


class _FloorClient(asyncio.Protocol):
    """A WebSocket connection of the floor node: the upgrade, subscribe frames, pongs."""

    def __init__(self, floor: _Floor) -> None:
        self.floor = floor
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        import hashlib

        assert self.transport is not None
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            key = next(line.split(b":", 1)[1].strip() for line in self.head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                                 b"\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                                 + accept + b"\r\n\r\n")
            data, self.head = self.head[end + 4:], None
        buffer = self.buffer + data
        while len(buffer) >= 6:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                length, start = struct.unpack("!H", buffer[2:4])[0], 4
            mask = buffer[start:start + 4]
            if len(buffer) < start + 4 + length:
                break
            payload = bytes(b ^ mask[i % 4] for i, b in
                            enumerate(buffer[start + 4:start + 4 + length]))
            buffer = buffer[start + 4 + length:]
            frame = json.loads(payload)
            if frame.get("type") == "subscribe":
                self.floor.subscribe(frame["channel"], self.transport)
                self.transport.write(_ws_frame(json.dumps(
                    {"type": "subscribed", "id": frame["id"], "channel": frame["channel"],
                     "recovered": True}, separators=(",", ":")).encode()))
        self.buffer = buffer


class _Floor(asyncio.Protocol):
    """The floor node's Redis pub/sub connection: each message becomes one WebSocket
    frame written at once to the channel's one subscriber."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.subscribers: dict[bytes, tuple[bytes, asyncio.Transport]] = {}
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def subscribe(self, channel: str, client: asyncio.Transport) -> None:
        name = f"rtlink:{{{channel}}}:pub".encode()
        self.subscribers[name] = (channel.encode(), client)
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.send_subscribes)
        self.pending.append(name)

    def send_subscribes(self) -> None:
        names, self.pending = self.pending, []
        assert self.transport is not None
        self.transport.write(b"*%d\r\n$9\r\nSUBSCRIBE\r\n" % (len(names) + 1) + b"".join(
            b"$%d\r\n%s\r\n" % (len(name), name) for name in names))

    def data_received(self, data: bytes) -> None:
        import msgpack

        buffer = self.buffer + data if self.buffer else data
        position = 0
        while True:
            # *3 (RESP2) or >3 (RESP3): kind, channel, data or count.
            try:
                line = buffer.index(b"\r\n", position)
                fields: list[bytes] = []
                cursor = line + 2
                for _ in range(3):
                    end = buffer.index(b"\r\n", cursor)
                    if buffer[cursor:cursor + 1] == b":":
                        fields.append(b"")
                        cursor = end + 2
                        continue
                    length = int(buffer[cursor + 1:end])
                    if len(buffer) < end + 4 + length:
                        raise ValueError
                    fields.append(buffer[end + 2:end + 2 + length])
                    cursor = end + 4 + length
            except ValueError:
                break
            position = cursor
            if fields[0] != b"message":
                continue
            channel, client = self.subscribers[fields[1]]
            epoch, offset, raw = fields[2].split(b" ", 2)
            data = json.dumps(msgpack.unpackb(raw), separators=(",", ":")).encode()
            client.write(_ws_frame(
                b'{"type":"publication","channel":"%s","data":%s,"position":{"epoch":"%s",'
                b'"offset":%s}}' % (channel, data, epoch, offset)))
        self.buffer = buffer[position:]


def _ws_frame(payload: bytes) -> bytes:
    length = len(payload)
    head = (struct.pack("!BB", 0x81, length) if length < 126
            else struct.pack("!BBH", 0x81, 126, length))
    return head + payload


async def _serve_floor(args: argparse.Namespace) -> None:
    """The floor: what any server fed by Redis pub/sub must do per delivery, and nothing
    else (no history, no positions, no batching, no error handling)."""
    loop = asyncio.get_running_loop()
    host, port = args.redis.split("//", 1)[1].split("/", 1)[0].split(":")
    _, floor = await loop.create_connection(_Floor, host, int(port))
    await loop.create_server(lambda: _FloorClient(floor), "127.0.0.1", args.port,
                             backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()


# --------------------------------------------------------------------------------------
# The readers
# --------------------------------------------------------------------------------------


class _Counters:
    """What the readers of one process saw since the last reset."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted  # subscriptions to confirm
        self.subscribed = 0
        self.errors: collections.Counter[int] = collections.Counter()
        self.closes: collections.Counter[int] = collections.Counter()
        self.received = 0
        self.per_channel: collections.Counter[str] = collections.Counter()
        self.all_subscribed_at: float | None = None

    def reset(self) -> None:
        self.received = 0
        self.per_channel.clear()
        self.closes.clear()
        self.errors.clear()


class _StormReader(asyncio.Protocol):
    """One WebSocket connection subscribing ``channels`` (with ``since`` when given)."""

    def __init__(self, counters: _Counters, port: int,
                 channels: list[tuple[str, dict[str, Any] | None]]) -> None:
        self.counters = counters
        self.port = port
        self.channels = channels
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""
        self.buffer = b""
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(f"GET /rt/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        f"Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def send(self, frame: dict[str, Any]) -> None:
        payload = json.dumps(frame, separators=(",", ":")).encode()
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x81, 0x80 | length)
        else:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(head + b"\0\0\0\0" + payload)  # zero mask

    def subscribe(self, index: int) -> None:
        channel, since = self.channels[index]
        frame: dict[str, Any] = {"type": "subscribe", "id": index + 1, "channel": channel}
        if since is not None:
            frame["since"] = since
        self.send(frame)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.counters.errors[int(self.head[9:12] or 0)] += 1
                if not self.open.done():
                    self.open.set_exception(ConnectionError(self.head[:100].decode()))
                return
            data, self.head = self.head[end + 4:], None
            if not self.open.done():
                self.open.set_result(None)
            for index in range(len(self.channels)):
                self.subscribe(index)
        buffer = self.buffer + data if self.buffer else data
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, start = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, start = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < start + length:
                break
            self.message(buffer[start:start + length])
            buffer = buffer[start + length:]
        self.buffer = buffer

    def message(self, payload: bytes) -> None:
        counters = self.counters
        for line in payload.split(b"\n"):
            if line.startswith(b'{"type":"publication"'):
                counters.received += 1
                channel = line[33:line.index(b'"', 33)].decode()
                counters.per_channel[channel] += 1
            elif line.startswith(b'{"type":"ping"'):
                self.send({"type": "pong"})
            elif line.startswith(b'{"type":"subscribed"'):
                counters.subscribed += 1
                if counters.subscribed == counters.wanted:
                    counters.all_subscribed_at = time.time()
            elif line.startswith(b'{"type":"error"'):
                frame = json.loads(line)
                counters.errors[frame["code"]] += 1
                if frame["code"] == 503:  # back off, then try again (as clients do)
                    index = frame["id"] - 1
                    asyncio.get_running_loop().call_later(
                        0.5 + random.random() * 0.5, self.subscribe, index)
            elif line.startswith(b'{"type":"close"'):
                counters.closes[json.loads(line)["code"]] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError(f"closed: {exc}"))


async def _run_readers(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    plan: list[list[tuple[str, dict[str, Any] | None]]] = json.loads(
        Path(args.plan).read_text())
    counters = _Counters(sum(len(channels) for channels in plan))
    out = sys.stdout

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    slots = asyncio.Semaphore(args.concurrency)
    failures: list[str] = []

    async def open_one(channels: list[tuple[str, dict[str, Any] | None]]) -> None:
        async with slots:
            for attempt in range(10):
                try:
                    _, reader = await loop.create_connection(
                        lambda: _StormReader(counters, args.port, channels),
                        "127.0.0.1", args.port)
                    await asyncio.wait_for(reader.open, 60)
                    return
                except (OSError, TimeoutError) as exc:
                    if attempt == 9:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.2 + random.random() * 0.3)

    emit({"event": "started", "at": time.time()})
    opening = asyncio.gather(*(open_one(channels) for channels in plan))
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while line := await commands.readline():
        command = line.decode().strip()
        if command == "reset":
            counters.reset()
        elif command == "report":
            emit({"event": "report", "subscribed": counters.subscribed,
                  "wanted": counters.wanted, "all_at": counters.all_subscribed_at,
                  "received": counters.received, "errors": dict(counters.errors),
                  "closes": dict(counters.closes), "failures": failures[:3],
                  "per_channel": dict(counters.per_channel)})
    opening.cancel()


# --------------------------------------------------------------------------------------
# The parent: processes and cases
# --------------------------------------------------------------------------------------


def _child(mode: str, *args: str, cpu: int | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")

    def prepare() -> None:
        raise_nofile()
        if cpu is not None:
            pin(cpu)

    return subprocess.Popen([sys.executable, "-m", "bench.scenarios.storm", mode, *args],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, preexec_fn=prepare)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _redis_server(off_the_node: bool = False) -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="rtlink-storm-") as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory, "--maxclients", "20000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Per-user: off the node's core, with the readers and the publisher. In the
            # storms the readers' handshakes fill that core: Redis goes where it can.
            preexec_fn=(lambda: pin(CLIENT_CPU)) if off_the_node else None)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), 0.2) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process)


@contextlib.contextmanager
def _node(redis_url: str, max_subscriptions: int, mode: str = "node"
          ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    process = _child(mode, "--port", str(port), "--redis", redis_url,
                     "--max-subscriptions", str(max_subscriptions), cpu=SERVER_CPU)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the node did not start: {line!r}")
        yield process, port
    finally:
        _stop(process)


def _node_stats(port: int) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/control/stats", timeout=30) as r:
        return dict(json.loads(r.read()))


class _Readers:
    """Reader processes for a plan: one list of (channel, since) per connection."""

    def __init__(self, port: int, plan: list[list[tuple[str, dict[str, Any] | None]]],
                 concurrency: int = 1_000) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="rtlink-storm-")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.lines: list[collections.deque[dict[str, Any]]] = []
        self.conditions: list[threading.Condition] = []
        parts = max(1, -(-len(plan) // _PER_PROCESS))
        per_process = max(1, concurrency // parts)
        for index in range(parts):
            path = Path(self.directory.name) / f"plan{index}.json"
            path.write_text(json.dumps(plan[index::parts]))
            process = _child("readers", "--port", str(port), "--plan", str(path),
                             "--concurrency", str(per_process), cpu=CLIENT_CPU)
            self.processes.append(process)
            queue: collections.deque[dict[str, Any]] = collections.deque()
            condition = threading.Condition()
            self.lines.append(queue)
            self.conditions.append(condition)
            threading.Thread(target=self._listen, args=(process, queue, condition),
                             daemon=True).start()
        self.started = min(self._next(i, "started")["at"] for i in range(parts))

    @staticmethod
    def _listen(process: subprocess.Popen[bytes], queue: collections.deque[dict[str, Any]],
                condition: threading.Condition) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with condition:
                queue.append(json.loads(line))
                condition.notify_all()

    def _next(self, index: int, event: str, timeout: float = 60) -> dict[str, Any]:
        queue, condition = self.lines[index], self.conditions[index]
        with condition:
            if not condition.wait_for(lambda: any(e["event"] == event for e in queue),
                                      timeout):
                raise RuntimeError(f"readers: no {event} within {timeout} s")
            while True:
                item = queue.popleft()
                if item["event"] == event:
                    return item

    def _command(self, command: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command.encode() + b"\n")
            process.stdin.flush()

    def reset(self) -> None:
        self._command("reset")

    def report(self) -> dict[str, Any]:
        self._command("report")
        reports = [self._next(i, "report") for i in range(len(self.processes))]
        total: dict[str, Any] = {
            "subscribed": sum(r["subscribed"] for r in reports),
            "wanted": sum(r["wanted"] for r in reports),
            "received": sum(r["received"] for r in reports),
            "all_at": (max(r["all_at"] for r in reports)
                       if all(r["all_at"] for r in reports) else None),
            "failures": [f for r in reports for f in r["failures"]],
        }
        for name in ("errors", "closes", "per_channel"):
            counter: collections.Counter[str] = collections.Counter()
            for report in reports:
                counter.update(report[name])
            total[name] = dict(counter)
        return total

    def wait(self, done: Any, timeout: float, every: float = 0.05) -> dict[str, Any]:
        """Report until ``done(report)`` or the timeout; returns the last report."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.report()
            if done(report) or time.monotonic() > deadline:
                return report
            time.sleep(every)

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            _stop(process)
        self.directory.cleanup()


def _one_channel_each(count: int, since: dict[str, dict[str, Any]] | None = None
                      ) -> list[list[tuple[str, dict[str, Any] | None]]]:
    return [[(f"u:{i}", since[f"u:{i}"] if since else None)] for i in range(count)]


async def _publisher(redis_url: str) -> Any:
    from rtlink.backends.redis import RedisBackend

    backend = RedisBackend(redis_url, max_connections=64)
    await backend.start(lambda publication: None, lambda channel: None)
    return backend


async def _publish(backend: Any, channels: list[str], concurrency: int = 64) -> list[Any]:
    from rtlink.backends import HistoryPolicy

    policy = HistoryPolicy()
    slots = asyncio.Semaphore(concurrency)
    pad = "x" * 60

    async def one(index: int, channel: str) -> Any:
        async with slots:
            return (await backend.publish(channel, {"n": index, "pad": pad}, key=None,
                                          policy=policy)).position

    return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(channels))))


def _profile(port: int, seconds: float) -> threading.Thread | None:
    """With STORM_PROFILE=PATH, the node runs cProfile over the window and writes its
    stats there (a developer's aid; profiling slows the node, so not for figures)."""
    path = os.environ.get("STORM_PROFILE")
    if not path:
        return None
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/control/profile?seconds={seconds}&path={path}",
        data=b"", method="POST")
    thread = threading.Thread(target=lambda: urllib.request.urlopen(request, timeout=600))
    thread.start()
    return thread


async def _per_user(quick: bool) -> list[Row]:
    # This process publishes: off the node's core for the measurement, as Redis and the
    # readers are, so that the node's figures are its own work and not the cache and
    # scheduler cost of sharing a core with them.
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pin(CLIENT_CPU)
    try:
        rows = []
        for system in ("rtlink", "floor"):
            rows += await _per_user_of(system, quick)
        return rows
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)


async def _per_user_of(system: str, quick: bool) -> list[Row]:
    """Both per-user shapes on one node (rtlink, or the floor): a steady rate, then one
    publication per channel back to back."""
    channels = 1_000 if quick else 5_000
    rate, seconds = 500, (4 if quick else 10)
    names = [f"u:{i}" for i in range(channels)]
    rows = []
    with _redis_server(off_the_node=True) as url, _node(
            url, 16, "node" if system == "rtlink" else "floor") as (node, port):
        readers = _Readers(port, _one_channel_each(channels))
        backend = await _publisher(url)
        loop = asyncio.get_running_loop()
        try:
            ready = await loop.run_in_executor(
                None, readers.wait, lambda r: r["subscribed"] >= r["wanted"], 120, 0.5)
            if ready["subscribed"] < ready["wanted"]:
                raise RuntimeError(f"{system}: only {ready['subscribed']} of {channels} "
                                   f"subscribed")
            await _publish(backend, names)  # warm-up round
            await loop.run_in_executor(None, readers.wait,
                                       lambda r: r["received"] >= channels, 60)
            for shape in ("steady", "back to back"):
                readers.reset()
                await asyncio.sleep(1)
                total = rate * seconds if shape == "steady" else channels
                profile = _profile(port, seconds) if system == "rtlink" else None
                cpu_before = cpu_seconds(node.pid)
                split_before = cpu_split(node.pid)
                if shape == "steady":
                    started = time.monotonic()
                    for index in range(total):
                        await _publish(backend, [names[index % channels]])
                        await asyncio.sleep(max(0.0, started + (index + 1) / rate
                                                - time.monotonic()))
                else:
                    await _publish(backend, names)
                report = await loop.run_in_executor(
                    None, readers.wait, lambda r, total=total: r["received"] >= total, 60)
                cpu = cpu_seconds(node.pid) - cpu_before
                user, kernel = (after - before for after, before
                                in zip(cpu_split(node.pid), split_before, strict=True))
                if profile is not None:
                    profile.join()
                received = report["received"]
                what = (f"{rate}/s for {seconds} s, round robin" if shape == "steady"
                        else "one each, 64 publishes in flight")
                rows.append(Row(
                    SCENARIO, "rtlink" if system == "rtlink" else "asyncio floor", "redis",
                    f"per-user {channels:,} × 1, {shape}: node CPU per delivery",
                    round(cpu / max(received, 1) * 1e6, 1), "µs",
                    f"{what}; {received:,} of {total:,} delivered; node CPU {cpu:.2f} s "
                    f"(user {user:.2f}, system {kernel:.2f})"))
        finally:
            await backend.close()
            readers.close()
    return rows


async def _burst(quick: bool, with_since: bool) -> Row:
    clients = 2_000 if quick else 10_000
    with _redis_server() as url, _node(url, 16) as (node, port):
        since = None
        if with_since:
            backend = await _publisher(url)
            try:
                positions = await _publish(backend, [f"u:{i}" for i in range(clients)])
            finally:
                await backend.close()
            since = {f"u:{i}": {"epoch": p.epoch, "offset": p.offset - 1}
                     for i, p in enumerate(positions)}
        readers = _Readers(port, _one_channel_each(clients, since))
        try:
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(
                None, readers.wait,
                lambda r: r["subscribed"] >= r["wanted"]
                and (not with_since or r["received"] >= clients), 120, 0.2)
            stats = _node_stats(port)
        finally:
            readers.close()
    took = (report["all_at"] - readers.started) if report["all_at"] else float("nan")
    errors = sum(report["errors"].values())
    case = "with since" if with_since else "fresh"
    notes = (f"{report['subscribed']:,} of {clients:,} subscribed"
             + (f", {report['received']:,} recovered publications" if with_since else "")
             + f"; error frames {report['errors'] or 0}; node log lines "
             f"{stats['log_lines']}"
             + (f" (first: {stats['first_lines'][0]!r})" if stats["first_lines"] else "")
             + (f"; connect failures {report['failures']}" if report["failures"] else ""))
    return Row(SCENARIO, "rtlink", "redis",
               f"burst: {clients:,} clients connect, {case}: s until all subscribed",
               round(took, 2), "s", notes + f"; {errors} errors")


async def _reconnect(live: int) -> Row:
    connections = live // _RECONNECT_FANIN
    plan: list[list[tuple[str, dict[str, Any] | None]]] = [
        [(f"u:{c * _RECONNECT_FANIN + i}", None) for i in range(_RECONNECT_FANIN)]
        for c in range(connections)]
    import redis.asyncio as aioredis

    with _redis_server() as url, _node(url, _RECONNECT_FANIN) as (node, port):
        readers = _Readers(port, plan, concurrency=200)
        backend = await _publisher(url)
        raw = aioredis.Redis.from_url(url)
        loop = asyncio.get_running_loop()
        try:
            ready = await loop.run_in_executor(
                None, readers.wait, lambda r: r["subscribed"] >= r["wanted"], 600, 1.0)
            subscribed_in = (ready["all_at"] or time.time()) - readers.started
            if ready["subscribed"] < live:
                raise RuntimeError(f"only {ready['subscribed']} of {live} subscribed")
            await asyncio.sleep(1)
            readers.reset()
            before = _node_stats(port)["log_lines"]
            rng = random.Random(live)
            gap = [f"u:{i}" for i in rng.sample(range(live), _GAP)]
            node.send_signal(signal.SIGSTOP)
            try:
                killed = await raw.client_kill_filter(_type="pubsub")
                await _publish(backend, gap)
            finally:
                node.send_signal(signal.SIGCONT)
            continued = time.monotonic()
            report = await loop.run_in_executor(
                None, readers.wait, lambda r: r["received"] >= _GAP, 300, 0.1)
            took = time.monotonic() - continued
            stats = _node_stats(port)
        finally:
            await raw.aclose()
            await backend.close()
            readers.close()
    delivered = sum(min(1, report["per_channel"].get(c, 0)) for c in gap)
    caught_up = delivered == _GAP
    return Row(SCENARIO, "rtlink", "redis",
               f"reconnect: {live:,} live channels: s until every gap publication delivered",
               round(took, 2) if caught_up else float("nan"), "s",
               f"{delivered:,} of {_GAP:,} gap publications delivered"
               f"{'' if caught_up else ' within 300 s'}; pub/sub connections killed "
               f"{killed}; node log lines during catch-up {stats['log_lines'] - before}, "
               f"the last: {stats['last_line']!r}; "
               f"connections closed {report['closes'] or 0}; subscribing the {live:,} "
               f"channels took {subscribed_in:.1f} s")


async def _memory(quick: bool) -> list[Row]:
    """Redis memory per channel with a short history: ``MEMORY USAGE`` of each key of a
    channel (summed over its keys: meta and history), and the growth of ``used_memory``
    divided by the channels."""
    import redis.asyncio as aioredis

    channels = 2_000 if quick else 10_000
    rows = []
    for per_channel in (1, 10):
        with _redis_server() as url:
            raw = aioredis.Redis.from_url(url)
            backend = await _publisher(url)
            try:
                before = (await raw.info("memory"))["used_memory"]
                names = [f"u:{i}" for i in range(channels)]
                for _ in range(per_channel):
                    await _publish(backend, names)
                used = (await raw.info("memory"))["used_memory"] - before
                usage = []
                for name in names[:200]:
                    keys = [key async for key in raw.scan_iter(match=f"rtlink:{{{name}}}:*")]
                    usage.append(sum([await raw.memory_usage(key, samples=0) or 0
                                      for key in keys]))
                kinds = sorted({(await raw.type(key)).decode() for key in
                                [key async for key in raw.scan_iter(match="rtlink:{u:0}:*")]})
            finally:
                await backend.close()
                await raw.aclose()
        rows.append(Row(SCENARIO, "rtlink", "redis",
                        f"Redis memory per channel, {per_channel} publication"
                        f"{'s' if per_channel > 1 else ''} of ~80 B kept",
                        round(sum(usage) / len(usage)), "B",
                        f"MEMORY USAGE summed over a channel's keys ({', '.join(kinds)}), "
                        f"mean of 200 channels; used_memory grew "
                        f"{used / channels:,.0f} B per channel over {channels:,}"))
    return rows


async def run(quick: bool) -> list[Row]:
    """The three cases (see the module docstring)."""
    if not (shutil.which("redis-server") or os.access("/usr/bin/redis-server", os.X_OK)):
        return [Row(SCENARIO, "rtlink", "redis", "storms", float("nan"), "",
                    "not measured: redis-server is not installed")]
    only = os.environ.get("STORM_CASES", "per-user,burst,reconnect,memory").split(",")
    rows: list[Row] = []
    if "per-user" in only:
        rows += await _per_user(quick)
    if "burst" in only:
        rows.append(await _burst(quick, with_since=False))
        rows.append(await _burst(quick, with_since=True))
    if "memory" in only:
        rows += await _memory(quick)
    if "reconnect" in only:
        sizes = [20_000] if quick else [20_000, 50_000, 100_000]
        if os.environ.get("STORM_LIVE"):
            sizes = [int(size) for size in os.environ["STORM_LIVE"].split(",")]
        for live in sizes:
            rows.append(await _reconnect(live))
    return rows


def main(argv: list[str] | None = None) -> None:
    """``node`` and ``readers``: the child processes of the cases; ``run``: the cases."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    for mode in ("node", "floor"):
        node = commands.add_parser(mode)
        node.add_argument("--port", type=int, required=True)
        node.add_argument("--redis", required=True)
        node.add_argument("--max-subscriptions", type=int, default=16)
    readers = commands.add_parser("readers")
    readers.add_argument("--port", type=int, required=True)
    readers.add_argument("--plan", required=True)
    readers.add_argument("--concurrency", type=int, default=1_000)
    cases = commands.add_parser("run")
    cases.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    raise_nofile()
    if args.mode == "node":
        asyncio.run(_serve_node(args))
    elif args.mode == "floor":
        asyncio.run(_serve_floor(args))
    elif args.mode == "readers":
        asyncio.run(_run_readers(args))
    else:
        for row in asyncio.run(run(args.quick)):
            print(f"{row.metric}: {row.value} {row.unit} ({row.notes})", flush=True)


if __name__ == "__main__":
    main()

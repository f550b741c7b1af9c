"""Cheap raw protocol readers: the load clients of every scenario, alike for every system.

A :class:`ClientGroup` runs ``connections`` reader connections spread over a few
subprocesses (``python -m bench.clients ...``) pinned to :data:`~bench.common.CLIENT_CPU`.
The readers are hand-written ``asyncio`` protocols over plain sockets (no aiohttp
client): the per-message client cost is a WebSocket frame header parse (or a line
split for SSE, a ``Content-Length`` body for long polling) and a count of the bytes
``"pad"`` — which every server's framing carries exactly once per publication (see
:mod:`bench.servers`). What differs per system is only what the protocol demands:

=================  =====================================================================
system             what the reader speaks
=================  =====================================================================
rtlink             ``/rt/ws`` + a ``subscribe`` frame; ``/rt/sse?subs={"bench":null}``;
                   ``/rt/poll`` with ``connect=1`` then the position of the last frame
                   (``subs`` cursor), one keep-alive connection per poller; answers
                   ``ping`` with ``pong`` on WebSocket
socketio, nodesio  Engine.IO v4: ``/socket.io/?EIO=4&transport=websocket`` then ``40``,
                   or polling (python-socketio): handshake GET, ``40`` by POST, then
                   GETs on a keep-alive connection (POSTs of ``3`` answering pings on a
                   second one); events are ``42[...]``; answers ``2`` with ``3``
naive, floor,      ``/ws`` or ``/sse``; nothing to send
nodews
=================  =====================================================================

Every connection subscribes to "bench", or with ``per_user`` connection *i* of the
group to its own channel ``user:<i>`` (rtlink: in its ``subscribe`` frame or ``subs``
cursor; the others: ``channel=user:<i>`` in the query of the URL). A connection is
*ready* once the server confirmed its subscription (rtlink ``subscribed``; the naive,
floor and Node ws servers send ``{"type":"subscribed"}``; socket.io's ``40`` reply to
the namespace connect, sent after the room was joined).

The parent talks to each subprocess by lines: it writes ``reset`` (zero the counters,
forget the burst), ``report`` (answer the counters) or closes stdin (exit); the child
writes JSON lines: ``{"event":"ready"}``, ``{"event":"end"}`` once every one of its
connections has seen the ``"end"`` marker since the last reset, ``{"event":"report",
"received":R,"ended":E,"latencies":[...],"zero":Z}`` and ``{"event":"error",
"message":...}``.

With ``latency=True`` each reader records, for every publication, the time it was
received (``time.time()`` when the read returned) minus its ``"t"`` (the server's wall
clock at publication, same machine) in seconds; ``zero`` is the smallest of these for
publication ``"n":0`` since the last reset: the first receipt of the first publication.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import queue
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

from bench.common import CLIENT_CPU, ROOT, pin, raise_nofile

__all__ = ["ClientGroup", "Report", "PATHS", "ENGINEIO", "channel_path"]

MARKER = b'"pad"'
END = b'"end"'
#: The index and send stamp of a publication; "t" is always followed by more keys, so a
#: number cut short at the end of a read does not match.
_STAMP = re.compile(rb'"n":\s*(\d+),\s*"t":\s*([0-9.eE+-]+)[,}]')
_TASKS: set[asyncio.Future[None]] = set()
_POSITION = re.compile(rb'"epoch":"([^"]+)","offset":(\d+)')
#: Endpoint of each (system, transport).
PATHS = {
    ("rtlink", "ws"): "/rt/ws",
    ("rtlink", "sse"): "/rt/sse?subs=" + urllib.parse.quote('{"bench":null}', safe=""),
    ("rtlink", "poll"): "/rt/poll",
    ("socketio", "ws"): "/socket.io/?EIO=4&transport=websocket",
    ("socketio", "poll"): "/socket.io/?EIO=4&transport=polling",
    ("naive", "ws"): "/ws",
    ("naive", "sse"): "/sse",
    ("floor", "ws"): "/ws",
    ("floor", "sse"): "/sse",
    ("nodews", "ws"): "/ws",
    ("nodesio", "ws"): "/socket.io/?EIO=4&transport=websocket",
}
#: The systems that speak Engine.IO v4 / Socket.IO v5.
ENGINEIO = frozenset({"socketio", "nodesio"})


def channel_path(system: str, transport: str, channel: str) -> str:
    """The endpoint of a (system, transport) for a subscriber of ``channel``.

    rtlink names the channel in its ``subscribe`` frame (WebSocket) or in the ``subs``
    cursor (SSE; long polling builds its cursor per poll); the other servers take it
    from the query parameter ``channel``.
    """
    path = PATHS[(system, transport)]
    if system == "rtlink":
        if transport == "sse":
            return "/rt/sse?subs=" + urllib.parse.quote(json.dumps({channel: None}), safe="")
        return path
    if channel == "bench":
        return path
    return path + ("&" if "?" in path else "?") + "channel=" + urllib.parse.quote(channel)


# --------------------------------------------------------------------------------------
# The child side: readers
# --------------------------------------------------------------------------------------

class Counters:
    """What the readers of one process have seen since the last reset."""

    def __init__(self, latency: bool) -> None:
        self.latency = latency
        self.received = 0
        self.ended = 0
        self.latencies: list[float] = []
        self.zero = float("inf")
        self.on_end: Callable[[], None] = lambda: None
        self.connections = 0

    def reset(self) -> None:
        self.received = 0
        self.ended = 0
        self.latencies = []
        self.zero = float("inf")

    def stamps(self, data: bytes, start: int = 0) -> None:
        """Record the latency of every publication whose stamp ends past ``start``."""
        now = time.time()
        latencies = self.latencies
        for match in _STAMP.finditer(data):
            if match.end() > start:
                latency = now - float(match.group(2))
                latencies.append(latency)
                if match.group(1) == b"0" and latency < self.zero:
                    self.zero = latency

    def end(self) -> None:
        self.ended += 1
        if self.ended == self.connections:
            self.on_end()


def _mask(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (the mask is zero: XOR leaves the payload as it is)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    return head + b"\0\0\0\0" + payload


#: Bytes of a stream kept from one read to the next, so that a pattern cut in two by
#: the reads is still found (every pattern looked for is shorter).
_OVERLAP = 64


class Reader(asyncio.Protocol):
    """Base of the readers: the socket, readiness, and the pattern scan of a stream.

    Streams (WebSocket after the upgrade, SSE) are not parsed into messages: each read
    is scanned for the byte patterns that matter (``"pad"``, ``"end"``, pings, the
    subscription confirmation). ``window`` is the last bytes of the previous read
    followed by this read; a pattern is new when it occurs more often in the window
    than in those kept bytes alone. That keeps the client's cost per message far below
    the server's, whatever the system.
    """

    #: (pattern, method name) pairs looked for in the stream, besides the markers.
    patterns: tuple[tuple[bytes, str], ...] = ()

    def __init__(self, counters: Counters, path: str, channel: str) -> None:
        self.counters = counters
        self.path = path
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_ready = False
        self.ended = False
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.start()

    def start(self) -> None:
        raise NotImplementedError

    def get(self, target: str, extra: str = "") -> None:
        assert self.transport is not None
        self.transport.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
                             .encode())

    def set_ready(self) -> None:
        if not self.is_ready:
            self.is_ready = True
            self.ready.set_result(None)

    def scan(self, data: bytes) -> None:
        """Scan the next bytes of a stream (see the class docstring)."""
        tail = self.tail
        window = tail + data if tail else data
        self.tail = window[-_OVERLAP:]
        counters = self.counters
        found = window.count(MARKER) - tail.count(MARKER)
        if found:
            counters.received += found
            if counters.latency:
                counters.stamps(window, len(tail))
            if not self.ended and window.count(END) > tail.count(END):
                self.ended = True
                counters.end()
        for pattern, action in self.patterns:
            if window.count(pattern) > tail.count(pattern):
                getattr(self, action)()

    def body(self, data: bytes) -> None:
        """Count the publications of one complete poll answer."""
        counters = self.counters
        found = data.count(MARKER)
        if found:
            counters.received += found
            if counters.latency:
                counters.stamps(data)
            if not self.ended and END in data:
                self.ended = True
                counters.end()

    def fail(self, reason: str) -> None:
        """Give up on this connection before it was ready (the group reports it)."""
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))
        elif self.is_ready:
            print(json.dumps({"event": "error", "message": f"connection lost: {exc}"}),
                  flush=True)


class WsReader(Reader):
    """WebSocket: the upgrade, then the stream of frames scanned for patterns."""

    def __init__(self, counters: Counters, path: str, channel: str, system: str) -> None:
        super().__init__(counters, path, channel)
        self.system = system
        self.head = b""
        if system == "rtlink":
            self.patterns = ((b'"subscribed"', "set_ready"), (b'{"type":"ping"}', "pong"))
        elif system in ENGINEIO:
            # Engine.IO open packet (0{"sid":...,"pingInterval":...}); the namespace
            # connect answer (40{"sid":...}); a ping: a one-byte text frame "2".
            self.patterns = ((b'"pingInterval"', "join"), (b'40{"sid"', "set_ready"),
                             (b"\x81\x012", "pong"))
        else:
            self.patterns = ((b'"subscribed"', "set_ready"),)

    def start(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.get(self.path, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_mask(payload))

    def join(self) -> None:
        self.send(b"40")

    def pong(self) -> None:
        self.send(b"3" if self.system in ENGINEIO else b'{"type":"pong"}')

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                return self.fail(self.head[:200].decode(errors="replace"))
            data = self.head[end + 4:]
            self.head = None  # type: ignore[assignment]
            if self.system == "rtlink":
                self.send(json.dumps({"type": "subscribe", "id": 1, "channel": self.channel},
                                     separators=(",", ":")).encode())
        self.scan(data)


class SseReader(Reader):
    """SSE: one streamed response, scanned for patterns like a WebSocket stream."""

    patterns = ((b'"subscribed"', "set_ready"),)

    def start(self) -> None:
        self.get(self.path, "Accept: text/event-stream\r\n")

    def data_received(self, data: bytes) -> None:
        self.scan(data)


class HttpReader(Reader):
    """Long polling: requests on one keep-alive connection, ``Content-Length`` bodies."""

    def __init__(self, counters: Counters, path: str, channel: str, system: str,
                 port: int) -> None:
        super().__init__(counters, path, channel)
        self.system = system
        self.port = port
        self.body_length = -1
        self.cursor: str | None = None  # rtlink: the subs cursor of the next poll
        self.sid = ""  # socket.io: the Engine.IO session
        self.buffer = bytearray()

    def start(self) -> None:
        if self.system == "rtlink":
            self.poll(connect=True)
        else:
            self.get(self.path)

    def poll(self, connect: bool = False) -> None:
        if self.system == "rtlink":
            subs = urllib.parse.quote(self.cursor or json.dumps({self.channel: None}), safe="")
            self.get(f"{self.path}?subs={subs}" + ("&connect=1" if connect else ""))
        else:
            self.get(f"{self.path}&sid={self.sid}")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            if self.body_length < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end]).lower()
                if not head.startswith(b"http/1.1 200"):
                    return self.fail(head[:200].decode(errors="replace"))
                match = re.search(rb"content-length:\s*(\d+)", head)
                if match is None:
                    return self.fail("poll answer without Content-Length")
                self.body_length = int(match.group(1))
                del buffer[:end + 4]
            if len(buffer) < self.body_length:
                return
            body = bytes(buffer[:self.body_length])
            del buffer[:self.body_length]
            self.body_length = -1
            self.answer(body)

    def answer(self, body: bytes) -> None:
        self.body(body)
        if self.system == "rtlink":
            positions = _POSITION.findall(body)
            if positions:
                epoch, offset = positions[-1]
                self.cursor = json.dumps({self.channel: {"epoch": epoch.decode(),
                                                         "offset": int(offset)}})
            self.set_ready()
            self.poll()
            return
        for packet in body.split(b"\x1e"):
            if packet.startswith(b"0{"):
                self.sid = json.loads(packet[1:])["sid"]
                self.spawn(self.post(b"40"))
            elif packet == b"2":
                self.spawn(self.post(b"3"))
            elif packet.startswith(b"40"):
                self.set_ready()
        self.poll()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in a task kept referenced until it ends (the loop does not)."""
        task = asyncio.ensure_future(coroutine)
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    async def post(self, body: bytes) -> None:
        """One POST of Engine.IO packets on a connection of its own."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"POST {self.path}&sid={self.sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await reader.read()
        finally:
            writer.close()


async def child(args: argparse.Namespace) -> None:
    """Open the connections, report ready, then obey the parent's commands."""
    loop = asyncio.get_running_loop()
    counters = Counters(args.latency)
    counters.connections = args.connections
    out = sys.stdout

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    counters.on_end = lambda: emit({"event": "end"})

    def make(index: int) -> Reader:
        channel = f"user:{args.first + index}" if args.per_user else "bench"
        path = channel_path(args.system, args.transport, channel)
        if args.transport == "ws":
            return WsReader(counters, path, channel, args.system)
        if args.transport == "sse":
            return SseReader(counters, path, channel)
        return HttpReader(counters, path, channel, args.system, args.port)

    readers: list[Reader] = []
    slots = asyncio.Semaphore(args.concurrency)

    async def open_one(index: int) -> None:
        async with slots:
            for attempt in range(5):
                try:
                    _, reader = await loop.create_connection(lambda: make(index),
                                                             "127.0.0.1", args.port)
                    break
                except OSError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5)
            readers.append(reader)
            await asyncio.wait_for(reader.ready, 60)

    try:
        await asyncio.gather(*(open_one(index) for index in range(args.connections)))
    except Exception as error:  # reported to the parent, which stops the run
        emit({"event": "error", "message": f"{type(error).__name__}: {error}"})
        return
    emit({"event": "ready"})
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while line := await commands.readline():
        command = line.decode().strip()
        if command == "reset":
            counters.reset()
            for reader in readers:
                reader.ended = False
            emit({"event": "reset"})
        elif command == "report":
            zero = counters.zero if counters.zero != float("inf") else None
            emit({"event": "report", "received": counters.received, "ended": counters.ended,
                  "latencies": counters.latencies, "zero": zero})


def child_main() -> None:
    parser = argparse.ArgumentParser(description="bench load client (one process)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--system", required=True)
    parser.add_argument("--transport", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--per-user", action="store_true",
                        help="connection i subscribes to user:<first + i>")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=CLIENT_CPU)
    args = parser.parse_args()
    pin(args.cpu)
    raise_nofile()
    asyncio.run(child(args))
    os._exit(0)  # no orderly close of thousands of sockets: the kernel does it


# --------------------------------------------------------------------------------------
# The parent side
# --------------------------------------------------------------------------------------

class Report:
    """The summed counters of a group: publications received, connections at the end,
    latencies, and the first receipt of publication 0 (None if none was timed)."""

    def __init__(self, received: int, ended: int, latencies: list[float],
                 zero: float | None = None) -> None:
        self.received = received
        self.ended = ended
        self.latencies = latencies
        self.zero = zero


class ClientGroup:
    """``connections`` readers of one system and transport, in subprocesses.

    Use as a context manager; the constructor starts the processes and returns once
    every connection is ready (subscribed). Then, per burst: :meth:`reset`, trigger the
    burst on the server, :meth:`wait_end` (every connection saw the last publication),
    :meth:`report` (counts and latencies). :meth:`add` opens more connections, so one
    server can be measured at growing subscriber counts.

    Args:
        system: a system of :data:`bench.common.SYSTEMS`.
        transport: "ws", "sse" or "poll".
        port: the server's port on 127.0.0.1.
        connections: how many connections in all.
        processes: how many subprocesses (default: one per 1,250 connections, 2 to 4).
        latency: record publish-to-receive times.
        cpu: the core the clients run on (None: not pinned).
        timeout: seconds allowed for every connection to be ready.
        per_user: connection *i* subscribes to ``user:<i>`` instead of "bench".
    """

    def __init__(self, system: str, transport: str, port: int, connections: int,
                 processes: int | None = None, latency: bool = False,
                 cpu: int | None = CLIENT_CPU, timeout: float = 180.0,
                 per_user: bool = False) -> None:
        if (system, transport) not in PATHS:
            raise ValueError(f"no reader for {system} over {transport}")
        self.command = [sys.executable, "-m", "bench.clients", "--port", str(port),
                        "--system", system, "--transport", transport,
                        "--cpu", str(cpu if cpu is not None else 1 << 20)]
        if latency:
            self.command.append("--latency")
        if per_user:
            self.command.append("--per-user")
        self.connections = 0
        self.processes: list[subprocess.Popen[bytes]] = []
        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        try:
            self.add(connections, processes, timeout)
        except BaseException:
            self.close()
            raise

    def add(self, connections: int, processes: int | None = None,
            timeout: float = 180.0) -> None:
        """Open ``connections`` more (per user: the next channels); wait until ready."""
        processes = processes or min(4, max(2, -(-connections // 1250)))
        processes = max(1, min(processes, connections))
        shares = [connections // processes + (i < connections % processes)
                  for i in range(processes)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        new = []
        for share in shares:
            command = [*self.command, "--connections", str(share),
                       "--first", str(self.connections)]
            self.connections += share
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
            new.append(len(self.processes))
            threading.Thread(target=self._listen, args=(len(self.processes), process),
                             daemon=True).start()
            self.processes.append(process)
        self._wait_all("ready", timeout, new)

    def _listen(self, index: int, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.events.put((index, json.loads(line)))
        self.events.put((index, {"event": "exit"}))

    def _wait_all(self, kind: str, timeout: float,
                  indices: list[int] | None = None) -> list[dict[str, Any]]:
        """The next event ``kind`` of each process (of ``indices``, default all)."""
        wanted = set(range(len(self.processes)) if indices is None else indices)
        deadline = time.monotonic() + timeout
        got: dict[int, dict[str, Any]] = {}
        while len(got) < len(wanted):
            try:
                index, event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"clients: {len(got)} of {len(wanted)} "
                                   f"processes sent {kind!r} within {timeout} s") from None
            if event["event"] in ("error", "exit"):
                raise RuntimeError(f"client process {index}: {event}")
            if event["event"] == kind and index in wanted:
                got[index] = event
        return [got[index] for index in sorted(got)]

    def _command(self, command: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command.encode() + b"\n")
            process.stdin.flush()

    def reset(self) -> None:
        """Zero the counters before a burst."""
        self._command("reset")
        self._wait_all("reset", 30)

    def wait_end(self, timeout: float = 300.0) -> None:
        """Wait until every connection received the burst's last publication."""
        self._wait_all("end", timeout)

    def report(self) -> Report:
        """The counters summed over the processes."""
        self._command("report")
        reports = self._wait_all("report", 60)
        zeros = [r["zero"] for r in reports if r.get("zero") is not None]
        return Report(sum(r["received"] for r in reports), sum(r["ended"] for r in reports),
                      [value for r in reports for value in r["latencies"]],
                      min(zeros) if zeros else None)

    def close(self) -> None:
        """Stop the client processes (their sockets close with them)."""
        for process in self.processes:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> ClientGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


if __name__ == "__main__":
    child_main()

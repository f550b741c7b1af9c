"""Raw protocol clients shared by the connect and latency scenarios.

Nothing here uses rtlink's own client: the figures must not include its cost, and the
connect scenario needs the moments between the steps of a handshake (TCP connected,
``101`` read, first frame read), which a library client hides. Everything talks to
127.0.0.1 only.

``RawWebSocket``
    A minimal WebSocket client on asyncio streams (handshake, masked text frames out,
    unfragmented frames in), with the timestamps of each step.
``http_exchange``
    One raw HTTP/1.1 GET whose response is read until given byte strings were seen in
    the body (an SSE stream is never read to its end), with the time each was seen.
``tcp_rtt``
    The loopback round trip of a 1-byte TCP ping-pong between this process and an
    echo server in another process (warm, and on fresh connections), to put the
    WebSocket figures in proportion.
``python -m bench.scenarios._support reader ...``
    A latency reader process: N WebSocket subscribers of one channel that extract the
    send timestamp (``"t":<time.time()>``, stamped by bench/servers/) from every
    publication received by every k-th subscriber and keep a histogram of
    publish→deliver latencies (one machine, one clock); the other subscribers only count
    their deliveries, which keeps the readers' cost per delivery far below the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "RawWebSocket", "HttpTimes", "http_exchange", "tcp_rtt", "Histogram", "SYSTEM_PROTOCOLS",
]

#: The index and send time of a publication (bench/servers/ payload: {"n": i, "t": ...}).
_TIMESTAMP = re.compile(rb'"n":\s*(\d+),\s*"t":\s*(\d+\.\d+)')
#: Histogram bins: 10 µs each, up to 20 s (later deliveries land in the last bin).
BIN_SECONDS = 1e-5
BINS = 2_000_000


# --- a raw WebSocket client ----------------------------------------------------------


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked, final client frame (masking key of zeros: the XOR is the identity)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + b"\0\0\0\0" + payload


@dataclass
class RawWebSocket:
    """A WebSocket connection opened by hand; times are ``time.perf_counter()`` values."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    started: float
    connected: float  # TCP handshake done
    upgraded: float = 0.0  # the whole 101 response read
    status: int = 0

    @classmethod
    async def open(cls, port: int, path: str, protocol: str | None = None) -> RawWebSocket:
        """Connect, send the upgrade request and read the response headers."""
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ws = cls(reader, writer, started, time.perf_counter())
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n")
        if protocol:
            request += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        writer.write((request + "\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        ws.upgraded = time.perf_counter()
        ws.status = int(head.split(b" ", 2)[1])
        if ws.status != 101:
            writer.close()
            raise RuntimeError(f"upgrade refused: {head.decode(errors='replace')}")
        return ws

    async def receive(self) -> bytes:
        """The payload of the next data message (pings are answered, closes raise)."""
        while True:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError(f"closed by the server: {payload[:2].hex()}")
            if opcode == 0x9:
                self.writer.write(ws_frame(payload, 0xA))
                continue
            if opcode in (0x1, 0x2):
                return payload

    async def receive_until(self, predicate: Callable[[bytes], bool]) -> bytes:
        """Messages are read until one satisfies ``predicate``; returns that one."""
        while True:
            payload = await self.receive()
            if predicate(payload):
                return payload

    def send_text(self, text: str) -> None:
        self.writer.write(ws_frame(text.encode()))

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.write(ws_frame(struct.pack("!H", 1000), 0x8))
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# --- a raw HTTP GET ------------------------------------------------------------------


@dataclass
class HttpTimes:
    """Moments of one GET (``time.perf_counter()``) and the body read so far."""

    started: float
    headers: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)
    body: bytes = b""


async def http_exchange(port: int, target: str, marks: dict[str, bytes],
                        timeout: float = 10.0) -> HttpTimes:
    """GET ``target`` and read until every byte string of ``marks`` was seen in the body.

    Returns the time each mark was first seen (``marks`` maps names to the bytes to
    look for). The connection is closed afterwards, also mid-stream. Chunked encoding
    is not decoded: the marks are searched in the raw body, which is enough for them.
    """
    times = HttpTimes(time.perf_counter())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Accept: */*\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        times.headers = time.perf_counter()
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError(f"GET {target}: {head.decode(errors='replace')}")
        body = b""
        while len(times.marks) < len(marks):
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                raise RuntimeError(f"GET {target} ended before {set(marks) - set(times.marks)}")
            body += chunk
            now = time.perf_counter()
            for name, needle in marks.items():
                if name not in times.marks and needle in body:
                    times.marks[name] = now
        times.body = body
        return times
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --- loopback round trip -------------------------------------------------------------

_ECHO_SERVER = """
import asyncio, sys
class Echo(asyncio.Protocol):
    def connection_made(self, transport): self.transport = transport
    def data_received(self, data): self.transport.write(data)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


async def tcp_rtt(count: int = 200, cpu: int | None = None) -> tuple[float, float]:
    """Loopback round trips of a 1-byte ping-pong with an asyncio echo server in another
    process (pinned to ``cpu``), both ends on asyncio like the measured clients.

    Returns the median seconds of ``count`` exchanges on one warm connection, and of
    the first exchange on each of ``count // 10`` fresh connections (what a new
    WebSocket's first frames meet: cold buffers, a loop that just accepted).
    """
    command = [sys.executable, "-c", _ECHO_SERVER]
    if cpu is not None and cpu < (os.cpu_count() or 1):
        command = ["taskset", "-c", str(cpu), *command]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline)
        port = int(line)

        async def exchanges(times: int) -> list[float]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            samples = []
            for _ in range(times):
                began = time.perf_counter()
                writer.write(b"x")
                await reader.readexactly(1)
                samples.append(time.perf_counter() - began)
            writer.close()
            return samples

        warm = sorted((await exchanges(count + 20))[20:])  # the first ones warm up
        fresh = sorted([(await exchanges(1))[0] for _ in range(max(3, count // 10))])
        return warm[len(warm) // 2], fresh[len(fresh) // 2]
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- latency histogram ---------------------------------------------------------------


class Histogram:
    """Counts of latencies in 10 µs bins, mergeable across processes."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def merge(self, sparse: dict[str, int]) -> None:
        for key, count in sparse.items():
            self.counts[int(key)] = self.counts.get(int(key), 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, fraction: float) -> float:
        """Seconds at the nearest-rank ``fraction`` (upper edge of its bin)."""
        rank = max(1, round(fraction * self.total))
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return (key + 1) * BIN_SECONDS
        raise ValueError("empty histogram")


@dataclass(frozen=True)
class ReaderProtocol:
    """How a latency reader speaks to one system over WebSocket.

    ``path`` is the endpoint; ``hello`` the text messages sent right after the upgrade
    (subscribe, or Engine.IO's connect); ``ready`` a byte string whose arrival means the
    subscription is in place; ``ping``/``pong`` an application-level heartbeat the
    server expects answered (raw frame bytes to look for, text to answer).
    """

    path: str
    hello: tuple[str, ...] = ()
    ready: bytes = b""
    ping: bytes = b""
    pong: str = ""


#: Reader protocol of each server module of bench/servers/.
SYSTEM_PROTOCOLS = {
    "rtlink": ReaderProtocol(
        "/rt/ws", ('{"type":"subscribe","id":1,"channel":"bench"}',),
        b'"type":"subscribed"', b'{"type":"ping"}', '{"type":"pong"}'),
    "naive": ReaderProtocol("/ws", (), b'"subscribed"'),
    "floor": ReaderProtocol("/ws", (), b'"subscribed"'),
    # Engine.IO v4: the server opens with "0{...}", "40" connects the default
    # namespace (the server joins the room then answers "40{...}"); pings are "2".
    "socketio": ReaderProtocol("/socket.io/?EIO=4&transport=websocket", ("40",),
                               b'40{"sid"', b"\x81\x012", "3"),
}
# The Node peers speak what their Python counterparts speak.
SYSTEM_PROTOCOLS["nodews"] = SYSTEM_PROTOCOLS["naive"]
SYSTEM_PROTOCOLS["nodesio"] = SYSTEM_PROTOCOLS["socketio"]


class _Reader(asyncio.Protocol):
    """One subscriber: after the upgrade, scans every byte received for timestamps.

    WebSocket frame headers are not parsed: server frames are unmasked and never split
    a timestamp, so a regular expression over the raw stream finds every one, and a
    reader costs little per delivery whatever the server's framing.
    """

    def __init__(self, owner: _ReaderPool, handshake: bytes, sampled: bool) -> None:
        self.owner = owner
        self.handshake = handshake
        self.sampled = sampled
        self.upgraded = False
        self.ready = False
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.handshake)

    def data_received(self, data: bytes) -> None:
        now = time.time()  # the servers stamp publications with time.time()
        owner = self.owner
        buffer = self.tail + data
        assert self.transport is not None
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.tail = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                owner.failed += 1
                self.transport.close()
                return
            self.upgraded = True
            buffer = buffer[end + 4:]
            self.transport.write(owner.hello)
        if not self.ready and (not owner.protocol.ready or owner.protocol.ready in buffer):
            self.ready = True
            owner.ready += 1
        if owner.protocol.ping and owner.protocol.ping in buffer:
            self.transport.write(ws_frame(owner.protocol.pong.encode()))
        if not self.sampled:
            # Only counted: a 3-byte tail cannot hold a whole marker, so none counts twice.
            owner.received += buffer.count(b'"t":')
            self.tail = buffer[-3:]
            return
        last_end = 0
        counts = owner.counts  # looked up per read: "reset" replaces them
        scheduled = owner.scheduled
        for match in _TIMESTAMP.finditer(buffer):
            end = match.end()
            if end == len(buffer):  # the number may go on in the next read
                break
            last_end = end
            index, stamp = int(match.group(1)), float(match.group(2))
            key = min(int((now - stamp) / BIN_SECONDS), BINS - 1)
            counts[key] = counts.get(key, 0) + 1
            owner.received += 1
            if index == 0 and owner.start is None:
                owner.start = stamp
            if owner.start is not None and owner.rate:
                # Latency from when the publication was due at the asked rate: a server
                # that cannot keep the rate publishes late, and its subscribers see that.
                due = owner.start + index / owner.rate
                key = min(max(0, int((now - due) / BIN_SECONDS)), BINS - 1)
                scheduled[key] = scheduled.get(key, 0) + 1
        self.tail = buffer[max(last_end, len(buffer) - 48):]

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost += 1


class _ReaderPool:
    def __init__(self, protocol: ReaderProtocol) -> None:
        self.protocol = protocol
        self.hello = b"".join(ws_frame(text.encode()) for text in protocol.hello)
        self.counts: dict[int, int] = {}
        self.scheduled: dict[int, int] = {}
        self.rate = 0.0
        self.start: float | None = None  # send time of publication 0 since the last reset
        self.received = 0
        self.ready = 0
        self.failed = 0
        self.lost = 0


async def _run_readers(port: int, system: str, count: int, sample_every: int) -> None:
    """Open ``count`` subscribers, say ``{"ready": n}`` once all are subscribed, then
    follow the commands on stdin."""
    protocol = SYSTEM_PROTOCOLS[system]
    pool = _ReaderPool(protocol)
    loop = asyncio.get_running_loop()
    transports = []
    for i in range(count):
        key = base64.b64encode(os.urandom(16)).decode()
        handshake = (f"GET {protocol.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}"
                     "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        transport, _ = await loop.create_connection(functools.partial(_Reader, pool, handshake,
                                                                      i % sample_every == 0),
                                                    "127.0.0.1", port)
        transports.append(transport)
        if i % 50 == 49:
            await asyncio.sleep(0)
    deadline = loop.time() + 60
    while pool.ready + pool.failed < count and loop.time() < deadline:
        await asyncio.sleep(0.05)
    print(json.dumps({"ready": pool.ready, "failed": pool.failed}), flush=True)
    # Commands, one a line on stdin: "reset [RATE]" forgets what was received so far
    # (after a warm-up) and, with RATE, also times each publication n from when it was
    # due (publication 0's send time + n / RATE); "count" prints how much was received;
    # "report" prints the histograms; "stop" (or the end of stdin) closes the
    # subscribers and prints the histograms.
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command.startswith("reset"):  # "reset [RATE]"
            pool.counts, pool.scheduled, pool.start = {}, {}, None
            pool.rate = float(command.split()[1]) if " " in command else 0.0
            pool.received = 0
        elif command == "count":
            print(json.dumps({"received": pool.received, "lost": pool.lost}),
                  flush=True)
        elif command == "report":
            _report(pool)
        else:
            break
    for transport in transports:
        transport.close()
    _report(pool)


def _report(pool: _ReaderPool) -> None:
    print(json.dumps({"counts": pool.counts, "scheduled": pool.scheduled,
                      "received": pool.received, "lost": pool.lost}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scenarios._support")
    commands = parser.add_subparsers(dest="command", required=True)
    reader = commands.add_parser("reader", help="latency reader process")
    reader.add_argument("--port", type=int, required=True)
    reader.add_argument("--system", choices=sorted(SYSTEM_PROTOCOLS), required=True)
    reader.add_argument("--count", type=int, required=True)
    reader.add_argument("--sample-every", type=int, default=1,
                        help="time the deliveries of every k-th subscriber, count the rest")
    reader.add_argument("--cpu", type=int)
    args = parser.parse_args(argv)
    from bench.common import pin, raise_nofile
    raise_nofile()
    if args.cpu is not None:
        pin(args.cpu)
    asyncio.run(_run_readers(args.port, args.system, args.count, args.sample_every))


if __name__ == "__main__":
    main()

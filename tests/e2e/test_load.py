"""Load: 5,000 connections across the three transports on one server process.

The server (tests/support/load_server.py) runs in a process of its own. Two reader processes
(this module, run as ``python -m tests.e2e.test_load``) open cheap connections that speak
the wire protocol directly (docs/protocol.md), 2,500 each: a WebSocket, SSE or
long-polling client subscribed to one of a few channels, and recording the offsets of
the publications it receives. While all are open the test publishes a steady stream
to every channel by ``POST /rt/send``, as a client would, and checks that every
connection received every publication of its channel, once and in order. Then one
reader process closes its connections politely and the other is killed (its sockets
are aborted by the kernel), and the server's open file descriptors and asyncio tasks
must return exactly to what they were before the first connection, with no
connection left in the hub.

The figures (connections per transport, deliveries checked, descriptors and tasks
before, at the peak and after, time back to the baseline) are printed (``-s``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.support import ROOT, free_port, missing_component, seconds
from tests.support.load_server import raise_open_file_limit

#: Connections per transport, over all reader processes.
CONNECTIONS = {"websocket": 2500, "sse": 1500, "longpoll": 1000}
READER_PROCESSES = 2
CHANNELS = [f"load:{n}" for n in range(4)]
#: The publish stream: RATE publications per second to every channel for DURATION s.
RATE = 5
DURATION = 4.0
#: Connections a reader process opens at the same time.
OPENING_AT_ONCE = 100


# --- the reader processes ------------------------------------------------------------


class Reader:
    """One raw client connection: its channel and the offsets it received."""

    def __init__(self, transport: str, channel: str) -> None:
        self.transport = transport
        self.channel = channel
        self.offsets: list[int] = []
        self.problem: str | None = None  # why it ended or was refused, if it was
        #: Done once the subscription is confirmed, or the connection failed.
        self.settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    async def run(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            await READ[self.transport](session, url, self)
        except Exception as exc:  # a reader that breaks is reported, not lost
            self.failed(repr(exc))

    def take(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "publication":
            self.offsets.append(frame["position"]["offset"])
        elif kind == "subscribed" and not self.settled.done():
            self.settled.set_result(None)
        elif kind in ("error", "close"):
            self.failed(f"received {frame}")

    def failed(self, problem: str) -> None:
        self.problem = self.problem or f"{self.transport}: {problem}"
        if not self.settled.done():
            self.settled.set_result(None)


async def read_websocket(session: aiohttp.ClientSession, url: str, reader: Reader) -> None:
    async with session.ws_connect(url.replace("http", "ws", 1) + "/ws",
                                  protocols=("rtlink.v1.json",)) as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1,
                                      "channel": reader.channel}))
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                for line in message.data.split("\n"):
                    frame = json.loads(line)
                    if frame["type"] == "ping":
                        await ws.send_str('{"type":"pong"}')
                    reader.take(frame)
        except asyncio.CancelledError:
            await ws.close()  # polite: the WebSocket close handshake, code 1000
            raise
    reader.failed(f"websocket closed by the server: {ws.close_code}")


async def read_event_stream(session: aiohttp.ClientSession, url: str, reader: Reader) -> None:
    subs = quote(json.dumps({reader.channel: None}))
    async with session.get(f"{url}/sse?subs={subs}") as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                reader.take(json.loads(line[6:]))
    reader.failed("stream ended by the server")


async def poll(session: aiohttp.ClientSession, url: str, reader: Reader) -> None:
    position: Any = None
    query = "&connect=1"
    while True:
        subs = quote(json.dumps({reader.channel: position}))
        async with session.get(f"{url}/poll?subs={subs}{query}") as response:
            body = await response.text()
        query = ""
        for line in body.split("\n"):
            frame = json.loads(line)
            reader.take(frame)
            if frame["type"] == "subscribed":
                position = position or frame["position"]
            elif frame["type"] == "publication":
                position = frame["position"]
        if reader.problem:
            return


READ = {"websocket": read_websocket, "sse": read_event_stream, "longpoll": poll}


async def open_reader(session: aiohttp.ClientSession, url: str, reader: Reader,
                      opening: asyncio.Semaphore) -> None:
    """Start ``reader`` and wait until it is subscribed (or failed)."""
    async with opening:
        reader.task = asyncio.create_task(reader.run(session, url))
        await reader.settled


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def reader_process(url: str, counts: dict[str, int]) -> None:
    """Open the connections, say when they are ready, then obey commands on stdin."""
    raise_open_file_limit()
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        readers = [Reader(transport, CHANNELS[n % len(CHANNELS)])
                   for transport, count in counts.items() for n in range(count)]
        opening = asyncio.Semaphore(OPENING_AT_ONCE)
        started = time.monotonic()
        await asyncio.gather(*(open_reader(session, url, r, opening) for r in readers))
        problems = [r.problem for r in readers if r.problem]
        say({"ready": len(readers) - len(problems), "problems": problems[:5],
             "seconds": round(time.monotonic() - started, 2)})
        while line := await commands.readline():
            command = json.loads(line)
            if command["command"] == "wait":
                expected: dict[str, list[int]] = command["expected"]
                deadline = time.monotonic() + command["timeout"]
                while time.monotonic() < deadline and any(
                    r.offsets != expected[r.channel] and not r.problem for r in readers
                ):
                    await asyncio.sleep(0.1)
                say({"connections": [[r.transport, r.channel, r.offsets, r.problem]
                                     for r in readers]})
            elif command["command"] == "close":
                tasks = [r.task for r in readers if r.task is not None]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                say({"closed": len(tasks)})
                break


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="a reader process of the load test")
    parser.add_argument("url")
    for transport in CONNECTIONS:
        parser.add_argument(f"--{transport}", type=int, default=0)
    args = parser.parse_args(argv)
    counts = {transport: getattr(args, transport) for transport in CONNECTIONS}
    asyncio.run(reader_process(args.url, counts))


# --- the test ----------------------------------------------------------------------


class Process:
    """A child process spoken to by JSON lines on its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str) -> Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=ROOT, limit=2**24,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def read_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(seconds(timeout)):
            line = await self.process.stdout.readline()
        assert line, f"process {self.process.pid} ended (status {self.process.returncode})"
        return line.decode()

    async def read(self, timeout: float) -> Any:
        return json.loads(await self.read_line(timeout))

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@contextlib.asynccontextmanager
async def processes() -> AsyncIterator[list[Process]]:
    """Child processes started in the block, all stopped at its end whatever happens."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            await process.stop(signal.SIGKILL)


async def publish_stream(url: str) -> dict[str, list[int]]:
    """Publish RATE times a second to every channel for DURATION seconds, as a client
    (``POST /send``); return the offsets acknowledged, by channel."""
    acknowledged: dict[str, list[int]] = {channel: [] for channel in CHANNELS}
    count = round(RATE * DURATION)
    started = time.monotonic()

    async def stream(session: aiohttp.ClientSession, channel: str) -> None:
        for n in range(count):
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
            body = json.dumps({"type": "publish", "id": n + 1, "channel": channel,
                               "data": {"n": n}})
            async with session.post(f"{url}/send", data=body) as response:
                answer = json.loads(await response.text())
            assert answer["type"] == "ack", answer
            acknowledged[channel].append(answer["position"]["offset"])

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(stream(session, channel) for channel in CHANNELS))
    return acknowledged


async def test_5000_connections_get_every_publication_and_leave_nothing_behind() -> None:
    needed = sum(CONNECTIONS.values()) + 100  # the server holds them all, plus its own
    if raise_open_file_limit() < needed:
        missing_component(f"the load test needs an open-file limit (hard RLIMIT_NOFILE) "
                          f"of at least {needed}")
    port = free_port()
    url = f"http://127.0.0.1:{port}/rt"
    async with processes() as children:
        server = await Process.start("tests/support/load_server.py", "--port", str(port))
        children.append(server)
        assert (await server.read_line(20)).strip() == "ready"
        # One connection for the statistics, kept alive: it is part of the baseline.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as stats:

            async def server_stats() -> dict[str, Any]:
                async with stats.get(f"http://127.0.0.1:{port}/test/stats") as response:
                    result: dict[str, Any] = await response.json()
                    return result

            baseline = await server_stats()

            started = time.monotonic()
            readers = []
            for _ in range(READER_PROCESSES):
                share = [f"--{transport}={count // READER_PROCESSES}"
                         for transport, count in CONNECTIONS.items()]
                readers.append(await Process.start("-m", "tests.e2e.test_load", url, *share))
                children.append(readers[-1])
            for reader in readers:
                ready = await reader.read(60)
                assert not ready["problems"], ready
            opened_in = time.monotonic() - started
            # Every poller holds a poll (a connection) while nothing is published.
            peak = await server_stats()
            deadline = time.monotonic() + seconds(20)
            while peak["by_transport"] != CONNECTIONS:
                assert time.monotonic() < deadline, peak
                await asyncio.sleep(0.2)
                peak = await server_stats()

            published_at = time.monotonic()
            acknowledged = await publish_stream(url)
            deliveries = 0
            for reader in readers:
                reader.send({"command": "wait", "expected": acknowledged,
                             "timeout": seconds(45)})
            for reader in readers:
                report = await reader.read(60)
                for transport, channel, offsets, problem in report["connections"]:
                    assert problem is None, problem
                    assert offsets == acknowledged[channel], (transport, channel)
                    deliveries += len(offsets)
            assert deliveries == sum(CONNECTIONS.values()) * round(RATE * DURATION)
            delivered_in = time.monotonic() - published_at

            # Half leave politely (WebSocket close handshake, end of the HTTP
            # requests); the other half go with their process, killed: no goodbye.
            left_at = time.monotonic()
            readers[0].send({"command": "close"})
            await readers[1].stop(signal.SIGKILL)
            assert (await readers[0].read(30))["closed"] > 0
            after = await server_stats()
            deadline = time.monotonic() + seconds(30)
            while (after["fds"], after["tasks"], after["connections"]) != (
                baseline["fds"], baseline["tasks"], 0
            ):
                assert time.monotonic() < deadline, (baseline, after)
                await asyncio.sleep(0.2)
                after = await server_stats()
            back_in = time.monotonic() - left_at

        print(f"\nload: {CONNECTIONS} in {READER_PROCESSES} processes, opened in "
              f"{opened_in:.1f} s; {len(CHANNELS)} channels x {round(RATE * DURATION)} "
              f"publications in {DURATION:.0f} s, {deliveries} deliveries checked, all in "
              f"{delivered_in:.1f} s from the first; server fds/tasks "
              f"before {baseline['fds']}/{baseline['tasks']}, at peak {peak['fds']}/"
              f"{peak['tasks']} ({peak['by_transport']}), after {after['fds']}/"
              f"{after['tasks']}; back to baseline {back_in:.1f} s after the clients left")


if __name__ == "__main__":
    main(sys.argv[1:])

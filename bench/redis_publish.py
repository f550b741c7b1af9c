"""Publish throughput of rtlink's Redis backend next to plain redis-py doing the same work.

What is measured, for each concurrency level C (C asyncio tasks sharing N publishes,
each task awaiting one publish at a time), one fresh channel per row:

``rtlink hub.publish``
    ``Hub.publish(channel, data)`` on a Hub over a ``RedisBackend``: validation, msgpack,
    then one ``EVALSHA`` of the publish script (HMGET meta, HINCRBY offset, RPUSH and
    LTRIM of the history list, dropping entries older than the TTL, PEXPIRE history and
    meta, PUBLISH).
``rtlink hub.publish with key``
    The same with an idempotency key unique per message (the script also GETs the key
    and SETs it with PX).
``redis-py pipeline RPUSH+LTRIM+PUBLISH``
    The baseline: per message one ``pipeline(transaction=False)`` with
    ``RPUSH list <msgpack>``, ``LTRIM list -100 -1`` and ``PUBLISH channel <msgpack>``.
``redis-py PUBLISH only``
    The floor: a single ``PUBLISH`` per message.

Why the baseline is fair: like rtlink it packs the data with msgpack, keeps a bounded
history list and publishes, and it costs exactly one round trip per message (one
request, one reply), as rtlink's single ``EVALSHA`` does. Both use a
``BlockingConnectionPool`` of 64 connections on the same event loop. What the baseline
leaves out is what rtlink adds: validation, positions (epoch and offset), TTL trimming,
key expiry, de-duplication and atomicity, and running the work as a Lua script.

Every row is warmed up (at its own concurrency, so the pool holds its connections)
before timing; the payload is ``{"text": "hello", "n": i}``. Rate is N divided by the
wall time of the timed phase; latency is the time of each awaited publish. The client
is one Python process, so on a small machine it is CPU-bound and shares the cores with
redis-server; rows run interleaved so that drift hits all of them alike. On a noisy
(virtual) machine single runs vary by 10-30 %: ``--rounds 3`` repeats the whole
schedule and reports the median of each figure over the rounds.

By default a private ``redis-server`` is started on a free loopback port with a
temporary config (no persistence) and stopped at the end; ``--redis-url`` uses an
existing server instead. Run from the repository root::

    .venv/bin/python bench/redis_publish.py [--messages N] [--concurrency 1,16,64]
        [--warmup W] [--rounds R] [--redis-url redis://host:port/db]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import redis
import redis.asyncio as aioredis

import rtlink
from rtlink.backends.redis import RedisBackend

__all__ = ["main", "private_server", "private_server_process", "run_all", "median_of_rounds",
           "Result", "ROWS"]

#: Publishes one message, given its index (unique within a row, warm-up included).
PublishFn = Callable[[int], Awaitable[object]]

POOL_SIZE = 64  # RedisBackend's default max_connections; the baseline gets the same
STREAM_SIZE = 100  # ChannelOptions' default history_size, used by the baseline's LTRIM
PREFIX = "bench"


@dataclass(frozen=True)
class Result:
    """One row of the table."""

    what: str
    concurrency: int
    rate: float
    p50_us: float
    p99_us: float


# --- the server ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(directory: Path, port: int) -> Path:
    """A redis.conf for a throwaway server: loopback only, no persistence."""
    config = directory / "redis.conf"
    config.write_text(
        f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\n'
        f"dir {directory}\ndaemonize no\nlogfile {directory / 'redis.log'}\n"
    )
    return config


def wait_for_ping(url: str, process: subprocess.Popen[bytes], log: Path,
                  timeout: float = 10.0) -> None:
    """Block until the server at ``url`` answers PING.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                detail = log.read_text() if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {process.returncode}:\n{detail}")
            with contextlib.suppress(redis.exceptions.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"redis-server at {url} did not answer PING within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process``, killing it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def private_server(binary: str) -> Iterator[str]:
    """Run a throwaway redis-server for the duration of the block; yields its URL."""
    with private_server_process(binary) as (url, _):
        yield url


@contextlib.contextmanager
def private_server_process(binary: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Like :func:`private_server`, yielding the URL and the server's process."""
    with tempfile.TemporaryDirectory(prefix="rtlink-bench-") as tmp:
        directory = Path(tmp)
        port = free_port()
        config = write_config(directory, port)
        # Own session: Ctrl-C interrupts the benchmark, which then stops the server.
        process = subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            wait_for_ping(url, process, directory / "redis.log")
            yield url, process
        finally:
            stop(process)


# --- the publishers ------------------------------------------------------------------


def payload(i: int) -> dict[str, object]:
    return {"text": "hello", "n": i}


def baseline_client(url: str) -> aioredis.Redis:
    """A plain client with a pool like RedisBackend's (size, timeouts, no retries)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=5.0, socket_timeout=5.0,
        socket_connect_timeout=5.0,
    )
    return aioredis.Redis(connection_pool=pool)


def hub_publisher(hub: rtlink.Hub, channel: str, with_key: bool) -> PublishFn:
    async def publish(i: int) -> object:
        key = f"m{i}" if with_key else None
        return await hub.publish(channel, payload(i), key=key)

    return publish


def pipeline_publisher(client: aioredis.Redis, channel: str) -> PublishFn:
    history = f"{PREFIX}:{{{channel}}}:log"
    pub_channel = f"{PREFIX}:{{{channel}}}:pub"

    async def publish(i: int) -> object:
        data = msgpack.packb(payload(i), use_bin_type=True)
        pipe = client.pipeline(transaction=False)
        pipe.rpush(history, data)
        pipe.ltrim(history, -STREAM_SIZE, -1)
        pipe.publish(pub_channel, data)
        return await pipe.execute()

    return publish


def publish_only_publisher(client: aioredis.Redis, channel: str) -> PublishFn:
    pub_channel = f"{PREFIX}:{{{channel}}}:pub"

    async def publish(i: int) -> object:
        return await client.publish(pub_channel, msgpack.packb(payload(i), use_bin_type=True))

    return publish


#: Row name -> builder of its publish function, given the hub, the client and a channel.
Builder = Callable[[rtlink.Hub, aioredis.Redis, str], PublishFn]
ROWS: dict[str, Builder] = {
    "rtlink hub.publish": lambda hub, _, ch: hub_publisher(hub, ch, with_key=False),
    "rtlink hub.publish with key": lambda hub, _, ch: hub_publisher(hub, ch, with_key=True),
    "redis-py pipeline RPUSH+LTRIM+PUBLISH": lambda _, client, ch: pipeline_publisher(client, ch),
    "redis-py PUBLISH only": lambda _, client, ch: publish_only_publisher(client, ch),
}


# --- measuring -----------------------------------------------------------------------


async def drive(publish: PublishFn, indices: range, concurrency: int) -> tuple[float, list[float]]:
    """Publish every index with ``concurrency`` tasks; returns (wall seconds, latencies)."""
    latencies: list[float] = []

    async def worker(start: int) -> None:
        clock = time.perf_counter
        for i in indices[start::concurrency]:
            began = clock()
            await publish(i)
            latencies.append(clock() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return time.perf_counter() - began, latencies


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, round(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def measure(what: str, publish: PublishFn, messages: int, warmup: int,
                  concurrency: int) -> Result:
    await drive(publish, range(-max(warmup, concurrency), 0), concurrency)
    elapsed, latencies = await drive(publish, range(messages), concurrency)
    latencies.sort()
    return Result(what, concurrency, messages / elapsed,
                  percentile(latencies, 0.50) * 1e6, percentile(latencies, 0.99) * 1e6)


async def run_all(url: str, messages: int, warmup: int, levels: list[int],
                  rounds: int) -> AsyncIterator[Result]:
    """Every row at every concurrency level, interleaved so drift hits all rows alike."""
    hub = rtlink.Hub(backend=RedisBackend(url, prefix=PREFIX, max_connections=POOL_SIZE))
    client = baseline_client(url)
    await hub.start()
    try:
        for round_ in range(rounds):
            for concurrency in levels:
                for n, (what, build) in enumerate(ROWS.items()):
                    # A fresh channel each time: new history, and idempotency keys unseen.
                    channel = f"bench:row{n}:c{concurrency}:round{round_}"
                    publish = build(hub, client, channel)
                    yield await measure(what, publish, messages, warmup, concurrency)
    finally:
        await hub.close()
        await client.aclose(close_connection_pool=True)


# --- reporting -----------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def server_version(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
        return str(info.get("redis_version", "unknown"))
    finally:
        client.close()


def median_of_rounds(results: list[Result]) -> list[Result]:
    """One result per (row, concurrency), in first-seen order: the median of each figure."""
    groups: dict[tuple[str, int], list[Result]] = {}
    for result in results:
        groups.setdefault((result.what, result.concurrency), []).append(result)
    return [
        Result(what, concurrency,
               statistics.median(r.rate for r in group),
               statistics.median(r.p50_us for r in group),
               statistics.median(r.p99_us for r in group))
        for (what, concurrency), group in groups.items()
    ]


def header(url: str, spawned: bool, args: argparse.Namespace) -> str:
    where = "private redis-server on" if spawned else "existing server at"
    return "\n".join([
        "# rtlink Redis publish benchmark",
        "",
        f"- CPUs: {os.cpu_count()} ({cpu_model()}), {platform.platform()}",
        f"- Python {platform.python_version()} ({sys.implementation.name})",
        f"- redis-server {server_version(url)} ({where} {url}), redis-py {redis.__version__}",
        f"- rtlink {rtlink.__version__}, msgpack {'.'.join(map(str, msgpack.version))}",
        f"- {args.messages} messages per row after {args.warmup} warm-up publishes, "
        'payload {"text": "hello", "n": i}'
        + (f"; median of {args.rounds} rounds" if args.rounds > 1 else ""),
        "",
    ])


def table(results: list[Result]) -> str:
    lines = ["| what | concurrency | msgs/s | p50 µs | p99 µs |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {r.what} | {r.concurrency} | {r.rate:,.0f} | {r.p50_us:,.0f} | {r.p99_us:,.0f} |"
        for r in results
    ]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------


def concurrency_list(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not levels or min(levels) < 1 or max(levels) > POOL_SIZE:
        raise argparse.ArgumentTypeError(f"concurrency levels must be 1..{POOL_SIZE}")
    return levels


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000,
                        help="timed publishes per row (default 20000)")
    parser.add_argument("--warmup", type=int, default=500,
                        help="untimed publishes per row first (default 500)")
    parser.add_argument("--concurrency", type=concurrency_list, default=[1, 16, 64],
                        help="comma-separated levels of concurrent publishers (default 1,16,64)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat everything this often and report medians (default 1)")
    parser.add_argument("--redis-url", help="use this server instead of starting one")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or
                        "/usr/bin/redis-server", help="redis-server binary to start")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--messages and --rounds must be >= 1, --warmup >= 0")
    return args


async def collect(url: str, args: argparse.Namespace) -> list[Result]:
    results = []
    async for result in run_all(url, args.messages, args.warmup, args.concurrency,
                                args.rounds):
        print(f"  {result.what} @ {result.concurrency}: {result.rate:,.0f} msgs/s",
              file=sys.stderr, flush=True)
        results.append(result)
    return results


def bench(url: str, spawned: bool, args: argparse.Namespace) -> None:
    print(header(url, spawned, args), flush=True)
    began = time.perf_counter()
    results = median_of_rounds(asyncio.run(collect(url, args)))
    print(table(results))
    print(f"\n(total {time.perf_counter() - began:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.redis_url:
        bench(args.redis_url, False, args)
        return
    with private_server(args.redis_server) as url:
        bench(url, True, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)

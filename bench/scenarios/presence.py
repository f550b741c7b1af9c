"""Presence: what joins and leaves cost in a channel of 1,000 and 10,000 members
(issue 21).

The node under test is rtlink's benchmark server (bench/servers/rtlink.py: its channel
``room`` has ``ChannelOptions(presence=True)``) pinned to
:data:`~bench.common.SERVER_CPU`, on the memory backend, and on Redis (a private
redis-server; skipped without one): there each join and leave is a script run and an
announcement through Redis pub/sub. The
members are raw WebSocket connections of this process (JSON codec), each subscribed
to ``room`` with ``presence: true``: every member is also a subscriber of the join and
leave events — the worst case, where uncoalesced events would be N² frames.

``join``
    N members connect (at most 500 handshakes in flight) and subscribe; the phase ends
    when every member is subscribed and no ``presence_diff`` arrived for 0.6 s. Then one
    member sends a ``presence`` read, whose ``count`` must be N.
``storm``
    Every member closes its connection at once and connects again (a new session: a
    leave and a join per member), as after a node restart; the phase ends as above.

Per phase: **node CPU µs per member** (the node's CPU time over the phase, divided by
N; it includes the WebSocket handshakes and subscribes, so both phases are measured
first on a channel without presence, ``bench``, after a warm-up of 200 connections,
and **presence's share** is the difference), the ``presence_diff`` **frames** and
their **bytes** received by all members together (per member), and the number of
events uncoalesced presence would have sent (N·(N−1)/2 joins for ``join``;
2·N·(N−1) for ``storm``) for comparison. ``--quick``: 1,000 members, memory backend only.

For developers: ``python -m bench.scenarios.presence run [--quick]`` prints the rows;
``PRESENCE_CASES=memory:1000,redis:10000`` picks cases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time

from bench.common import Row, cpu_seconds, guarded, running

__all__ = ["TITLE", "run"]

TITLE = "Presence: joins and leaves in one channel"
SCENARIO = "presence"
CHANNEL = "room"
IN_FLIGHT = 500
QUIET = 0.6  # no presence_diff for this long: the phase is over


class Member:
    """One member: a raw WebSocket subscribed with ``presence: true``, counting what it
    receives."""

    def __init__(self, crowd: Crowd, channel: str) -> None:
        self.crowd = crowd
        self.channel = channel
        self.ws: _RawWebSocket | None = None
        self.subscribed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.answers: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def join(self, port: int) -> None:
        from bench.scenarios._support import RawWebSocket  # noqa: PLC0415 - heavy module
        self.subscribed.clear()
        self.ws = await RawWebSocket.open(port, "/rt/ws", "rtlink.v1.json")
        self.ws.send_text(json.dumps({"type": "subscribe", "id": 1, "channel": self.channel,
                                      "presence": self.channel == CHANNEL}))
        self.reader = asyncio.ensure_future(self._read(self.ws))
        await self.subscribed.wait()

    async def _read(self, ws: _RawWebSocket) -> None:
        crowd = self.crowd
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, OSError):
            while True:
                payload = await ws.receive()
                for line in payload.split(b"\n"):
                    if b'"presence_diff"' in line:
                        crowd.diffs += 1
                        crowd.diff_bytes += len(line)
                        crowd.last_diff = time.monotonic()
                    elif b'"subscribed"' in line:
                        self.subscribed.set()
                    elif line == b'{"type":"ping"}':
                        # Unanswered, the node closes the connection as dead (4000).
                        ws.send_text('{"type":"pong"}')
                    elif b'"type":"presence"' in line:
                        self.answers.put_nowait(json.loads(line))

    async def leave(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()


_RawWebSocket = object  # the type of bench.scenarios._support.RawWebSocket (lazy import)


class Crowd:
    """N members and what they received together."""

    def __init__(self, size: int, channel: str = CHANNEL) -> None:
        self.members = [Member(self, channel) for _ in range(size)]
        self.diffs = 0
        self.diff_bytes = 0
        self.last_diff = 0.0

    def reset(self) -> None:
        self.diffs = self.diff_bytes = 0

    async def all(self, action: str, port: int = 0) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(member: Member) -> None:
            async with slots:
                await (member.join(port) if action == "join" else member.leave())

        await asyncio.gather(*(one(member) for member in self.members))

    async def settle(self) -> None:
        while time.monotonic() - max(self.last_diff, 0.0) < QUIET:
            await asyncio.sleep(0.1)

    async def count(self) -> int:
        member = self.members[0]
        assert member.ws is not None
        member.ws.send_text(json.dumps({"type": "presence", "id": 2, "channel": CHANNEL}))
        answer = await asyncio.wait_for(member.answers.get(), 60)
        return int(answer["count"])  # type: ignore[call-overload]


async def measure(port: int, pid: int, size: int
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """The figures of both phases for a crowd of ``size``, by channel: ``room``
    (presence) and ``bench`` (none: the same connects and subscribes, for comparison),
    after an unmeasured warm-up."""
    warm = Crowd(min(size, 200), "bench")
    await warm.all("join", port)
    await warm.all("leave")
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for channel in ("bench", CHANNEL):
        crowd = Crowd(size, channel)
        figures[channel] = {}
        for phase in ("join", "storm"):
            crowd.reset()
            before = cpu_seconds(pid)
            started = time.monotonic()
            if phase == "storm":
                await crowd.all("leave")
            await crowd.all("join", port)
            crowd.last_diff = time.monotonic()
            await crowd.settle()
            took = crowd.last_diff - started
            cpu = cpu_seconds(pid) - before
            if channel == CHANNEL and (count := await crowd.count()) != size:
                raise RuntimeError(f"{phase}: presence counts {count} members, not {size}")
            figures[channel][phase] = {"cpu_us": cpu / size * 1e6, "frames": crowd.diffs,
                                       "bytes": crowd.diff_bytes, "seconds": took}
        await crowd.all("leave")
        await asyncio.sleep(0.5)
    return figures


def rows_of(backend: str, size: int,
            figures: dict[str, dict[str, dict[str, float]]]) -> list[Row]:
    rows = []
    naive = {"join": size * (size - 1) // 2, "storm": 2 * size * (size - 1)}
    for phase, values in figures[CHANNEL].items():
        plain = figures["bench"][phase]["cpu_us"]
        case = f"{backend}, {phase}, {size:,} members (all watching)"
        note = (f"uncoalesced: {naive[phase]:,} events; settled in "
                f"{values['seconds']:.1f} s")
        rows += [
            Row(SCENARIO, "rtlink", case, "node CPU per member", round(values["cpu_us"], 1),
                "µs", f"handshake and subscribe included: {plain:.0f} µs without presence"),
            Row(SCENARIO, "rtlink", case, "presence's node CPU per member",
                round(values["cpu_us"] - plain, 1), "µs",
                "the above minus the same on a channel without presence"),
            Row(SCENARIO, "rtlink", case, "presence_diff frames per member",
                round(values["frames"] / size, 2), "frames", note),
            Row(SCENARIO, "rtlink", case, "presence_diff bytes per member",
                round(values["bytes"] / size), "B", f"{values['bytes']:,} B in all"),
        ]
    return rows


def case(backend: str, size: int) -> list[Row]:
    if backend == "memory":
        return _case(backend, size, "memory://")
    from bench import redis_publish
    from bench.scenarios.redis import redis_server_binary

    binary = redis_server_binary()
    if binary is None:
        return [Row(SCENARIO, "rtlink", f"redis, {size:,} members", "node CPU per member",
                    float("nan"), "µs", "not measured: redis-server is not installed")]
    with redis_publish.private_server(binary) as url:
        return _case(backend, size, url)


def _case(backend: str, size: int, url: str) -> list[Row]:
    with running("rtlink", extra_args=["--backend", url]) as server:
        figures = asyncio.run(measure(server.port, server.pid, size))
    return rows_of(backend, size, figures)


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    cases = [("memory", 1000)] if quick else [
        (backend, size) for backend in ("memory", "redis") for size in (1000, 10_000)]
    chosen = os.environ.get("PRESENCE_CASES")
    if chosen:
        cases = [(name, int(size)) for name, _, size in
                 (item.partition(":") for item in chosen.split(","))]
    for backend, size in cases:
        rows += guarded(SCENARIO, "rtlink", f"{backend}, {size:,} members",
                        "node CPU per member", "µs",
                        lambda backend=backend, size=size: case(backend, size))  # type: ignore[misc]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("role", choices=["run"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for row in run(args.quick):
        print(row, file=sys.stdout)


if __name__ == "__main__":
    main()

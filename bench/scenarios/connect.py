"""Connect: how soon a new rtlink client gets its first message, on each transport.

Raw clients on loopback against an rtlink server subprocess (pinned to the server core),
timed with ``time.perf_counter()`` from the moment the TCP connection is started:

- WebSocket: to the ``101`` response, to the ``welcome`` frame, and (after sending a
  ``subscribe`` that resumes one publication back) to the replayed ``publication``.
  The issue's target is that ``welcome`` comes at most one round trip after the
  ``101``; the loopback round trip of a 1-byte TCP ping-pong between two asyncio
  processes is measured next to it, on a warm connection and as the first exchange of
  fresh connections.
- SSE: one ``GET /sse?subs=...`` (resuming one publication back): to the event with
  ``welcome``, and to the one with the replayed ``publication``.
- Long polling: one ``GET /poll?connect=1&subs=...``: the answer holds ``welcome``,
  ``subscribed`` and the replayed ``publication`` at once.
- Fallback: the real Python client (``rtlink.Client`` with its default transports and
  timeouts) behind an nginx that strips ``Upgrade`` and buffers streamed responses
  (tests/support/proxy.py, mode ``strip_upgrade_buffering``): time from ``connect()`` until it
  is connected, on long polling (target: 3 s); in full mode also with
  ``connect_timeout=1`` (the SSE attempt the proxy holds costs one ``connect_timeout``).

Each figure is the median of several connections (fewer with ``--quick``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from bench.common import SERVER_CPU, Row, control, median, running

from ._support import RawWebSocket, http_exchange, tcp_rtt

__all__ = ["TITLE", "run"]

TITLE = "connect: time to first message (loopback)"
SCENARIO = "connect"
SYSTEM = "rtlink"
PATH = "/rt"
CHANNEL = "bench"
#: What an rtlink frame of each kind starts with in the JSON codec.
WELCOME = b'"type":"welcome"'
PUBLICATION = b'"type":"publication"'


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def resume_point(port: int) -> dict[str, object]:
    """Publish one message and return the position just before it (``since`` for a
    subscription whose replay is that one publication)."""
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: control(port, "burst", count=1, size=100))
    ws = await RawWebSocket.open(port, f"{PATH}/ws")
    try:
        await ws.receive_until(lambda p: WELCOME in p)
        ws.send_text(json.dumps({"type": "subscribe", "id": 1, "channel": CHANNEL}))
        payload = await ws.receive_until(lambda p: b'"type":"subscribed"' in p)
        for line in payload.split(b"\n"):
            frame = json.loads(line)
            if frame.get("type") == "subscribed":
                position = frame["position"]
                return {"epoch": position["epoch"], "offset": position["offset"] - 1}
        raise RuntimeError(f"no subscribed frame in {payload!r}")
    finally:
        await ws.close()


async def websocket_once(port: int, since: dict[str, object]) -> dict[str, float]:
    ws = await RawWebSocket.open(port, f"{PATH}/ws")
    try:
        await ws.receive_until(lambda p: WELCOME in p)
        welcome = time.perf_counter()
        ws.send_text(json.dumps({"type": "subscribe", "id": 1, "channel": CHANNEL,
                                 "since": since}, separators=(",", ":")))
        subscribed = time.perf_counter()
        await ws.receive_until(lambda p: PUBLICATION in p)
        publication = time.perf_counter()
    finally:
        await ws.close()
    return {"101": ws.upgraded - ws.started, "welcome": welcome - ws.started,
            "101->welcome": welcome - ws.upgraded,
            "subscribe->publication": publication - subscribed,
            "publication": publication - ws.started}


async def http_once(port: int, endpoint: str, since: dict[str, object]) -> dict[str, float]:
    subs = quote(json.dumps({CHANNEL: since}, separators=(",", ":")), safe="")
    query = f"subs={subs}" + ("&connect=1" if endpoint == "poll" else "")
    times = await http_exchange(port, f"{PATH}/{endpoint}?{query}",
                                {"welcome": WELCOME, "publication": PUBLICATION})
    return {"headers": times.headers - times.started,
            "welcome": times.marks["welcome"] - times.started,
            "publication": times.marks["publication"] - times.started}


async def medians(runs: int,
                  measure: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, float]:
    """The median of each figure over ``runs`` calls of ``measure`` (after a warm-up)."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs + 1):  # one more, thrown away: warms up both ends
        result = await measure()
        for key, value in result.items():
            samples.setdefault(key, []).append(value)
    return {key: median(values[1:]) for key, values in samples.items()}


async def fallback_once(port: int, connect_timeout: float | None) -> tuple[float, str]:
    """Seconds from connect() to connected through the buffering, Upgrade-stripping
    nginx, and the transport the client ended on."""
    import rtlink
    from rtlink.client import forget_transports
    from tests.support.proxy import run_nginx

    forget_transports()  # every run starts from WebSocket, as a new page would
    async with run_nginx(port, "strip_upgrade_buffering") as proxy:
        client = (rtlink.Client(proxy.url(PATH)) if connect_timeout is None
                  else rtlink.Client(proxy.url(PATH), connect_timeout=connect_timeout))
        try:
            began = time.perf_counter()
            await asyncio.wait_for(client.connect(), 60)
            elapsed = time.perf_counter() - began
            return elapsed, str(client.transport)
        finally:
            await client.close()


def nginx_available() -> str | None:
    """None when the fallback can run, else why not."""
    try:
        from tests.support.proxy import NGINX
    except ImportError as error:  # tests/ needs pytest (the dev extra)
        return f"tests/support/proxy.py not importable ({error}); install the dev extra"
    return None if NGINX else "nginx is not installed"


async def run(quick: bool) -> list[Row]:
    runs = 5 if quick else 21
    rows: list[Row] = []

    def row(transport: str, metric: str, value: float, unit: str = "ms",
            notes: str = "") -> None:
        rows.append(Row(SCENARIO, SYSTEM, transport, metric, value, unit, notes))

    rtt, fresh_rtt = await tcp_rtt(count=50 if quick else 200, cpu=SERVER_CPU)
    with running("rtlink", "ws", cpu=SERVER_CPU) as server:
        since = await resume_point(server.port)
        ws = await medians(runs, lambda: websocket_once(server.port, since))
        sse = await medians(runs, lambda: http_once(server.port, "sse", since))
        poll = await medians(runs, lambda: http_once(server.port, "poll", since))
        note = f"median of {runs}"
        row("ws", "connect → 101", ms(ws["101"]), notes=note)
        row("ws", "connect → welcome", ms(ws["welcome"]), notes=note)
        row("ws", "101 → welcome", ms(ws["101->welcome"]),
            notes=f"{note}; target ≤ 1 RTT: {ws['101->welcome'] / rtt:.1f} × warm RTT, "
                  f"{ws['101->welcome'] / fresh_rtt:.1f} × fresh-connection RTT")
        row("ws", "loopback TCP RTT (warm)", ms(rtt),
            notes="1-byte ping-pong, asyncio to asyncio (other process), one connection")
        row("ws", "loopback TCP RTT (fresh)", ms(fresh_rtt),
            notes="first 1-byte ping-pong on each new connection")
        row("ws", "connect → first publication", ms(ws["publication"]),
            notes=f"{note}; subscribe with since, 1 replayed")
        row("ws", "subscribe → first publication", ms(ws["subscribe->publication"]),
            notes=f"{note}; the subscribe round trip with a replay of 1")
        row("sse", "connect → welcome", ms(sse["welcome"]), notes=note)
        row("sse", "connect → first publication", ms(sse["publication"]),
            notes=f"{note}; subs with since, 1 replayed")
        row("longpoll", "connect → welcome", ms(poll["welcome"]), notes=note)
        row("longpoll", "connect → first publication", ms(poll["publication"]),
            notes=f"{note}; connect=1 poll, same answer as welcome")

        missing = nginx_available()
        if missing:
            row("longpoll", "fallback → connected", float("nan"), "s",
                notes=f"not measured: {missing}")
            return rows
        fallback_runs = 1 if quick else 3
        for timeout, metric in ((None, "fallback → connected"),
                                (1.0, "fallback → connected, connect_timeout 1 s")):
            if quick and timeout is not None:
                continue
            results = [await fallback_once(server.port, timeout) for _ in range(fallback_runs)]
            ended = sorted({transport for _, transport in results})
            label = "defaults (connect_timeout 3 s)" if timeout is None else "connect_timeout 1 s"
            row("longpoll", metric, round(median([t for t, _ in results]), 3), "s",
                notes=f"rtlink.Client, {label}, behind nginx strip_upgrade_buffering; ended "
                      f"on {'/'.join(ended)}; median of {fallback_runs}; target ≤ 3 s")
    return rows

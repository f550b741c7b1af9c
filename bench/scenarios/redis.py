"""Redis backend: rtlink's publishes per second next to a plain redis-py pipeline.

A thin wrapper around bench/redis_publish.py (its docstring says what each row does and
why the baseline is fair): a private redis-server, concurrency 16, every row of that
script, and the ratio of ``rtlink hub.publish`` to ``redis-py pipeline RPUSH+LTRIM+PUBLISH``
(target ≥ 0.5×). Full mode: 10,000 messages per row, median of 3 rounds; ``--quick``:
3,000 messages, one round.
"""

from __future__ import annotations

import asyncio
import os
import shutil

from bench.common import Row

__all__ = ["TITLE", "run"]

TITLE = "Redis backend: publishes/s at concurrency 16"
SCENARIO = "redis"
CONCURRENCY = 16
RTLINK = "rtlink hub.publish"
BASELINE = "redis-py pipeline RPUSH+LTRIM+PUBLISH"
#: The system column of each row of redis_publish.py (rtlink's own is the reference).
SYSTEM_NAMES = {RTLINK: "rtlink", "rtlink hub.publish with key": "rtlink, with key"}


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


async def run(quick: bool) -> list[Row]:
    from bench import redis_publish  # needs redis-py: the bench extra pulls rtlink[redis]

    binary = redis_server_binary()
    if binary is None:
        return [Row(SCENARIO, "rtlink", "redis", "publishes/s", float("nan"), "msgs/s",
                    "not measured: redis-server is not installed")]
    messages, warmup, rounds = (3_000, 300, 1) if quick else (10_000, 500, 3)
    loop = asyncio.get_running_loop()
    server = redis_publish.private_server(binary)
    # The helper is a synchronous context manager (it waits for PING with a blocking
    # client): enter and leave it off the event loop.
    url = await loop.run_in_executor(None, server.__enter__)
    try:
        results = [result async for result in redis_publish.run_all(
            url, messages, warmup, [CONCURRENCY], rounds)]
    finally:
        await loop.run_in_executor(None, server.__exit__, None, None, None)
    results = redis_publish.median_of_rounds(results)
    note = (f"{messages:,} messages per row, concurrency {CONCURRENCY}"
            + (f", median of {rounds} rounds" if rounds > 1 else ""))
    rows = []
    rates = {}
    for result in results:
        rates[result.what] = result.rate
        rows.append(Row(SCENARIO, SYSTEM_NAMES.get(result.what, result.what), "redis",
                        "publishes/s", round(result.rate), "msgs/s",
                        f"{result.what}; {note}; p50 {result.p50_us:,.0f} µs, "
                        f"p99 {result.p99_us:,.0f} µs"))
    if RTLINK in rates and BASELINE in rates:
        rows.append(Row(SCENARIO, "rtlink", "redis", "÷ pipeline RPUSH+LTRIM+PUBLISH",
                        round(rates[RTLINK] / rates[BASELINE], 2), "×",
                        f"{note}; target ≥ 0.5×"))
    return rows

"""JS client: bytes min+gzip of rtlink's browser client next to its peers.

Runs bench/js_size.sh (it installs the peers' latest releases from npm into a temporary
directory, bundles each through its package entry with esbuild --minify and gzips with
-9) and turns its table into rows. Needs node, npm and access to the npm registry;
without them the scenario reports why instead of figures.
"""

from __future__ import annotations

import asyncio
import re
import shutil

from bench.common import ROOT, Row

__all__ = ["TITLE", "run", "parse"]

TITLE = "JS client: min+gzip bytes"
SCENARIO = "jssize"
#: The whole browser client's budget (js-client/build.mjs checks it too): 6 KiB, and
#: 1 KiB for the tabs sharing one connection (issue 22).
TARGET_BYTES = 7168
_ROW = re.compile(r"^\|\s*(?P<client>\S+)\s*\|\s*(?P<version>\S+)\s*\|\s*(?P<bytes>\d+) B\s*\|")


def parse(table: str) -> list[tuple[str, str, int]]:
    """(client, version, bytes) for every data line of js_size.sh's table."""
    return [(m["client"], m["version"], int(m["bytes"]))
            for line in table.splitlines() if (m := _ROW.match(line))]


async def run(quick: bool) -> list[Row]:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return [Row(SCENARIO, "rtlink", "js", "min+gzip", float("nan"), "B",
                    f"not measured: {', '.join(missing)} not installed")]
    process = await asyncio.create_subprocess_exec(
        "bash", str(ROOT / "bench" / "js_size.sh"), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 300)
    except TimeoutError:
        process.kill()
        await process.wait()
        return [Row(SCENARIO, "rtlink", "js", "min+gzip", float("nan"), "B",
                    "not measured: bench/js_size.sh took over 300 s")]
    measured = parse(out.decode())
    if process.returncode != 0 or not measured:
        detail = (err.decode().strip().splitlines() or ["no output"])[-1]
        return [Row(SCENARIO, "rtlink", "js", "min+gzip", float("nan"), "B",
                    f"not measured: bench/js_size.sh exited {process.returncode}: {detail}")]
    rows = []
    for client, version, size in measured:
        notes = f"{client} {version}; esbuild --minify (ESM, browser), gzip -9"
        if client == "rtlink":
            notes += f"; target ≤ {TARGET_BYTES} B"
        rows.append(Row(SCENARIO, client, "js", "min+gzip", float(size), "B", notes))
    return rows

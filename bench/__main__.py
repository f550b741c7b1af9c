"""The benchmark runner: ``python -m bench [--quick] [--only NAME,...] [--json PATH]``.

Runs the scenario modules of :mod:`bench.scenarios` in order (``ORDER``), prints one
markdown table per scenario, with each figure divided by rtlink's figure for the same
case (column "÷ rtlink"), and writes every row to JSON (default bench/results.json)
with the date and the machine (CPU model, cores, Python, aiohttp, python-socketio).
A scenario that cannot be imported or fails is reported and the run goes on; the exit
status is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib
import inspect
import json
import math
import os
import platform
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, raise_nofile
from bench.scenarios import ORDER

ORDER = (*ORDER, "storm")  # Redis storms and per-user channels (bench/scenarios/storm.py)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    versions: dict[str, str | None] = {}
    for package in ("rtlink", "aiohttp", "python-socketio", "python-engineio", "redis"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version(), **versions}


def _number(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def table(rows: list[Row]) -> str:
    """Rows as a markdown table with the ratio of each value to rtlink's."""
    reference = {(row.scenario, row.transport, row.metric): row.value
                 for row in rows if row.system == "rtlink"}
    lines = ["| system | case | metric | value | ÷ rtlink | notes |",
             "|---|---|---|---:|---:|---|"]
    for row in rows:
        base = reference.get((row.scenario, row.transport, row.metric))
        ratio = ""
        if base and not math.isnan(base) and not math.isnan(row.value):
            ratio = f"{row.value / base:.2f}"
        notes = row.notes.replace("|", "/").replace("\n", " ")
        lines.append(f"| {row.system} | {row.transport} | {row.metric} | "
                     f"{_number(row.value)} {row.unit} | {ratio} | {notes} |")
    return "\n".join(lines)


def run_scenario(name: str, quick: bool) -> tuple[str, list[Row]]:
    """Import and run one scenario module; returns its title and rows."""
    module = importlib.import_module(f"bench.scenarios.{name}")
    result = module.run(quick)
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    return str(getattr(module, "TITLE", name)), list(result)


def _jsonable(row: Row) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    if isinstance(data["value"], float) and not math.isfinite(data["value"]):
        data["value"] = None
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer connections and repetitions (under 2 minutes)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated scenarios to run, of: {', '.join(ORDER)}")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"),
                        help="where to write the rows (default: bench/results.json)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(ORDER)
    unknown = [name for name in names if name not in ORDER]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    raise_nofile()
    started = time.monotonic()
    info = machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# rtlink benchmarks{' (quick)' if args.quick else ''}: {when}\n")
    print(f"{info['cpu']}, {info['cores']} cores; Python {info['python']}, "
          f"aiohttp {info['aiohttp']}, python-socketio {info['python-socketio']}\n")
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        begun = time.monotonic()
        try:
            title, scenario_rows = run_scenario(name, args.quick)
        except Exception:
            failed.append(name)
            print(f"## {name}: FAILED\n\n```\n{traceback.format_exc()}```\n", flush=True)
            continue
        rows.extend(scenario_rows)
        print(f"## {title}\n\n{table(scenario_rows)}\n\n"
              f"({name}: {time.monotonic() - begun:.0f} s)\n", flush=True)
    document = {"date": when, "quick": args.quick, "machine": info,
                "seconds": round(time.monotonic() - started, 1), "failed": failed,
                "rows": [_jsonable(row) for row in rows]}
    Path(args.json).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"rows written to {args.json}; {time.monotonic() - started:.0f} s in all"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

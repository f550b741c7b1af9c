"""Instructions per delivery, counted by callgrind: repeatable where timings are not.

    python -m bench.instructions peruser|onechannel [--connections N] [--passes P]
                                 [--system rtlink|floor] [--profile OUT]

On a shared 2-core machine the scenarios' CPU times vary by ±30 % from run to run;
the instructions a server executes per delivery vary by 0.1 %. This runs the server
of a scenario in this process, under ``valgrind --tool=callgrind`` (it re-executes
itself there), with the same readers as the scenarios (:mod:`bench.clients`, in
subprocesses that valgrind does not trace), and counts the user-space instructions of
the server's thread while it publishes: the kernel's ``send`` is not counted (it costs
the same to every system), the Python that leads to it is.

- ``peruser``: N channels ``user:<i>`` (default 2,000) × 1 subscriber; a pass is the
  bench's per-user loop (``bench.servers.users``: one ~100 B publication to each).
- ``onechannel``: 1 channel × N subscribers (default 1,000); a pass is one publication
  (``bench.servers.burst`` of 1), made 50 ms after the previous one was received by all
  (the hub idle: it writes in line, as in the latency-bound scenario's rounds).

Counted per pass: from the first publish call to the return of the last (the memory
backend never suspends, so every delivery is written by then), after a full garbage
collection; warm-up passes first. ``--system floor`` counts the asyncio floor
(bench/servers/floor.py) the same way. Printed: instructions per delivery. Without
valgrind on the machine it says so. ``--profile OUT`` instead runs without valgrind and
writes a cProfile of the counted passes to OUT (for ``pstats``; the profiler's own
overhead inflates small functions).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

import rtlink
from bench.clients import ClientGroup
from bench.common import SERVER_CPU, free_port, pin, raise_nofile
from bench.servers import CHANNEL, USER_PREFIX, Publish, burst, users

__all__ = ["main"]

_DEFAULT_CONNECTIONS = {"peruser": 2000, "onechannel": 1000}
_DEFAULT_PASSES = {"peruser": 2, "onechannel": 10}
#: Set in the process valgrind runs: count, do not re-execute.
_UNDER_VALGRIND = "RTLINK_BENCH_UNDER_CALLGRIND"


def _instrument(on: bool) -> None:
    """Switch callgrind's counting on or off for this process (it is off at start)."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                   check=True, stdout=subprocess.DEVNULL)


async def _serve(system: str, port: int) -> tuple[Publish, Any]:
    """Start ``system``'s server in this loop; its publish call and what to close."""
    if system == "floor":
        from bench.servers.floor import Floor, HttpProtocol
        floor = Floor()
        server = await asyncio.get_running_loop().create_server(
            lambda: HttpProtocol(floor), "127.0.0.1", port, backlog=4096)
        return floor.publish, server
    options = rtlink.ChannelOptions(client_publish=False)
    hub = rtlink.Hub("memory://", channels={CHANNEL: options, f"{USER_PREFIX}*": options})
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    return hub.publish, runner


async def _count(args: argparse.Namespace, counting: bool) -> None:
    """Run the shape's passes; switch counting on around each measured one."""
    pin(SERVER_CPU)
    per_user = args.shape == "peruser"
    port = free_port()
    publish, closer = await _serve(args.system, port)
    loop = asyncio.get_running_loop()
    group = await loop.run_in_executor(None, lambda: ClientGroup(
        args.system, "ws", port, args.connections, per_user=per_user, timeout=600))
    profile = None
    if args.profile:
        import cProfile
        profile = cProfile.Profile()
    try:
        for index in range(args.passes + 2):  # two warm-up passes
            measured = index >= 2
            await loop.run_in_executor(None, group.reset)
            gc.collect()
            if not per_user:
                await asyncio.sleep(0.05)
            if measured and counting:
                _instrument(True)
            if measured and profile is not None:
                profile.enable()
            if per_user:
                await users(publish, args.connections, args.connections, 100)
            else:
                await burst(publish, 1, 100, None)
            if measured and profile is not None:
                profile.disable()
            if measured and counting:
                _instrument(False)
            await loop.run_in_executor(None, group.wait_end)
    finally:
        group.close()
        if isinstance(closer, web.AppRunner):
            await closer.cleanup()
        else:
            closer.close()
    if profile is not None:
        profile.dump_stats(args.profile)


def _valgrind(args: argparse.Namespace) -> int:
    """Re-run this command under callgrind; print instructions per delivery."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("not measured: valgrind (callgrind) is not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   "--separate-threads=yes", f"--callgrind-out-file={out}",
                   sys.executable, "-m", "bench.instructions", *sys.argv[1:]]
        env = dict(os.environ, PYTHONHASHSEED="0", **{_UNDER_VALGRIND: "1"})
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        # Thread 1 is the event loop's (the executor's threads only wait for readers).
        main_thread = out.with_name(out.name + "-01")
        totals = re.search(r"^totals: (\d+)", main_thread.read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError(f"no totals in {main_thread}")
    deliveries = args.connections * args.passes
    print(f"{args.system} {args.shape}, {args.connections} connections, {args.passes} "
          f"passes: {int(totals[1]) / deliveries:,.0f} instructions per delivery")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=sorted(_DEFAULT_CONNECTIONS))
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--passes", type=int, default=None)
    parser.add_argument("--system", choices=["rtlink", "floor"], default="rtlink")
    parser.add_argument("--profile", default=None, help="cProfile to this file instead")
    args = parser.parse_args()
    args.connections = args.connections or _DEFAULT_CONNECTIONS[args.shape]
    args.passes = args.passes or _DEFAULT_PASSES[args.shape]
    raise_nofile()
    if args.profile or os.environ.get(_UNDER_VALGRIND):
        asyncio.run(_count(args, counting=not args.profile))
        return
    sys.exit(_valgrind(args))


if __name__ == "__main__":
    main()

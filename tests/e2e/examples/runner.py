"""Running an example the way its README section says: ``bash examples/run.sh NAME``.

::

    async with run_example("chat") as example:       # adds --port 0 unless given a port
        example.url                                     # the first URL it printed
        await example.wait_for(r"published (\\S+)")      # a line of its output

The example runs in its own process group (its nginx or redis-server included) and
is stopped with SIGTERM, as Ctrl-C would; when the test body succeeded, the example
must then exit with status 0 (its clean shutdown is part of what is tested).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator

from tests.support import ROOT, seconds

RUN = ROOT / "examples" / "run.sh"
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/\S*")
#: The first run may create .venv or reinstall rtlink after pyproject.toml changed.
START_TIMEOUT = 120.0


class Example:
    """A running example: its output so far, and the first URL it printed."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self.url = ""
        self.port = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: str, timeout: float = 10.0,
                       start: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in a line of output (from line ``start`` on),
        waiting for it; fail after ``timeout`` (scaled) or if the example exits."""
        regex = re.compile(pattern)
        try:
            async with asyncio.timeout(seconds(timeout)):
                while True:
                    for line in self.lines[start:]:
                        if found := regex.search(line):
                            return found
                    if self._reader.done():
                        raise AssertionError(f"{self.name} exited (status "
                                             f"{await self.process.wait()}) before printing "
                                             f"{pattern!r}:\n{self.output}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name} printed no line matching {pattern!r} in "
                                 f"{timeout} s:\n{self.output}") from None

    async def stop(self) -> int:
        """SIGTERM to the example's process group, as Ctrl-C; return its exit status."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), seconds(10))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        await self._reader
        assert self.process.returncode is not None
        return self.process.returncode


async def start_example(name: str, *args: str) -> Example:
    """Start ``bash examples/run.sh NAME ARGS`` (``--port 0`` unless ARGS has a port) and
    wait until it printed its URL."""
    if "--port" not in args:
        args = ("--port", "0", *args)
    process = await asyncio.create_subprocess_exec(
        "bash", str(RUN), name, *args, cwd=ROOT, start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    example = Example(name, process)
    try:
        found = await example.wait_for(URL.pattern, timeout=START_TIMEOUT)
    except BaseException:
        await example.stop()
        raise
    example.url, example.port = found[0], int(found[1])
    return example


@contextlib.asynccontextmanager
async def run_example(name: str, *args: str) -> AsyncIterator[Example]:
    """Run an example for the duration of the block (see the module doc)."""
    example = await start_example(name, *args)
    try:
        yield example
    except BaseException:
        await example.stop()
        raise
    status = await example.stop()
    assert status == 0, f"{name} exited with status {status} on SIGTERM:\n{example.output}"
    assert example.lines[-1] == "stopped", example.output

"""examples/run.sh itself: the names it knows, the README's commands, and errors a user
can act on."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest

from tests.support import seconds
from tests.support.proxy import require_nginx

from .runner import ROOT, RUN

EXAMPLES = ("chat", "notifications", "publisher", "dashboard")


async def run_sh(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        "bash", str(RUN), *args, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), seconds(120))
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def test_readme_gives_one_command_per_example() -> None:
    readme = (ROOT / "examples" / "README.md").read_text()
    commands = re.findall(r"^bash examples/run\.sh (\w+)$", readme, re.MULTILINE)
    assert sorted(commands) == sorted(EXAMPLES)
    for name in EXAMPLES:
        assert (ROOT / "examples" / name).is_dir() or (ROOT / "examples" / f"{name}.py").is_file()


async def test_unknown_example_is_a_usage_error() -> None:
    status, stdout, stderr = await run_sh("chatroom")
    assert (status, stdout) == (2, "")
    assert stderr.startswith("usage: bash examples/run.sh chat|notifications|")


async def test_help_lists_the_options() -> None:
    status, stdout, stderr = await run_sh("dashboard", "--help")
    assert status == 0, stderr
    assert "--port PORT" in stdout


async def test_a_port_in_use_is_reported_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, _, stderr = await run_sh("chat", "--port", str(port))
        assert status == 1
        assert stderr == (f"error: cannot listen on 127.0.0.1:{port}: Address already in use; "
                          "choose another port with --port\n")


@pytest.mark.proxy
async def test_a_port_in_use_by_nginx_is_reported() -> None:
    require_nginx()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, _, stderr = await run_sh("notifications", "--port", str(port))
        assert status == 1
        assert stderr.startswith(f"error: nginx on 127.0.0.1:{port} did not start "
                                 "(exit status 1); choose another port with --port:\n")
        assert "Address already in use" in stderr

"""The README's main command, run as a new user would: ``bash .ci/serve``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import aiohttp

import rtlink
from tests.support import ROOT, free_port, seconds


async def test_ci_serve_runs_the_server_with_demo_page_and_passes_options_through() -> None:
    port = free_port()
    process = subprocess.Popen(
        ["bash", str(ROOT / ".ci" / "serve"), "--port", str(port), "--path", "/live"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(seconds(120)):  # may install into .venv first
            while True:
                line = (await loop.run_in_executor(None, process.stdout.readline)).decode()
                assert line or process.poll() is None, "serve exited early"
                if "serving on" in line:
                    break
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200
                assert 'content="/live"' in await response.text()
        async with rtlink.Client(f"http://127.0.0.1:{port}/live") as client:
            async with client.subscribe("chat:lobby") as sub:
                position = await client.publish("chat:lobby", {"text": "hi"})
                message = await anext(sub)
                assert (message.data, message.position) == ({"text": "hi"}, position)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=seconds(10)) == 0


def test_ci_serve_takes_options_from_the_environment_and_a_config_file(tmp_path: Path) -> None:
    """`.ci/serve` is `rtlink serve`: RTLINK_* variables and --config reach it, and
    --print-config shows the result without starting a server."""
    config = tmp_path / "rtlink.toml"
    config.write_text('port = 9001\nhistory_size = 5\n[channels."chat:*"]\nclient_publish = true\n')
    env = {name: value for name, value in os.environ.items() if not name.startswith("RTLINK_")}
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "serve"), "--config", str(config), "--print-config",
         "--history-size", "7"],
        capture_output=True, text=True, cwd=ROOT, timeout=seconds(120),
        env={**env, "RTLINK_PORT": "9002", "RTLINK_LOG_LEVEL": "debug"},
    )
    assert result.returncode == 0, result.stderr
    # The sources of "key = value" lines, in order (server-wide first, then the rules).
    sources: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        setting, _, source = line.partition("  # ")
        sources.setdefault(setting.rstrip(), []).append(source)
    assert sources["port = 9002"] == ["environment RTLINK_PORT"]
    assert sources['log_level = "debug"'] == ["environment RTLINK_LOG_LEVEL"]
    assert sources["history_size = 7"] == ["flag --history-size",
                                           "server-wide history_size (flag --history-size)"]
    assert sources["client_publish = true"] == ["default", f"config file {config}"]

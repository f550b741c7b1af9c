"""The ``rtlink`` command, end to end: real processes talking over loopback, no mocks."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import IO, Any

import pytest

#: Multiply every timeout by RTLINK_TEST_TIME_FACTOR on slow machines.
TIME_FACTOR = float(os.environ.get("RTLINK_TEST_TIME_FACTOR", "1"))
#: Run the CLI the way the console script does, without relying on it being installed.
CLI = [sys.executable, "-c", "import sys; from rtlink.cli import main; sys.exit(main())"]


def seconds(value: float) -> float:
    return value * TIME_FACTOR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(*args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True,
                          timeout=seconds(timeout))


class Lines:
    """Collects the lines of a process's pipe in a thread, so waits can time out."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 15) -> str:
        """Return the first line (seen so far or arriving) containing ``text``."""
        for line in self.lines:
            if text in line:
                return line
        deadline = time.monotonic() + seconds(timeout)
        while not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r} in time; got {self.lines}")
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                self.ended = True
                break
            self.lines.append(item)
            if text in item:
                return item
        raise AssertionError(f"stream ended without {text!r}; got {self.lines}")

    def rest(self, timeout: float = 5) -> list[str]:
        """All lines, once the pipe has ended (the process exited)."""
        self._thread.join(seconds(timeout))
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if item is not None:
                self.lines.append(item)


class Proc:
    """A CLI subprocess with its stdout and stderr collected line by line."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.stdout = Lines(self.popen.stdout)
        self.stderr = Lines(self.popen.stderr)

    def wait(self, timeout: float = 15) -> int:
        return self.popen.wait(seconds(timeout))

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(seconds(5))


class Server(Proc):
    def __init__(self, *options: str) -> None:
        self.port = free_port()
        super().__init__("serve", "--port", str(self.port), "--log-level", "warning", *options)
        self.serving = self.stdout.wait_for("rtlink serving on", timeout=15)
        self.url = f"http://127.0.0.1:{self.port}/rt"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    server = Server()
    try:
        yield server
    finally:
        server.kill()


def publish(url: str, channel: str, data: Any) -> str:
    result = run_cli("publish", url, channel, json.dumps(data))
    assert result.returncode == 0, result.stderr
    position = result.stdout.strip()
    epoch, _, offset = position.rpartition(":")
    assert epoch and offset.isdigit(), position
    return position


def test_serve_prints_urls_and_serves_the_demo_page(server: Server) -> None:
    assert server.serving == (
        f"rtlink serving on http://127.0.0.1:{server.port}/ "
        f"(endpoint http://127.0.0.1:{server.port}/rt, backend memory://)"
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/html"
        page = response.read().decode()
    assert "rtlink" in page
    assert '<meta name="rtlink-path" content="/rt">' in page


def test_tail_prints_published_messages_as_json_lines(server: Server) -> None:
    tail = Proc("tail", server.url, "test:tail", "--count", "2")
    try:
        tail.stderr.wait_for("subscribed to test:tail")
        first = publish(server.url, "test:tail", {"text": "hello"})
        second = publish(server.url, "test:tail", "plain string")
        assert tail.wait() == 0
        lines = [json.loads(line) for line in tail.stdout.rest()]
    finally:
        tail.kill()
    assert lines == [
        {"channel": "test:tail", "position": first, "data": {"text": "hello"}},
        {"channel": "test:tail", "position": second, "data": "plain string"},
    ]
    assert "connected (websocket" in "\n".join(tail.stderr.rest())


def test_tail_since_resumes_after_a_position(server: Server) -> None:
    positions = [publish(server.url, "test:since", {"n": n}) for n in range(3)]
    result = run_cli("tail", server.url, "test:since", "--since", positions[0], "--count", "2",
                     "--format", "text")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f'{positions[1]} test:since {{"n":1}}',
        f'{positions[2]} test:since {{"n":2}}',
    ]
    assert f"resumed after {positions[0]}" in result.stderr


def test_tail_warns_when_the_gap_cannot_be_recovered(server: Server) -> None:
    tail = Proc("tail", server.url, "test:gap", "--since", "no-such-epoch:5", "--count", "1")
    try:
        warning = tail.stderr.wait_for("WARNING")
        position = publish(server.url, "test:gap", 1)
        assert tail.wait() == 0
        assert [json.loads(line)["position"] for line in tail.stdout.rest()] == [position]
    finally:
        tail.kill()
    assert "messages may have been missed" in warning


def test_publish_refuses_invalid_json(server: Server) -> None:
    result = run_cli("publish", server.url, "test:json", "{not json")
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_times_out_without_a_server() -> None:
    result = run_cli("publish", f"http://127.0.0.1:{free_port()}/rt", "test:x", "1",
                     "--timeout", "1")
    assert result.returncode == 1
    assert "could not connect" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [[], ["serve"], ["publish"], ["tail"]])
def test_help(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: rtlink")


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("rtlink ")


def test_refused_publish_and_clean_shutdown() -> None:
    server = Server("--no-client-publish", "--path", "/live")
    tail: Proc | None = None
    try:
        url = f"http://127.0.0.1:{server.port}/live"
        result = run_cli("publish", url, "test:ro", "1")
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and "(code 403)" in result.stderr

        tail = Proc("tail", url, "test:ro")
        tail.stderr.wait_for("subscribed to test:ro")
        started = time.monotonic()
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert time.monotonic() - started < seconds(10)
        # The server said "going away", so tail reconnects instead of giving up.
        tail.stderr.wait_for("disconnected (code 1001")
        tail.popen.send_signal(signal.SIGINT)
        assert tail.wait(timeout=10) == 0
        assert "Traceback" not in "\n".join(tail.stderr.rest())
        assert "Traceback" not in "\n".join(server.stderr.rest())
    finally:
        server.kill()
        if tail is not None:
            tail.kill()

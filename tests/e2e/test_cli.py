"""The ``rtlink`` command, end to end: real processes talking over loopback, no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import jwt
import pytest

import rtlink
from rtlink.auth import TokenAuth
from rtlink.config import SERVE_OPTIONS
from rtlink.errors import AuthenticationError
from tests.support import free_port, run_server, seconds
from tests.support.redis_server import RedisServer, run_redis
from tests.test_publisher import KeyRecordingBackend

#: Run the CLI the way the console script does, without relying on it being installed.
CLI = [sys.executable, "-c", "import sys; from rtlink.cli import main; sys.exit(main())"]


def run_cli(*args: str, timeout: float = 15,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True,
                          timeout=seconds(timeout), env=environment() if env is None else env)


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


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without RTLINK_* settings (but the test time
    factor), plus ``variables``."""
    kept = {name: value for name, value in os.environ.items()
            if not name.startswith("RTLINK_") or name == "RTLINK_TEST_TIME_FACTOR"}
    return {**kept, **variables}


class Proc:
    """A CLI subprocess with its stdout and stderr collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env=environment() if env is None else env)
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
    def __init__(self, *options: str, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port() if port is None else port
        super().__init__("serve", "--port", str(self.port), "--log-level", "warning", *options,
                         env=env)
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
    assert "rtlink: connected via websocket (session " in "\n".join(tail.stderr.rest())


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


def test_tail_last_prints_the_latest_kept_messages_first(server: Server) -> None:
    positions = [publish(server.url, "test:last", n) for n in range(3)]
    result = run_cli("tail", server.url, "test:last", "--last", "2", "--count", "2",
                     "--format", "text")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{positions[1]} test:last 1",
                                          f"{positions[2]} test:last 2"]
    every = run_cli("tail", server.url, "test:last", "--last", "all", "--count", "3",
                    "--format", "text")
    assert every.stdout.splitlines()[0] == f"{positions[0]} test:last 0"
    wrong = run_cli("tail", server.url, "test:last", "--last", "0")
    assert wrong.returncode == 2 and "--last" in wrong.stderr


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


@pytest.mark.parametrize("command", [[], ["serve"], ["publish"], ["tail"], ["token"]])
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


# --- a Redis backend: several servers, and publishing without a server ------------------


def unique(prefix: str) -> str:
    """A channel name no other test (or earlier run on the session Redis) uses."""
    return f"{prefix}:{secrets.token_hex(6)}"


def backend_publish(backend: str, channel: str, data: Any, *options: str) -> str:
    """``rtlink publish --backend``; return the position it prints."""
    result = run_cli("publish", "--backend", backend, *options, channel, json.dumps(data))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    position = result.stdout.strip()
    epoch, _, offset = position.rpartition(":")
    assert epoch and offset.isdigit(), position
    return position


def split_position(position: str) -> tuple[str, int]:
    epoch, _, offset = position.rpartition(":")
    return epoch, int(offset)


@pytest.fixture(scope="module")
def redis_pair(redis_server: RedisServer) -> Iterator[tuple[Server, Server]]:
    """Two `rtlink serve` processes on different ports sharing the session Redis."""
    first = Server("--backend", redis_server.url)
    try:
        second = Server("--backend", redis_server.url)
        try:
            yield first, second
        finally:
            second.kill()
    finally:
        first.kill()


def test_serve_names_the_redis_backend(
    redis_server: RedisServer, redis_pair: tuple[Server, Server]
) -> None:
    first, second = redis_pair
    assert first.port != second.port
    for server in redis_pair:
        assert server.serving == (
            f"rtlink serving on http://127.0.0.1:{server.port}/ "
            f"(endpoint http://127.0.0.1:{server.port}/rt, backend {redis_server.url})"
        )


def test_servers_on_one_redis_are_one_cluster(
    redis_server: RedisServer, redis_pair: tuple[Server, Server]
) -> None:
    first, second = redis_pair
    channel = unique("test:cluster")
    tail = Proc("tail", first.url, channel, "--count", "2")
    try:
        tail.stderr.wait_for(f"subscribed to {channel}")
        via_server = publish(second.url, channel, {"via": "server B"})
        direct = backend_publish(redis_server.url, channel, {"via": "no server"})
        assert tail.wait() == 0
        lines = [json.loads(line) for line in tail.stdout.rest()]
    finally:
        tail.kill()
    assert lines == [
        {"channel": channel, "position": via_server, "data": {"via": "server B"}},
        {"channel": channel, "position": direct, "data": {"via": "no server"}},
    ]
    epoch, offset = split_position(via_server)
    assert (offset, split_position(direct)) == (1, (epoch, 2))
    assert "Traceback" not in "\n".join(tail.stderr.rest())


def test_backend_publish_with_the_same_key_publishes_once(
    redis_server: RedisServer, redis_pair: tuple[Server, Server]
) -> None:
    first, _ = redis_pair
    channel = unique("test:key")
    tail = Proc("tail", first.url, channel, "--count", "2", "--format", "text")
    try:
        tail.stderr.wait_for(f"subscribed to {channel}")
        once = backend_publish(redis_server.url, channel, "once", "--key", "order-1")
        again = backend_publish(redis_server.url, channel, "again", "--key", "order-1")
        other = backend_publish(redis_server.url, channel, "other", "--key", "order-2")
        assert tail.wait() == 0
        lines = tail.stdout.rest()
    finally:
        tail.kill()
    assert again == once
    epoch, offset = split_position(once)
    assert split_position(other) == (epoch, offset + 1)
    # The repeat delivered nothing: the second message anyone sees is the third publish.
    assert lines == [f"{once} {channel} once", f"{other} {channel} other"]


def test_backend_publish_applies_the_history_size(
    redis_server: RedisServer, redis_pair: tuple[Server, Server]
) -> None:
    first, _ = redis_pair
    channel = unique("test:size")
    positions = [backend_publish(redis_server.url, channel, n, "--history-size", "1")
                 for n in range(3)]
    # History holds only the last publication: resuming after the second one finds it...
    result = run_cli("tail", first.url, channel, "--since", positions[1], "--count", "1",
                     "--format", "text")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{positions[2]} {channel} 2"]
    assert f"resumed after {positions[1]}" in result.stderr
    # ... while resuming after the first one cannot work: what is kept is printed.
    tail = Proc("tail", first.url, channel, "--since", positions[0], "--count", "2",
                "--format", "text")
    try:
        tail.stderr.wait_for("WARNING: could not resume")
        later = backend_publish(redis_server.url, channel, 3, "--history-size", "1")
        assert tail.wait() == 0
        assert tail.stdout.rest() == [f"{positions[2]} {channel} 2", f"{later} {channel} 3"]
    finally:
        tail.kill()


@pytest.mark.redis
def test_redis_password_is_used_and_never_printed() -> None:
    with run_redis() as redis:
        assert redis.command("CONFIG", "SET", "requirepass", "s3cret-pw") == b"+OK\r\n"
        backend = f"redis://:s3cret-pw@127.0.0.1:{redis.port}/0"
        server = Server("--backend", backend)
        try:
            assert f"backend redis://:***@127.0.0.1:{redis.port}/0)" in server.serving
            assert "s3cret" not in server.serving
            channel = unique("test:auth")
            # Both through the server and straight into Redis: the password works.
            epoch, offset = split_position(publish(server.url, channel, 1))
            assert split_position(backend_publish(backend, channel, 2)) == (epoch, offset + 1)

            wrong = f"redis://:wrong-pw@127.0.0.1:{redis.port}/0"
            result = run_cli("publish", "--backend", wrong, "--timeout", "3", channel, "3")
            assert result.returncode == 1
            assert result.stdout == ""
            assert result.stderr.startswith("error: "), result.stderr
            assert f"127.0.0.1:{redis.port}/0" in result.stderr
            assert "wrong-pw" not in result.stderr
            assert "Traceback" not in result.stderr
        finally:
            server.kill()
        assert "s3cret" not in "\n".join(server.stdout.rest() + server.stderr.rest())


def test_serve_redacts_the_redis_password() -> None:
    # Nothing listens on the port: serve does not reach Redis before a client subscribes.
    port = free_port()
    server = Server("--backend", f"redis://admin:secret@127.0.0.1:{port}/0")
    try:
        assert server.serving.endswith(f"backend redis://admin:***@127.0.0.1:{port}/0)")
        assert "secret" not in server.serving
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        server.kill()
    assert "secret" not in "\n".join(server.stdout.rest() + server.stderr.rest())


async def test_publish_and_the_python_client_always_send_an_idempotency_key() -> None:
    # A publish whose answer is lost (a dropped connection, a request half-closed after
    # its body) may have been applied: each carries a key so that sending it again is
    # applied once (docs/http-api.md §5, protocol.md 6.3). Without --key: a random one.
    backend = KeyRecordingBackend()
    hub = rtlink.Hub(backend, channels={"*": rtlink.ChannelOptions(client_publish=True)})
    async with run_server(hub) as served:
        for _ in range(2):
            result = await asyncio.to_thread(run_cli, "publish", served.url, "keys", "1")
            assert result.returncode == 0, result.stderr
        async with rtlink.Client(served.url) as client:
            await client.publish("keys", 2)
    assert len(backend.keys) == 3 and len(set(backend.keys)) == 3
    assert all(re.fullmatch("[0-9a-f]{32}", key or "") for key in backend.keys), backend.keys


def raw_request(port: int, request: bytes) -> bytes:
    """Send one raw HTTP request and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds(5)) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_the_token_secret_is_the_files_bytes_without_the_final_line_ending(
        tmp_path: Path) -> None:
    # For services minting tokens in another language (operations.md, http-api.md §3.1):
    # the HS256 key is the file's bytes, UTF-8, but one final line ending; spaces and a
    # CR inside stay (the file used to be read with newlines translated).
    key = "  spaced\rsecret-0123456789abcdef0123456789  "
    (tmp_path / "secret").write_bytes(key.encode() + b"\r\n")
    server = Server("--token-secret-file", str(tmp_path / "secret"))
    try:
        def poll(secret: str) -> bytes:
            token = jwt.encode({"sub": "svc"}, secret.encode(), algorithm="HS256")
            return raw_request(server.port, (
                "GET /rt/poll?connect=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                f"Authorization: Bearer {token}\r\n\r\n").encode())

        assert b'"type":"welcome"' in poll(key)
        for other in (key.strip(), key + "\r\n", key.replace("\r", "\n")):
            assert poll(other).startswith(b"HTTP/1.1 401"), repr(other)
    finally:
        server.kill()


def test_serve_logs_no_credential_and_malformed_requests_in_one_line_each(
        tmp_path: Path) -> None:
    # Issue 20: a token refused because it came in a URL sat in full in the access log
    # (so did ?key= on /publish); each malformed request (anyone can send them) was an
    # ERROR with a traceback, which could quote an Authorization header.
    key = secrets.token_urlsafe(32)
    (tmp_path / "keys").write_text(key + "\n")
    (tmp_path / "secret").write_text("s" * 32 + "\n")
    server = Server("--log-level", "info", "--api-key-file", str(tmp_path / "keys"),
                    "--token-secret-file", str(tmp_path / "secret"))
    secrets_sent = ["TOKEN-1-SECRET", "TICKET-2-SECRET", "KEY-3-SECRET", "PCT-4-SECRET",
                    "BEARER-5-SECRET"]
    try:
        head = "Host: 127.0.0.1\r\nConnection: close\r\n"
        for target in ("/rt/sse?subs=%7B%7D&token=TOKEN-1-SECRET",
                       "/rt/poll?connect=1&ticket=TICKET-2-SECRET",
                       "/rt/poll?connect=1&%74oken=PCT-4-SECRET"):
            answer = raw_request(server.port, f"GET {target} HTTP/1.1\r\n{head}\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 401"), answer
        body = b'{"channel": "c", "data": 1}'
        answer = raw_request(server.port, (
            f"POST /rt/publish?key=KEY-3-SECRET HTTP/1.1\r\n{head}Authorization: Bearer {key}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        # Malformed: a control character in a header (aiohttp's parser refuses it).
        for _ in range(40):
            answer = raw_request(server.port, f"GET /rt/info HTTP/1.1\r\n{head}"
                                 "Authorization: Bearer BEARER-5-SECRET\x01\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.0 400"), answer
        raw_request(server.port, f"GET /rt/info?done=1 HTTP/1.1\r\n{head}\r\n".encode())
        server.stderr.wait_for("done=1")
    finally:
        server.kill()
    log = server.stderr.rest()
    text = "\n".join(log)
    assert not [secret for secret in secrets_sent if secret in text], text
    assert key not in text
    assert "token=[redacted]" in text and "ticket=[redacted]" in text
    assert "key=[redacted]" in text and "%74oken=[redacted]" in text
    assert "Traceback" not in text and " ERROR " not in text, text
    malformed = [line for line in log if "malformed HTTP request from 127.0.0.1" in line]
    assert malformed and all(" INFO aiohttp.server: " in line for line in malformed)
    assert malformed[0].endswith("refused with 400: Invalid header value char"), malformed
    assert len(malformed) <= 11  # at most 10 at once, then one every 10 s


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["http://127.0.0.1:9/rt", "test:x", "1", "--backend",
                      "redis://127.0.0.1:9/0"],
                     "give either the server's URL or --backend URL", id="both"),
        pytest.param(["--backend", "redis://127.0.0.1:9/0", "http://127.0.0.1:9/rt",
                      "test:x", "1"],
                     "give either the server's URL or --backend URL", id="both-backend-first"),
        pytest.param(["test:x", "1"], "give either the server's URL or --backend URL",
                     id="neither"),
        pytest.param(["--backend", "foo://x", "test:x", "1"], "redis://", id="unknown-scheme"),
        pytest.param(["--backend", "127.0.0.1:6379", "test:x", "1"], "redis://",
                     id="no-scheme"),
    ],
)
def test_publish_usage_errors(args: list[str], message: str) -> None:
    result = run_cli("publish", *args, timeout=10)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unknown_backend() -> None:
    result = run_cli("serve", "--port", str(free_port()), "--backend", "foo://x", timeout=10)
    assert result.returncode == 2
    assert "redis://" in result.stderr and "memory://" in result.stderr
    assert "Traceback" not in result.stderr


def test_backend_publish_without_redis_fails_cleanly() -> None:
    backend = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run_cli("publish", "--backend", backend, "--timeout", "3", "test:x", "1",
                     timeout=10)
    assert result.returncode == 1
    assert time.monotonic() - started < seconds(8)
    assert result.stdout == ""
    assert result.stderr.startswith("error: Redis at 127.0.0.1:"), result.stderr
    assert "unavailable" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr



def test_backend_publish_times_out_on_a_silent_redis() -> None:
    # Accepts connections (the kernel completes them) but never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = run_cli("publish", "--backend", f"redis://:hunter2@127.0.0.1:{port}/0",
                         "--timeout", "1", "test:x", "1", timeout=10)
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < seconds(6)
    assert result.stderr.startswith(
        f"error: redis://:***@127.0.0.1:{port}/0 did not answer within 1s"), result.stderr
    assert "retry with the same --key" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["serve", "publish"])
def test_invalid_backend_options_fail_cleanly(command: str) -> None:
    backend = "redis://:hunter2@127.0.0.1:9/0?meta_ttl=abc"
    args = ["--port", str(free_port())] if command == "serve" else ["test:x", "1"]
    result = run_cli(command, "--backend", backend, *args, timeout=10)
    assert result.returncode == 1
    assert "error: " in result.stderr and "invalid meta_ttl='abc'" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr

@pytest.mark.parametrize("command", ["serve", "publish"])
def test_help_mentions_backend(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--backend URL" in result.stdout
    assert "redis://HOST:PORT/DB" in result.stdout


def test_publish_accepts_options_between_url_and_channel(server: Server) -> None:
    result = run_cli("publish", server.url, "--key", "between", "test:between", "1")
    assert result.returncode == 0, result.stderr
    assert split_position(result.stdout.strip())[1] >= 1


# --- origins and limits -----------------------------------------------------------------


def http_get(url: str, origin: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` (with an ``Origin`` header if given): status, headers and body."""
    request = urllib.request.Request(url, headers={"Origin": origin} if origin else {})
    try:
        with urllib.request.urlopen(request, timeout=seconds(5)) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_serve_allows_its_own_origin_by_default(server: Server) -> None:
    status, headers, body = http_get(f"{server.url}/info", f"http://127.0.0.1:{server.port}")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == (
        f"http://127.0.0.1:{server.port}")
    info = json.loads(body)
    assert (info["publish_rate"], info["publish_burst"]) == (50.0, 100)
    assert http_get(f"{server.url}/info", "https://app.example.com")[0] == 403
    assert http_get(f"{server.url}/info")[0] == 200  # no Origin: not a browser


def test_serve_allowed_origins_and_publish_limits() -> None:
    server = Server("--allowed-origin", "https://app.example.com",
                    "--allowed-origin", "https://*.example.org",
                    "--publish-rate", "2.5", "--publish-burst", "7")
    try:
        for origin in ("https://app.example.com", "https://chat.example.org"):
            status, headers, body = http_get(f"{server.url}/info", origin)
            assert status == 200 and headers["Access-Control-Allow-Origin"] == origin
        info = json.loads(body)
        assert (info["publish_rate"], info["publish_burst"]) == (2.5, 7)
        for origin in (f"http://127.0.0.1:{server.port}", "https://example.org"):
            assert http_get(f"{server.url}/info", origin)[0] == 403
    finally:
        server.kill()
    off = Server("--publish-rate", "off")
    try:
        assert json.loads(http_get(f"{off.url}/info")[2])["publish_rate"] is None
    finally:
        off.kill()


def test_serve_max_connections_per_ip() -> None:
    server = Server("--max-connections-per-ip", "1")
    tail = Proc("tail", server.url, "test:conn")
    try:
        tail.stderr.wait_for("subscribed to test:conn")
        # The only place is taken: publish is told to try again later, until it gives up.
        result = run_cli("publish", "--timeout", "2", server.url, "test:conn", "1")
        assert result.returncode == 1
        assert "code 1013, too many connections from this address" in result.stderr
        tail.kill()
        publish(server.url, "test:conn", 2)  # the place is free again
    finally:
        tail.kill()
        server.kill()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--allowed-origin", "app.example.com", "not an origin"),
        ("--allowed-origin", "https://app.example.com/", "not an origin"),
        ("--publish-rate", "0", "argument --publish-rate: expected a number > 0 or \"off\", "
                                "got '0'"),
        ("--publish-rate", "fast", "expected a number > 0 or \"off\", got 'fast'"),
        ("--publish-burst", "0", "argument --publish-burst: expected an integer >= 1, got '0'"),
        ("--max-connections-per-ip", "0", "expected an integer >= 1 or \"off\", got '0'"),
    ],
)
def test_serve_refuses_invalid_limits(option: str, value: str, message: str) -> None:
    result = run_cli("serve", "--port", str(free_port()), option, value, timeout=10)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --- serve configured by a file, the environment and flags: over the wire --------------

SECRET = "a-token-secret-for-the-tests-" + "x" * 16
API_KEY = "publish-api-key-" + "k" * 8

RULES = """\
token_secret_file = "secret.txt"

[channels."news:*"]
history_size = 2

[channels."user:{user}:*"]
subscribe = "authenticated"

[channels."chat:*"]
client_publish = false
"""


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """`rtlink serve --config` with channel rules and a token secret (from files next to
    the config file); the directory of those files."""
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    config = tmp_path / "rtlink.toml"
    config.write_text(RULES)
    server = Server("--config", str(config))
    try:
        yield server, tmp_path
    finally:
        server.kill()


def mint(directory: Path, subject: str, *options: str) -> str:
    result = run_cli("token", subject, "--secret-file", str(directory / "secret.txt"), *options)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    return token


async def refused(client: rtlink.Client, channel: str) -> int:
    """The error code the server refuses a subscription to ``channel`` with."""
    with pytest.raises(rtlink.SubscribeError) as caught:
        async with client.subscribe(channel):
            pass
    return caught.value.code


async def test_serve_applies_the_channel_rules_of_the_config_file(
    configured: tuple[Server, Path]
) -> None:
    server, directory = configured
    async with rtlink.Client(server.url) as client:
        # Only the channels of the rules exist: "*" is gone.
        assert await refused(client, "other:x") == 404
        # news:* keeps 2 publications (client publishing is on server-wide by default).
        positions = [await client.publish("news:a", n) for n in range(4)]
        with pytest.raises(rtlink.PublishError) as caught:
            await client.publish("chat:lobby", "hi")  # its rule turned client_publish off
        assert caught.value.code == 403
    async with rtlink.Client(server.url) as client:
        async with client.subscribe("news:a", since=positions[1]) as sub:
            assert sub.recovered  # 3 and 4 are in history
            assert [(await anext(sub)).data for _ in range(2)] == [2, 3]
        async with client.subscribe("news:a", since=positions[0]) as sub:
            assert not sub.recovered  # 2 is gone: history_size = 2 applied


async def test_serve_with_a_token_secret_needs_tokens_where_rules_say(
    configured: tuple[Server, Path]
) -> None:
    server, directory = configured
    async with rtlink.Client(server.url) as anonymous:
        assert await refused(anonymous, "user:alice:inbox") == 401
        async with anonymous.subscribe("news:open"):  # subscribe = "anyone" still works
            pass
    async with rtlink.Client(server.url, token=mint(directory, "alice")) as alice:
        async with alice.subscribe("user:alice:inbox"):
            pass
        assert await refused(alice, "user:bob:inbox") == 403
    forged = rtlink.Client(server.url,
                           token=TokenAuth("another-secret-" + "y" * 32).mint("alice"))
    try:
        with pytest.raises(rtlink.ClientClosed) as caught:
            await forged.connect()
    finally:
        await forged.close()
    assert (caught.value.code, caught.value.reason) == (4500, "token signature is invalid")


def test_tail_and_publish_with_a_token(configured: tuple[Server, Path]) -> None:
    server, directory = configured
    token_file = directory / "alice.jwt"
    token_file.write_text(mint(directory, "alice") + "\n")
    anonymous = run_cli("tail", server.url, "user:alice:inbox", "--count", "1")
    assert anonymous.returncode == 1
    assert "error: cannot subscribe to user:alice:inbox" in anonymous.stderr
    assert "(code 401)" in anonymous.stderr
    tail = Proc("tail", server.url, "user:alice:inbox", "--count", "1",
                "--token-file", str(token_file))
    try:
        tail.stderr.wait_for("subscribed to user:alice:inbox")
        # publish takes the token from RTLINK_TOKEN (the rule lets clients publish).
        result = run_cli("publish", server.url, "user:alice:inbox", '"for alice"',
                         env=environment(RTLINK_TOKEN=token_file.read_text().strip()))
        assert result.returncode == 0, result.stderr
        assert tail.wait() == 0
        assert [json.loads(line)["data"] for line in tail.stdout.rest()] == ["for alice"]
    finally:
        tail.kill()
    missing = run_cli("tail", server.url, "user:alice:inbox", "--token-file",
                      str(directory / "nope.jwt"))
    assert missing.returncode == 2
    assert "--token-file: cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_token_refuses_a_short_secret_file(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("hunter2\n")
    for result in (run_cli("token", "alice", "--secret-file", str(short)),
                   run_cli("token", "alice", env=environment(RTLINK_TOKEN_SECRET_FILE=str(short)))):
        assert result.returncode == 2
        assert f"file {short} (" in result.stderr
        assert "expected a secret of at least 32 bytes" in result.stderr
        assert "got 7 bytes" in result.stderr  # the final newline is not part of it
        assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_token_verifies_with_the_secret(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    token = mint(tmp_path, "alice", "--ttl", "60", "--claim", "role=admin",
                 "--claim", 'rooms:=["a", "b"]', "--claim", "level:=3")
    identity = TokenAuth(SECRET).verify(token)
    assert identity.subject == "alice"
    assert identity.claims["role"] == "admin"
    assert identity.claims["rooms"] == ["a", "b"] and identity.claims["level"] == 3
    assert identity.expires_at is not None
    assert 0 < identity.expires_at - time.time() <= 61
    # The secret from the environment, as `rtlink serve` reads it.
    from_env = run_cli("token", "bob", env=environment(RTLINK_TOKEN_SECRET=SECRET))
    assert from_env.returncode == 0, from_env.stderr
    assert TokenAuth(SECRET).verify(from_env.stdout.strip()).subject == "bob"
    named = run_cli("token", "carol", "--secret-env", "MY_SECRET",
                    env=environment(MY_SECRET=SECRET))
    assert TokenAuth(SECRET).verify(named.stdout.strip()).subject == "carol"
    with pytest.raises(AuthenticationError):
        TokenAuth("another-secret-" + "y" * 32).verify(token)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["alice"], {}, "no token secret: give --secret-file FILE or --secret-env VAR, or set "
                        "RTLINK_TOKEN_SECRET"),
        (["alice"], {"RTLINK_TOKEN_SECRET": "hunter2"},
         "environment RTLINK_TOKEN_SECRET: expected a secret of at least 32 bytes"),
        (["alice", "--secret-env", "NOT_SET_ANYWHERE"], {},
         "--secret-env: the environment variable NOT_SET_ANYWHERE is not set"),
        (["alice", "--secret-file", "/no/such/file"], {},
         "--secret-file: cannot read '/no/such/file': No such file or directory"),
        (["alice", "--secret-env", "SHORT"], {"SHORT": "hunter2"},
         "environment SHORT: expected a secret of at least 32 bytes"),
        (["alice"], {"RTLINK_TOKEN_SECRET_FILE": "/no/such/file"},
         "environment RTLINK_TOKEN_SECRET_FILE: cannot read '/no/such/file'"),
        (["alice", "--claim", "role"], {"RTLINK_TOKEN_SECRET": SECRET},
         "--claim 'role': expected KEY=VALUE or KEY:=JSON"),
        (["alice", "--claim", "n:={"], {"RTLINK_TOKEN_SECRET": SECRET},
         "the value after := is not valid JSON"),
        (["alice", "--claim", "=x"], {"RTLINK_TOKEN_SECRET": SECRET}, "the key is empty"),
        (["alice", "--claim", "a=1", "--claim", "a=2"], {"RTLINK_TOKEN_SECRET": SECRET},
         "--claim a: given twice"),
        (["alice", "--claim", "sub=bob"], {"RTLINK_TOKEN_SECRET": SECRET},
         "claims may not set sub"),
        (["alice", "--ttl", "0"], {"RTLINK_TOKEN_SECRET": SECRET},
         "argument --ttl: expected a number > 0, got '0'"),
        ([""], {"RTLINK_TOKEN_SECRET": SECRET}, "subject must be a non-empty string"),
        (["alice", "--secret-file", "f", "--secret-env", "V"], {},
         "argument --secret-env: not allowed with argument --secret-file"),
    ],
)
def test_token_usage_errors(args: list[str], env: dict[str, str], message: str) -> None:
    result = run_cli("token", *args, env=environment(**env))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert message in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_serve_from_the_environment_over_the_wire(tmp_path: Path) -> None:
    env = environment(RTLINK_PATH="/live", RTLINK_TRANSPORTS="sse,longpoll",
                      RTLINK_API_KEYS=API_KEY, RTLINK_PUBLISH_BURST="9")
    server = Server(env=env)
    try:
        url = f"http://127.0.0.1:{server.port}/live"
        info = json.loads(http_get(f"{url}/info")[2])
        assert (info["transports"], info["publish_burst"]) == (["sse", "longpoll"], 9)
        assert http_get(f"{url}/ws")[0] == 404  # WebSocket is off
        # The publish API is mounted with the key from RTLINK_API_KEYS.
        assert http_post(f"{url}/publish", {"channel": "a:b", "data": 1}, API_KEY)[0] == 200
        assert http_post(f"{url}/publish", {"channel": "a:b", "data": 1},
                         "wrong-key-" + "w" * 10)[0] == 401
        # Metrics by default, at /metrics.
        status, headers, body = http_get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and b"rtlink_publishes_total" in body
    finally:
        server.kill()
    # Flags beat the same environment.
    bare = Server("--no-metrics", "--transports", "websocket", env=env)
    try:
        assert http_get(f"http://127.0.0.1:{bare.port}/metrics")[0] == 404
        url = f"http://127.0.0.1:{bare.port}/live"
        assert json.loads(http_get(f"{url}/info")[2])["transports"] == ["websocket"]
    finally:
        bare.kill()


def http_post(url: str, body: Any, key: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=seconds(5)) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_serve_config_error_exits_2_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[channels."news:*"]\nhistory_size = -1\n')
    port = free_port()
    result = run_cli("serve", "--port", str(port), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (f"rtlink serve: error: config file {config}: "
                             "channels.'news:*'.history_size: expected an integer >= 0, "
                             "got -1\n")
    assert result.stdout == ""


def test_serve_logs_one_line_per_event() -> None:
    port = free_port()
    server = Server("--log-level", "info", "--backend", f"redis://:hunter2@127.0.0.1:{port}/0",
                    "--allowed-origin", "https://app.example.com")
    try:
        startup = server.stderr.wait_for("rtlink.cli: serving ")
        http_get(f"http://127.0.0.1:{server.port}/")
        access = server.stderr.wait_for("aiohttp.access")
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        lines = server.stderr.rest()
    finally:
        server.kill()
    line_format = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) "
                             r"[\w.]+: \S")
    assert all(line_format.match(line) for line in lines), lines
    for detail in ("transports=websocket,sse,longpoll",
                   f"backend=redis://:***@127.0.0.1:{port}/0",
                   "origins=https://app.example.com", "auth=off", "metrics=/metrics",
                   "publish_api=off", "channels=*", f"port={server.port}"):
        assert f" {detail}" in startup, (detail, startup)
    assert 'request="GET / HTTP/1.1" status=200' in access and "remote=127.0.0.1" in access
    assert any("rtlink.cli: shutting down" in line and "signal=SIGTERM" in line
               for line in lines)
    assert lines[-1].endswith("INFO rtlink.cli: stopped")
    assert "hunter2" not in "\n".join(lines + server.stdout.rest())


# --- tail: the transport in use, reconnects and resumes on stderr -----------------------


def test_tail_reports_transport_reconnects_and_resumes() -> None:
    server = Server()
    port = server.port
    tail = Proc("tail", server.url, "test:restart")
    try:
        assert tail.stderr.wait_for("rtlink: connecting to").endswith("via websocket ...")
        assert tail.stderr.wait_for("rtlink: connected via ").startswith(
            "rtlink: connected via websocket (session ")
        tail.stderr.wait_for("rtlink: subscribed to test:restart at ")
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        tail.stderr.wait_for("rtlink: disconnected (code 1001, server shutting down); "
                             "reconnecting")
        server = Server(port=port)  # a new process: the memory backend lost history
        reconnected = tail.stderr.wait_for("rtlink: reconnected via ", timeout=40)
        assert "reconnection 1)" in reconnected
        tail.stderr.wait_for("WARNING: could not resume test:restart after ")
        position = publish(server.url, "test:restart", "after restart")
        line = tail.stdout.wait_for("after restart")
        assert json.loads(line)["position"] == position
    finally:
        tail.kill()
        server.kill()
    assert tail.stdout.lines == [line]  # stdout: messages only


def test_tail_reports_the_fallback_transport() -> None:
    server = Server("--transports", "sse")
    tail = Proc("tail", server.url, "test:fallback", "--transports", "websocket,sse")
    try:
        failed = tail.stderr.wait_for("rtlink: could not connect via websocket (")
        connected = tail.stderr.wait_for("rtlink: connected via ")
        assert connected.startswith("rtlink: connected via sse (session "), connected
        tail.stderr.wait_for("subscribed to test:fallback")
        # When the server is gone for good, tail says what it is trying.
        server.popen.send_signal(signal.SIGTERM)
        tail.stderr.wait_for("rtlink: disconnected (code 1001")
        tail.stderr.wait_for("rtlink: could not connect via ", timeout=20)
    finally:
        tail.kill()
        server.kill()
    assert "code" in failed or "Error" in failed, failed
    assert tail.stdout.rest() == []


def test_tail_usage_errors() -> None:
    result = run_cli("tail", "http://127.0.0.1:9/rt", "x:y", "--transports", "carrier-pigeon")
    assert result.returncode == 2
    assert "argument --transports: unknown transport 'carrier-pigeon'" in result.stderr


# --- --help -----------------------------------------------------------------------------


def test_serve_help_lists_every_option_with_its_environment_variable() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # undo the wrapping
    for option in SERVE_OPTIONS:
        assert option.flag in text, option.flag
        assert f"env {option.env}" in text, option.env
        if option.file_env:
            assert option.file_env in text and f"config {option.key}" in text
    assert text.count("default: ") >= len(SERVE_OPTIONS)
    for expected in ("--config FILE", "env RTLINK_CONFIG", "--print-config", "--no-metrics",
                     "--no-client-publish", "docs/operations.md", "examples:",
                     '[channels."news:*"]', "exit status:"):
        assert expected in text, expected


@pytest.mark.parametrize("command", ["publish", "tail", "token"])
def test_command_help_has_examples_and_environment(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout and "exit status:" in result.stdout
    expected = "RTLINK_TOKEN_SECRET" if command == "token" else "RTLINK_TOKEN"
    assert expected in result.stdout

"""A real Redis for the tests, started on a free loopback port with a temporary config.

Tests that need it use :func:`run_redis` (or the session-wide ``redis_server``
fixture of ``tests/conftest.py``), which calls :func:`require_redis`: skip when ``redis-server``
is missing, fail under ``CI=true`` (``.ci/test`` installs it there)::

    with run_redis() as redis:
        backend = RedisBackend(redis.url)
        redis.restart()                  # an empty Redis again, same port
        redis.kill_pubsub()              # CLIENT KILL TYPE pubsub

The server keeps nothing on disk (``save ""``, no AOF), listens only on 127.0.0.1,
runs in the foreground as a child of the test, and never touches a Redis the machine
may run (it never uses port 6379 unless the OS hands that out as free).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support import find_binary, free_port, missing_component, seconds

MISSING = "redis-server (Debian package redis-server) is not installed"


REDIS_SERVER = find_binary("redis-server")


def require_redis() -> str:
    """The redis-server binary; skip the test when missing (fail under ``CI=true``)."""
    if REDIS_SERVER is None:
        missing_component(MISSING)
    return REDIS_SERVER


class RedisServer:
    """A running redis-server: ``url``, ``port``, and fault injection.

    Its methods are synchronous (a start takes a few milliseconds), so one server can
    serve a whole session from a plain fixture and async tests alike.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """Run one command on a fresh connection and return the first line of the reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=seconds(5)) as sock:
            parts = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            sock.sendall(b"".join(parts))
            with sock.makefile("rb") as reply:
                return reply.readline()

    def kill_pubsub(self) -> int:
        """``CLIENT KILL TYPE pubsub``: drop every pub/sub connection; return how many."""
        reply = self.command("CLIENT", "KILL", "TYPE", "pubsub")
        assert reply.startswith(b":"), reply
        return int(reply[1:])

    def start(self) -> None:
        """Start on ``port`` (a free one the first time; the same one on a restart)."""
        fixed = bool(self.port)
        for _attempt in range(20):
            port = self.port or free_port()
            conf = self.directory / "redis.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
                f'save ""\nappendonly no\ndir {self.directory}\n'
                f"logfile {self.directory}/redis.log\n"
            )
            (self.directory / "redis.log").write_bytes(b"")
            self.process = subprocess.Popen(
                [self.binary, str(conf)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.port = port
            deadline = time.monotonic() + seconds(10)
            while self.process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if self.command("PING") == b"+PONG\r\n":
                        return
                time.sleep(0.01)
            self.stop()
            log = (self.directory / "redis.log").read_text(errors="replace")
            if "Address already in use" not in log:
                raise AssertionError(f"redis-server did not start:\n{log}")
            if not fixed:
                self.port = 0  # another process took the port: pick another
            time.sleep(0.1)
        raise AssertionError(f"redis-server could not listen on port {self.port}")

    def stop(self) -> None:
        """Kill the server (SIGKILL: nothing is saved, as in a crash)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.stop()
        self.start()


@contextlib.contextmanager
def run_redis() -> Iterator[RedisServer]:
    """Run a throw-away redis-server on a free loopback port (see the module doc)."""
    binary = require_redis()
    directory = Path(tempfile.mkdtemp(prefix="rtlink-redis-"))
    server = RedisServer(binary, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

"""Private nginx and redis-server instances for the examples that need them.

Each runs in the foreground as a child of the example, with its own configuration in
a temporary directory, listens only on a loopback port, and is stopped (and its
directory removed) when the example stops. Neither touches an nginx or a Redis the
machine may already run.

    async with redis_server() as redis_url: ...                 # redis://127.0.0.1:<port>/0
    async with nginx(site_config, port=8082, upstream_port=app_port): ...

The test suite has its own, fault-injecting versions (tests/support/proxy.py,
tests/support/redis_server.py); these stay small and depend on nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from ._launch import ExampleError

__all__ = ["nginx", "redis_server", "find_binary", "free_port"]

#: Seconds a service gets to start listening.
START_TIMEOUT = 10.0


def find_binary(name: str, package: str) -> str:
    """The path of program ``name`` (also looked for in /usr/sbin, which is not on the
    PATH of most users).

    Raises:
        ExampleError: not installed; the message names the Debian ``package``.
    """
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin"):
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    raise ExampleError(
        f"{name} is not installed. Install it (Debian/Ubuntu: sudo apt-get install {package}), "
        f"or let the run command do it: INSTALL_MISSING=true bash examples/run.sh ..."
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- nginx ------------------------------------------------------------------------------

# The frame around the example's own configuration (``site_config``, included
# unchanged inside ``server { }``): a single foreground process (no worker switching
# to another user, so it runs as root and not alike) whose pid file, logs and
# temporary files all live in ``prefix``.
_NGINX_FRAME = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream app {{
        server 127.0.0.1:{upstream_port};
    }}

    server {{
        listen {host}:{port};
        include "{site_config}";
    }}
}}
"""


@contextlib.asynccontextmanager
async def nginx(site_config: Path, *, port: int, upstream_port: int,
                host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run nginx on ``host``:``port`` (0: a free port) with ``site_config`` as its
    ``server { }`` block, in front of the app on ``upstream_port`` (the upstream
    ``app``); yield the port it listens on.

    Raises:
        ExampleError: nginx is not installed, or did not start (the port is in use,
            the configuration is invalid); the message includes nginx's error log.
    """
    binary = find_binary("nginx", "nginx-light")
    port = port or free_port()
    prefix = Path(tempfile.mkdtemp(prefix="rtlink-example-nginx-"))
    try:
        conf = prefix / "nginx.conf"
        conf.write_text(_NGINX_FRAME.format(prefix=prefix, host=host, port=port,
                                            upstream_port=upstream_port,
                                            site_config=site_config.resolve()))
        error_log = prefix / "error.log"
        process = await asyncio.create_subprocess_exec(
            binary, "-p", f"{prefix}/", "-e", str(error_log), "-c", str(conf),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def ready() -> bool:
            # The pid file is written once nginx has bound its sockets; checking it
            # means another program on the port is not mistaken for our nginx.
            pid_file = prefix / "nginx.pid"
            return (pid_file.exists() and pid_file.read_text().strip() == str(process.pid)
                    and await _accepts(host, port))

        try:
            await _wait_ready(process, ready, f"nginx on {host}:{port}", error_log)
            yield port
        finally:
            await _stop(process, signal.SIGQUIT)  # graceful: lets open requests finish
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


# --- redis-server -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    """Run an empty redis-server on a free loopback port, keeping nothing on disk;
    yield its URL (``redis://127.0.0.1:<port>/0``).

    Raises:
        ExampleError: redis-server is not installed, or did not start.
    """
    binary = find_binary("redis-server", "redis-server")
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="rtlink-example-redis-"))
    try:
        conf = directory / "redis.conf"
        log = directory / "redis.log"
        conf.write_text(f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\n'
                        f"dir {directory}\nlogfile {log}\n")
        process = await asyncio.create_subprocess_exec(
            binary, str(conf), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await _wait_ready(process, lambda: _answers_ping(port),
                              f"redis-server on 127.0.0.1:{port}", log)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            await _stop(process, signal.SIGTERM)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- helpers ----------------------------------------------------------------------------


async def _wait_ready(process: asyncio.subprocess.Process, ready: Callable[[], Awaitable[bool]],
                      what: str, log: Path) -> None:
    """Wait until ``ready()``; raise :class:`ExampleError` with the log if the process
    exits or takes too long."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while process.returncode is None and loop.time() < deadline:
        if await ready():
            return
        with contextlib.suppress(TimeoutError):  # or until it exits (a bad config)
            await asyncio.wait_for(process.wait(), 0.05)
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    hint = "; choose another port with --port" if "Address already in use" in text else ""
    raise ExampleError(f"{what} did not start (exit status {process.returncode}){hint}:\n"
                       f"{text}")


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _answers_ping(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")  # an inline command: no client library needed
        return await reader.readline() == b"+PONG\r\n"
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _stop(process: asyncio.subprocess.Process, signum: int) -> None:
    """Stop ``process`` with ``signum``; SIGKILL if it has not exited within 3 s."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
    try:
        await asyncio.wait_for(process.wait(), 3)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

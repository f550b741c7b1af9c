"""A real nginx in front of a test server, configured like the proxies rtlink must survive.

Tests that need it call :func:`require_nginx` (skip when nginx is missing; under
``CI=true`` a failure instead, and ``.ci/test`` installs it) and then::

    async with run_nginx(server.port, "strip_upgrade") as proxy:
        url = proxy.url("/rt")

Each :func:`run_nginx` starts its own nginx (Debian package ``nginx-light``) with a
temporary prefix: its own config, pid file, logs and temp directories, listening only
on a free port of 127.0.0.1, in the foreground (``daemon off``) as a child process of
the test, and stops it afterwards. It never touches an nginx the machine may run.

Modes (every path is proxied to ``http://127.0.0.1:<upstream_port>``, or, given several
ports, to an ``upstream`` group of them balanced round robin with no stickiness: each
request, each long poll included, goes to the next node; a node that refuses
connections is skipped):

``"transparent"``
    A correct configuration for rtlink: WebSocket upgrades passed through, streamed
    responses not buffered, a long read timeout.
``"strip_upgrade"``
    A proxy that drops the ``Upgrade`` header: a WebSocket handshake reaches the
    upstream as a plain GET and fails. Default buffering, which still forwards each
    streamed (SSE) event as it comes.
``"strip_upgrade_buffering"``
    Strips ``Upgrade`` as above and also holds every streamed response, headers
    included, until it ends (up to 1 MB of gzip output), whatever the client's
    ``Accept-Encoding``, as compressing corporate proxies do (gzip without flushing).
    Two nginx hops inside, the inner one over a Unix socket in the temp dir.
``"short_read_timeout"``
    Transparent, but cuts a response that stays idle for 2 s (``504`` when nothing
    was sent yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tests.support import find_binary, free_port, missing_component, seconds

NGINX = find_binary("nginx")

MISSING = "nginx (Debian package nginx-light) is not installed"

MODES = ("transparent", "strip_upgrade", "strip_upgrade_buffering", "short_read_timeout")


def require_nginx() -> str:
    """The nginx binary; skip the test when missing (fail under ``CI=true``)."""
    if NGINX is None:
        missing_component(MISSING)
    return NGINX


_TRANSPARENT = """
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 3600s;
"""

_STRIP_UPGRADE = """
            proxy_http_version 1.1;
            proxy_set_header Upgrade "";
            proxy_set_header Connection "";
"""

# Holding streamed events (checked in tests/e2e/test_proxy_harness.py). nginx's gzip
# filter flushes its deflate stream only when a buffer comes marked "flush", which
# happens with ``proxy_buffering off``; with buffering on, data read from the
# upstream is passed on unmarked, so events stay inside zlib and gzip's output buffer
# until the response ends -- the response headers too, as nothing reaches the write
# filter. Two limits had to be lifted, found by experiment with nginx 1.22:
#
# * The default ``gzip_buffers`` (32 4k) let through the first ~50 KB of events that
#   compress badly (random hex): once a 4k output buffer is full it is sent.
#   ``gzip_buffers 1 1m`` holds up to 1 MB of compressed output (256 KB of random
#   hex, the whole response in the experiment). ``postpone_output`` does not help:
#   alone (no gzip) it held nothing.
# * ``X-Accel-Buffering: no``, which SSE servers send, turns buffering off per
#   response (so gzip flushes every event): hence ``proxy_ignore_headers``.
#
# gzip only compresses for a client that sends ``Accept-Encoding: gzip``; one that
# sends ``identity`` (or nothing) would get its events at once. To hold events for
# every client, the proxy has two hops: the one the client talks to asks the inner
# one for gzip and un-gzips for clients that do not accept it (``gunzip on``); the
# inner one compresses and holds.
_BUFFERING_OUTER = _STRIP_UPGRADE + """
            proxy_set_header Accept-Encoding gzip;
            gunzip on;
"""
_BUFFERING_INNER = _STRIP_UPGRADE + """
            gzip on;
            gzip_types text/event-stream application/json application/msgpack
                       application/x-ndjson;
            gzip_min_length 0;
            gzip_proxied any;
            gzip_buffers 1 1m;
            proxy_ignore_headers X-Accel-Buffering;
            proxy_buffering on;
"""

_SHORT_READ_TIMEOUT = _TRANSPARENT.replace("3600s", "2s")

_LOCATIONS = {
    "transparent": _TRANSPARENT,
    "strip_upgrade": _STRIP_UPGRADE,
    "strip_upgrade_buffering": _BUFFERING_OUTER,
    "short_read_timeout": _SHORT_READ_TIMEOUT,
}


def _server(listen: str, upstream: str, directives: str, extra: str) -> str:
    return f"""
    server {{
        listen {listen};
        server_name localhost;

        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
{directives}
            # extra:
{extra}
        }}
    }}
"""


def _config(prefix: Path, port: int, upstream_ports: Sequence[int], mode: str,
            extra: str) -> str:
    listen = f"127.0.0.1:{port}"
    group = ""
    if len(upstream_ports) == 1:
        upstream = f"http://127.0.0.1:{upstream_ports[0]}"
    else:
        # What docs/operations.md recommends in front of several nodes: plain round
        # robin. A failed node is skipped for fail_timeout (short here for tests).
        servers = "".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;\n"
                          for p in upstream_ports)
        group = f"    upstream rtlink_nodes {{\n{servers}    }}\n"
        upstream = "http://rtlink_nodes"
    if mode == "strip_upgrade_buffering":
        # ``extra`` goes to both hops: a timeout, say, must apply to both.
        inner = f"unix:{prefix}/held.sock"
        servers = (_server(listen, f"http://{inner}:", _LOCATIONS[mode], extra)
                   + _server(inner, upstream, _BUFFERING_INNER, extra))
    else:
        servers = _server(listen, upstream, _LOCATIONS[mode], extra)
    return nginx_config(prefix, f"""
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
{group}{servers}""")


def nginx_config(prefix: Path, http_block: str, worker_connections: int = 256) -> str:
    """A whole nginx.conf around ``http_block`` (the inside of ``http { }``): one
    process in the foreground whose pid file, error log, access log (``METHOD URI
    STATUS UPSTREAM-ADDRESS`` per request, see :attr:`Proxy.access_log`) and temporary
    files all live in ``prefix``."""
    # Single process (master_process off): no worker to switch to another user, so the
    # same config works as root and not, and SIGQUIT/SIGKILL reach the only process.
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;

events {{
    worker_connections {worker_connections};
}}

http {{
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log {prefix}/access.log upstream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
{http_block}
}}
"""


class Proxy:
    """A running nginx: ``port``, ``url(path)``, and its ``error_log`` text."""

    def __init__(self, port: int, prefix: Path, mode: str) -> None:
        self.port = port
        self.prefix = prefix
        self.mode = mode

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def error_log(self) -> str:
        """What nginx wrote to its error log so far."""
        try:
            return (self.prefix / "error.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def access_log(self) -> str:
        """What nginx logged so far: ``METHOD URI STATUS UPSTREAM-ADDRESS`` per request."""
        try:
            return (self.prefix / "access.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _ready(process: asyncio.subprocess.Process, port: int, prefix: Path) -> bool:
    # nginx writes its pid file only once it has bound its sockets; checking it too
    # means an unrelated listener that grabbed the port is not mistaken for nginx.
    try:
        pid = (prefix / "nginx.pid").read_text().strip()
    except FileNotFoundError:
        return False
    return (process.returncode is None and pid == str(process.pid)
            and await _accepts(port))


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
    try:
        await asyncio.wait_for(process.wait(), seconds(3))
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def run_nginx(upstream_port: int | Sequence[int], mode: str,
                    extra: str = "") -> AsyncIterator[Proxy]:
    """Run nginx on a free loopback port in front of ``upstream_port`` (see module doc);
    several ports are balanced round robin.

    ``extra`` is inserted into the ``location /`` block after the mode's directives
    (in ``"strip_upgrade_buffering"``, into that of both hops).
    """
    if mode not in _LOCATIONS:
        raise ValueError(f"unknown nginx mode {mode!r}; one of {', '.join(MODES)}")
    nginx = require_nginx()
    upstream_ports = [upstream_port] if isinstance(upstream_port, int) else list(upstream_port)
    prefix = Path(tempfile.mkdtemp(prefix="rtlink-nginx-"))
    process: asyncio.subprocess.Process | None = None
    try:
        for _attempt in range(5):  # another process may grab the free port first
            port = free_port()
            conf = prefix / "nginx.conf"
            conf.write_text(_config(prefix, port, upstream_ports, mode, extra))
            (prefix / "error.log").write_bytes(b"")
            (prefix / "nginx.pid").unlink(missing_ok=True)
            with open(prefix / "stderr.log", "wb") as stderr:  # before error_log applies
                process = await asyncio.create_subprocess_exec(
                    nginx, "-p", f"{prefix}/", "-c", str(conf),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=stderr,
                )
            proxy = Proxy(port, prefix, mode)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds(10)
            while process.returncode is None and loop.time() < deadline:
                if await _ready(process, port, prefix):
                    break
                with contextlib.suppress(TimeoutError):  # or nginx exits (bad config)
                    await asyncio.wait_for(process.wait(), 0.02)
            if await _ready(process, port, prefix):
                break
            await _stop(process)
            log = proxy.error_log + (prefix / "stderr.log").read_text(errors="replace")
            if "Address already in use" not in log:
                raise AssertionError(
                    f"nginx ({mode}) did not start listening on 127.0.0.1:{port} "
                    f"(exit code {process.returncode}); error log:\n{log}"
                )
        else:
            raise AssertionError(f"nginx ({mode}): no free port after 5 attempts")
        try:
            yield proxy
        finally:
            await _stop(process)
    finally:
        if process is not None and process.returncode is None:
            await _stop(process)
        shutil.rmtree(prefix, ignore_errors=True)

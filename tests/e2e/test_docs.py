"""The operations guide and the migration note stay true: their configurations run. And
the protocol documents stay linked right: every section the repository cites
("protocol.md 8.7", "http-api.md §5") exists, and every link between documents
reaches its heading.

docs/operations.md shows proxy configurations (nginx, HAProxy, Caddy), a middleware,
and claims about deploys; docs/migrating-from-socketio.md shows an rtlink server.
These tests read the code blocks from the documents themselves, replace only what
must change on a test machine (addresses, ports, certificate paths; each replacement
must find its text, so an edited document fails here rather than going untested),
and run them: real proxies in front of real ``rtlink serve`` processes on a real Redis,
reached over TLS by the Python client.

nginx, HAProxy and Caddy are skipped when missing (under ``CI=true`` they fail
instead), like every component of the suite; so is ``openssl``, which makes the test
certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import rtlink
from rtlink.backends import create_backend
from rtlink.client import forget_transports
from rtlink.config import SERVE_OPTIONS
from tests.support import (
    FAST_RECONNECT,
    ROOT,
    collect,
    eventually,
    find_binary,
    free_port,
    missing_component,
    seconds,
)
from tests.support.docs import DOCS, MIGRATION, OPERATIONS, code_blocks, replaced, the_block
from tests.support.proxy import Proxy as NginxProxy
from tests.support.proxy import nginx_config, require_nginx
from tests.support.redis_server import RedisServer, run_cluster, run_redis, run_sentinel

pytestmark = [pytest.mark.redis, pytest.mark.proxy]


#: Run the CLI as the console script does, without relying on it being installed.
CLI = [sys.executable, "-c", "import sys; from rtlink.cli import main; sys.exit(main())"]

#: The node addresses the documents use, replaced by the test nodes' ports.
DOC_NODES = ("10.0.0.11:8080", "10.0.0.12:8080")

HAPROXY = find_binary("haproxy")
CADDY = find_binary("caddy")
OPENSSL = find_binary("openssl")


# --- components -----------------------------------------------------------------------------


def require(binary: str | None, message: str) -> str:
    if binary is None:
        missing_component(message)
    return binary


@pytest.fixture(scope="module")
def certificate() -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key)."""
    openssl = require(OPENSSL, "openssl (Debian package openssl) is not installed")
    with tempfile.TemporaryDirectory(prefix="rtlink-tls-") as directory:
        cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30,
        )
        yield cert, key


def client_session(cert: Path, origin: str | None = None,
                   local_address: str | None = None) -> aiohttp.ClientSession:
    """A session trusting the test certificate, sending ``Origin`` like a browser page
    would, optionally from another loopback address."""
    context = ssl.create_default_context(cafile=str(cert))
    connector = aiohttp.TCPConnector(
        ssl=context, local_addr=(local_address, 0) if local_address else None)
    return aiohttp.ClientSession(connector=connector,
                                 headers={"Origin": origin} if origin else None)


class Node:
    """An ``rtlink serve`` process; restartable on the same port."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Node:
        self.process = subprocess.Popen(
            [*CLI, "serve", "--port", str(self.port), "--log-level", "warning", *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(seconds(20)):
                raise AssertionError("rtlink serve did not start in time")
        line = self.process.stdout.readline()
        found = re.search(r"rtlink serving on http://127\.0\.0\.1:(\d+)/", line)
        assert found, f"rtlink serve did not start: {line!r}"
        self.port = int(found[1])
        return self

    def stop(self) -> None:
        """SIGTERM, as systemd stops a service; wait for the exit."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(seconds(15)) == 0, "rtlink serve did not exit with 0"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def nodes(*args: str, count: int = 2) -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for _ in range(count):
            started.append(Node(*args).start())
        yield started
    finally:
        for node in started:
            node.stop()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running(command: list[str], port: int, log: Path,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run a proxy in the foreground until it listens on ``port``; stop it after."""
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + seconds(10)
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{command[0]} did not start (exit code "
                                     f"{process.poll()}):\n{log.read_text(errors='replace')}")
            time.sleep(0.02)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(seconds(5))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Proxy(NginxProxy):
    """A documented proxy configuration, running over TLS: its URLs and its access log
    (``access.log`` in its directory, as for the test nginx)."""

    def __init__(self, https_port: int, http_port: int, directory: Path, kind: str) -> None:
        super().__init__(https_port, directory, kind)
        self.https_port = https_port
        self.http_port = http_port

    def url(self, path: str = "/rt") -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    @property
    def origin(self) -> str:
        """The origin of a page served by this proxy."""
        return f"https://127.0.0.1:{self.https_port}"


def nginx_replacements(node_ports: list[int], https_port: int, http_port: int,
                       cert: Path, key: Path) -> dict[str, str]:
    return {
        **{doc: f"127.0.0.1:{port}" for doc, port in zip(DOC_NODES, node_ports, strict=True)},
        "fail_timeout=5s": "fail_timeout=1s",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/ssl/rt.example.com/fullchain.pem": str(cert),
        "/etc/ssl/rt.example.com/privkey.pem": str(key),
    }


@contextlib.contextmanager
def documented_proxy(kind: str, node_ports: list[int],
                     certificate: tuple[Path, Path]) -> Iterator[Proxy]:
    """Run the ``kind`` configuration of docs/operations.md in front of the nodes."""
    cert, key = certificate
    with tempfile.TemporaryDirectory(prefix=f"rtlink-docs-{kind}-") as name:
        directory = Path(name)
        https_port, http_port = free_port(), free_port()
        env = None
        if kind == "nginx":
            block = replaced(the_block(OPERATIONS, "nginx", "upstream rtlink_nodes"),
                             nginx_replacements(node_ports, https_port, http_port, cert, key))
            config = directory / "nginx.conf"
            config.write_text(nginx_config(directory, block, worker_connections=1024))
            command = [require_nginx(), "-p", f"{directory}/", "-c", str(config)]
        elif kind == "haproxy":
            pem = directory / "both.pem"
            pem.write_text(cert.read_text() + key.read_text())
            block = replaced(the_block(OPERATIONS, "haproxy"), {
                **{doc: f"127.0.0.1:{port}" for doc, port in zip(DOC_NODES, node_ports,
                                                                 strict=True)},
                "bind :443 ssl crt /etc/haproxy/certs/rt.example.com.pem":
                    f"bind 127.0.0.1:{https_port} ssl crt {pem}",
                "bind :80\n": f"bind 127.0.0.1:{http_port}\n",
            })
            config = directory / "haproxy.cfg"
            config.write_text(block)
            haproxy = require(HAPROXY, "haproxy (Debian package haproxy) is not installed")
            subprocess.run([haproxy, "-c", "-q", "-f", str(config)], check=True, timeout=30)
            command = [haproxy, "-db", "-f", str(config)]
        else:
            block = replaced(the_block(OPERATIONS, "caddyfile"), {
                **{doc: f"127.0.0.1:{port}" for doc, port in zip(DOC_NODES, node_ports,
                                                                 strict=True)},
                "rt.example.com {": f"https://127.0.0.1:{https_port} {{\n\ttls {cert} {key}",
            })
            config = directory / "Caddyfile"
            # No admin endpoint, no listener on port 80: nothing outside the test.
            config.write_text(f"{{\n\tadmin off\n\tauto_https disable_redirects\n"
                              f"\thttp_port {http_port}\n}}\n\n{block}")
            caddy = require(CADDY, "caddy (Debian package caddy) is not installed")
            env = {**os.environ, "HOME": name, "XDG_DATA_HOME": name, "XDG_CONFIG_HOME": name}
            subprocess.run([caddy, "validate", "--adapter", "caddyfile", "--config",
                            str(config)], check=True, capture_output=True, env=env, timeout=30)
            command = [caddy, "run", "--adapter", "caddyfile", "--config", str(config)]
        with running(command, https_port, directory / "proxy.log", env):
            yield Proxy(https_port, http_port, directory, kind)


# --- the documents' code is valid ------------------------------------------------------------


def test_every_nginx_block_of_the_operations_guide_passes_nginx_t(
        certificate: tuple[Path, Path], tmp_path: Path) -> None:
    nginx = require_nginx()
    blocks = code_blocks(OPERATIONS, "nginx")
    assert blocks, "no nginx block in docs/operations.md"
    cert, key = certificate
    for number, block in enumerate(blocks):
        prefix = tmp_path / f"block{number}"
        prefix.mkdir()
        block = block.replace("/etc/ssl/rt.example.com/fullchain.pem", str(cert))
        block = block.replace("/etc/ssl/rt.example.com/privkey.pem", str(key))
        config = prefix / "nginx.conf"
        config.write_text(nginx_config(prefix, block, worker_connections=1024))
        result = subprocess.run([nginx, "-t", "-p", f"{prefix}/", "-c", str(config)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"nginx block {number}:\n{block}\n{result.stderr}"


def _options_table() -> str:
    """The options table of docs/operations.md ("Configuring `rtlink serve`")."""
    text = OPERATIONS.read_text().split("## Configuring `rtlink serve`", 1)[1]
    return text.split("\n## ", 1)[0]


def _serve_flags_mentioned(text: str) -> set[str]:
    """Flags a document gives to ``rtlink serve``: on the line (code span or code line)
    of each ``rtlink serve`` command."""
    return {flag for command in re.findall(r"rtlink serve[^`\n]*", text)
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", command)}


def test_every_rtlink_serve_flag_in_the_docs_exists() -> None:
    result = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    known = set(re.findall(r"--[a-z][a-z-]*", result.stdout))
    in_table = {flag for row in re.findall(r"^\|[^|\n]*\|([^|\n]*)\|", _options_table(), re.M)
                for flag in re.findall(r"--[a-z][a-z-]*", row)}
    assert len(in_table) > 15, "the options table lost its flag column"
    for path in (OPERATIONS, MIGRATION):
        unknown = sorted(_serve_flags_mentioned(path.read_text()) - known)
        assert not unknown, f"{path.name} gives rtlink serve flags that do not exist: {unknown}"
    assert not sorted(in_table - known), f"the options table: {sorted(in_table - known)}"


def test_the_config_file_example_is_read_by_rtlink_serve(tmp_path: Path) -> None:
    secret = tmp_path / "token-secret"
    secret.write_text(secrets.token_urlsafe(32))
    config = tmp_path / "rtlink.toml"
    config.write_text(replaced(the_block(OPERATIONS, "toml", "[channels."),
                               {"/run/secrets/rtlink-token": str(secret)}))
    result = subprocess.run([*CLI, "serve", "--config", str(config), "--print-config"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    for line in ('backend = "redis://redis.internal:6379/0"', '[channels."news:*"]',
                 '[channels."chat:*"]', '[channels."user:{user}:*"]'):
        assert line in result.stdout, result.stdout


def test_the_options_table_lists_every_option_of_rtlink_serve() -> None:
    table = _options_table()
    for option in SERVE_OPTIONS:
        names = [option.flag, option.env, f"`{option.key}`"]
        if option.file_env:
            names.append(option.file_env)
        if option.off_flag:
            names.append(option.off_flag)
        missing = [name for name in names if name not in table]
        assert not missing, f"option {option.name}: {missing} not in the table"


# --- the proxies, over TLS -------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    key = secrets.token_urlsafe(32)
    path = tmp_path_factory.mktemp("keys") / "api-keys.txt"
    path.write_text(key + "\n")
    return key, path


@pytest.fixture(scope="module")
def two_nodes(redis_server: RedisServer, api_key: tuple[str, Path]) -> Iterator[list[Node]]:
    """Two ``rtlink serve`` nodes on the session's Redis, with a publish API key."""
    with nodes("--backend", redis_server.url, "--history-size", "1000",
               "--api-key-file", str(api_key[1])) as started:
        yield started


async def _round_trip(url: str, session: aiohttp.ClientSession, transports: list[str],
                      channel: str) -> str:
    """Connect, subscribe, publish through the same client, receive it: the transport."""
    client = rtlink.Client(url, transports=transports, session=session, **FAST_RECONNECT)
    try:
        async with asyncio.timeout(seconds(10)):
            await client.connect()
    except TimeoutError:
        await client.close()
        raise AssertionError(f"no connection on {transports} through the proxy") from None
    async with client:
        async with client.subscribe(channel) as subscription:
            await subscription.wait_subscribed()
            position = await client.publish(channel, {"via": transports})
            (message,) = await collect(subscription, 1)
            assert message.position == position
            assert client.transport is not None
            return client.transport


@pytest.mark.parametrize("kind", ["nginx", "haproxy", "caddy"])
async def test_the_documented_proxy_serves_every_transport_over_tls(
        kind: str, two_nodes: list[Node], certificate: tuple[Path, Path]) -> None:
    """Each transport through the proxy, from a page of the proxy's own origin (allowed:
    the origin check compares host and port, not the scheme) and from another
    origin (refused)."""
    cert = certificate[0]
    run = secrets.token_hex(4)
    with documented_proxy(kind, [node.port for node in two_nodes], certificate) as proxy:
        async with client_session(cert, proxy.origin) as page:
            for transport in ("websocket", "sse", "longpoll"):
                used = await _round_trip(proxy.url(), page, [transport],
                                         f"docs:{kind}:{transport}:{run}")
                assert used == transport
            forget_transports()  # start from the top of the list, as a new page would
            best = await _round_trip(proxy.url(), page, ["websocket", "sse", "longpoll"],
                                     f"docs:{kind}:all:{run}")
            assert best == "websocket"
        async with client_session(cert, "https://elsewhere.example") as foreign:
            client = rtlink.Client(proxy.url(), session=foreign, **FAST_RECONNECT)
            with pytest.raises(rtlink.ClientClosed) as refused:
                await asyncio.wait_for(client.connect(), seconds(10))
            assert refused.value.code == rtlink.CloseCode.FORBIDDEN
            await client.close()


async def test_the_nginx_example_redirects_http_and_keeps_the_publish_api_internal(
        two_nodes: list[Node], certificate: tuple[Path, Path],
        api_key: tuple[str, Path]) -> None:
    with documented_proxy("nginx", [node.port for node in two_nodes], certificate) as proxy:
        async with aiohttp.ClientSession() as plain:
            async with plain.get(f"http://127.0.0.1:{proxy.http_port}/rt/info",
                                 allow_redirects=False) as answer:
                assert answer.status == 301
                assert answer.headers["Location"].startswith("https://")
        async with client_session(certificate[0]) as service:
            body = {"channel": "docs:publish-api", "data": 1}
            headers = {"Authorization": f"Bearer {api_key[0]}"}
            # Only 10.0.0.0/8 may reach it through the proxy; this test comes from 127.0.0.1.
            async with service.post(proxy.url("/rt/publish"), json=body,
                                    headers=headers) as answer:
                assert answer.status == 403
                assert "nginx" in await answer.text()
            # The nodes themselves serve it (the proxy's rule is what refused).
            node_url = f"http://127.0.0.1:{two_nodes[0].port}/rt/publish"
            async with service.post(node_url, json=body, headers=headers) as answer:
                assert answer.status == 200, await answer.text()


# --- no sticky sessions, deploys ---------------------------------------------------------------


def _served_by(access_log: str, uri: str) -> set[str]:
    """The nodes (``127.0.0.1:port``) that served successful requests for ``uri``."""
    return {fields[3] for fields in (line.split() for line in access_log.splitlines())
            if len(fields) == 4 and fields[1] == uri and fields[2] == "200"}


async def test_polls_and_sends_of_one_client_land_on_both_nodes(
        two_nodes: list[Node], certificate: tuple[Path, Path]) -> None:
    """The guide's "no sticky sessions", sends included: a long-polling client behind
    the round-robin nginx publishes and receives; its polls and sends go to both
    nodes, and every publish is acknowledged and delivered once, in order."""
    channel = f"docs:nosticky:{secrets.token_hex(4)}"
    with documented_proxy("nginx", [node.port for node in two_nodes], certificate) as proxy:
        async with client_session(certificate[0]) as session, \
                rtlink.Client(proxy.url(), transports=["longpoll"], session=session,
                              **FAST_RECONNECT) as client:
            async with client.subscribe(channel) as subscription:
                await subscription.wait_subscribed()
                positions = [await client.publish(channel, n, key=f"{channel}:{n}")
                             for n in range(12)]
                received = await collect(subscription, 12)
            assert [m.data for m in received] == list(range(12))
            assert [m.position for m in received] == positions
        # Round robin over two nodes with about one send per poll may well send every
        # send to one node and every poll to the other: that must work too.
        sends = _served_by(proxy.access_log, "/rt/send")
        polls = _served_by(proxy.access_log, "/rt/poll")
        assert sends and polls
        assert sends | polls == {f"127.0.0.1:{node.port}" for node in two_nodes}


async def test_a_rolling_restart_behind_nginx_loses_and_repeats_nothing(
        redis_server: RedisServer, certificate: tuple[Path, Path]) -> None:
    """Both nodes restarted in turn (SIGTERM, start, wait for the balancer) while a
    Publisher and a long-polling client publish: WebSocket, SSE and long-polling
    subscribers get every publication once, in order, and never `recovered: false`."""
    channel = f"docs:deploy:{secrets.token_hex(4)}"
    with nodes("--backend", redis_server.url, "--history-size", "1000") as (a, b), \
            documented_proxy("nginx", [a.port, b.port], certificate) as proxy:
        async with contextlib.AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(client_session(certificate[0]))
                        for _ in range(3)]
            clients: dict[str, rtlink.Client] = {}
            closes: dict[str, list[int]] = {}
            for transport, session in zip(["websocket", "sse", "longpoll"], sessions,
                                          strict=True):
                client = rtlink.Client(proxy.url(), transports=[transport], session=session,
                                       **FAST_RECONNECT)
                closes[transport] = []
                client.on("state", lambda change, t=transport: closes[t].append(change.code)
                          if change.code is not None else None)
                clients[transport] = await stack.enter_async_context(client)
            subscriptions = {t: c.subscribe(channel) for t, c in clients.items()}
            for subscription in subscriptions.values():
                await subscription.wait_subscribed()
            publisher = await stack.enter_async_context(rtlink.Publisher(
                redis_server.url,
                channels={"*": rtlink.ChannelOptions(history_size=1000)}))
            published: list[rtlink.Position] = []
            acknowledged: list[rtlink.Position] = []
            stop = asyncio.Event()

            async def from_publisher() -> None:
                while not stop.is_set():
                    n = len(published)
                    published.append(await publisher.publish(channel, n, key=f"{channel}:p{n}"))
                    await asyncio.sleep(0.02)

            async def from_client() -> None:
                while not stop.is_set():
                    n = len(acknowledged)
                    acknowledged.append(await clients["longpoll"].publish(
                        channel, f"c{n}", key=f"{channel}:c{n}"))
                    await asyncio.sleep(0.1)

            tasks = [asyncio.create_task(from_publisher()), asyncio.create_task(from_client())]
            try:
                await asyncio.sleep(0.5)
                for node in (a, b):
                    await asyncio.to_thread(node.restart)
                    await asyncio.sleep(1.5)  # the balancer's fail_timeout (1 s here)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
            total = len(published) + len(acknowledged)
            expected = sorted(published + acknowledged, key=lambda p: p.offset)
            assert len({p.offset for p in expected}) == total, "a publish was applied twice"
            for transport, subscription in subscriptions.items():
                received = await collect(subscription, total, timeout=20)
                assert [m.position for m in received] == expected, transport
                assert subscription.recovered is True, transport
        # The streams were on the restarted nodes at some point: they saw 1001.
        assert rtlink.CloseCode.GOING_AWAY in closes["websocket"]
        assert rtlink.CloseCode.GOING_AWAY in closes["sse"]


# --- health checks, client addresses -----------------------------------------------------------


async def test_info_answers_while_redis_is_down() -> None:
    """The guide says /info proves the node, not Redis: nothing listens on the port."""
    with nodes("--backend", f"redis://127.0.0.1:{free_port()}/0", count=1) as (node,):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{node.port}/rt/info") as answer:
                assert answer.status == 200
                assert (await answer.json())["version"] == 1


def _documented_middleware(trusted: set[str]) -> Callable[..., Any]:
    block = the_block(OPERATIONS, "python", "client_address_from_proxy")
    block = replaced(block, {'TRUSTED_PROXIES = {"10.0.0.2"}': f"TRUSTED_PROXIES = {trusted!r}"})
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/operations.md", "exec"), namespace)
    assert namespace["app"].middlewares, "the documented app has no middleware"
    middleware: Callable[..., Any] = namespace["client_address_from_proxy"]
    return middleware


async def _first_frame(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.ws_connect(url.replace("https://", "wss://") + "/ws") as ws:
        frame: dict[str, Any] = (await ws.receive_json(timeout=seconds(5)))
        return frame


async def test_the_client_address_middleware_restores_addresses_behind_nginx(
        certificate: tuple[Path, Path]) -> None:
    """Behind the documented nginx, with the documented middleware and one connection
    allowed per address: a second client address is its own, not the proxy's."""
    hub = rtlink.Hub(max_connections_per_ip=1)
    app = web.Application(middlewares=[_documented_middleware({"127.0.0.1"})])
    rtlink.attach(app, hub, path="/rt")
    runner = web.AppRunner(app, shutdown_timeout=2, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with documented_proxy("nginx", [port, port], certificate) as proxy:
            cert = certificate[0]
            async with client_session(cert, local_address="127.0.0.2") as first, \
                    client_session(cert, local_address="127.0.0.2") as again, \
                    client_session(cert, local_address="127.0.0.3") as other:
                async with first.ws_connect(proxy.url().replace("https", "wss") + "/ws") as ws:
                    assert (await ws.receive_json(timeout=seconds(5)))["type"] == "welcome"
                    refused = await _first_frame(again, proxy.url())
                    assert (refused["type"], refused["code"]) == (
                        "close", rtlink.CloseCode.TRY_AGAIN_LATER)
                    welcome = await _first_frame(other, proxy.url())
                    assert welcome["type"] == "welcome"
                    addresses = {c.address for c in hub.connections}
                    assert "127.0.0.2" in addresses
    finally:
        await runner.cleanup()


# --- cross-references: section numbers and links stay right ---------------------------------

PROTOCOL = DOCS / "protocol.md"
HTTP_API = DOCS / "http-api.md"

#: A citation of sections of the two documents, as the repository writes them:
#: "protocol.md 2.6", "docs/protocol.md §2.10", "protocol 3.4", "protocol.md 2.2, 2.3 and
#: 4.2", "protocol.md section 8", "[protocol.md](protocol.md) §2.8", "http-api.md §5".
CITATION = re.compile(r"(?<![\w-])(protocol(?:\.md)?|http-api\.md)(?:\]\([^)\s]*\))?"
                      r"(?:\s+sections?)?"
                      r"((?:(?:,\s*|\s+and\s+|\s+)§?[1-9]\d*(?:\.\d+)?(?![\d.]))+)")
#: A bare section number in protocol.md's prose: "(2.6)", "8.6 rule 8".
BARE_SECTION = re.compile(r"(?<![\w.§/-])([1-9]\.\d{1,2})(?![\d.])")
#: A link in a Markdown document: its text and target.
LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """A Markdown document without its code blocks."""
    return re.sub(r"(?ms)^ *```.*?^ *```", "", path.read_text(encoding="utf-8"))


def _anchors(path: Path) -> dict[str, str | None]:
    """A Markdown document's heading anchors (as GitHub makes them), each with the
    heading's section number ("2.6"; None without one)."""
    anchors: dict[str, str | None] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(path), re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        number = re.match(r"(\d+(?:\.\d+)?)\.? ", heading)
        anchors[anchor] = number[1] if number else None
    return anchors


def _sections(path: Path) -> set[str]:
    return {number for number in _anchors(path).values() if number is not None}


def _repository_texts() -> Iterator[Path]:
    """The repository's own sources and documents (not dependencies or builds)."""
    skip = {"node_modules", "dist", "static", "__pycache__"}  # and .git, .venv, ...
    suffixes = {".md", ".py", ".js", ".mjs", ".ts", ".json", ".toml"}
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = sorted(name for name in subdirectories
                                   if name not in skip and not name.startswith("."))
        for name in sorted(files):
            if Path(name).suffix in suffixes:
                yield Path(directory, name)


def test_every_cited_section_exists() -> None:
    """Citations anywhere in the repository ("protocol.md 8.7" in a comment, "http-api.md
    §5" in a docstring) name sections the documents have."""
    sections = {"protocol": _sections(PROTOCOL), "http-api": _sections(HTTP_API)}
    assert {"2.6", "4.2", "8.7", "9"} <= sections["protocol"]
    assert {"3.2", "5"} <= sections["http-api"]
    wrong = []
    for path in _repository_texts():
        for found in CITATION.finditer(path.read_text(encoding="utf-8", errors="replace")):
            document = "http-api" if found[1].startswith("http-api") else "protocol"
            for number in re.findall(r"[\d.]+", found[2]):
                if number not in sections[document]:
                    wrong.append(f"{path.relative_to(ROOT)}: {found[0].strip()!r}")
    assert not wrong, "citations of sections that do not exist:\n" + "\n".join(wrong)


def test_the_documents_cite_their_own_sections() -> None:
    """protocol.md refers to its sections by bare number ("(2.6)"), http-api.md to its
    own by "§3.2" (and to protocol.md's by citations, checked above)."""
    sections = _sections(PROTOCOL)
    prose = re.sub(r"`[^`\n]*`", "", _prose(PROTOCOL))
    prose = LINK.sub("", prose)  # links are checked on their own
    wrong = [number for number in BARE_SECTION.findall(prose) if number not in sections]
    assert not wrong, f"protocol.md cites sections it does not have: {wrong}"
    own = _sections(HTTP_API)
    prose = LINK.sub(lambda link: "" if "protocol.md" in link[2] else link[1],
                     CITATION.sub("", _prose(HTTP_API)))
    wrong = [number for number in re.findall(r"§(\d+(?:\.\d+)?)", prose) if number not in own]
    assert not wrong, f"http-api.md cites sections it does not have: {wrong}"


def test_every_link_between_the_documents_resolves() -> None:
    """Every relative link of the Markdown documents names a file that exists and, with
    an anchor, a heading of it; a link whose text ends with a section number goes to
    that section."""
    wrong = []
    for document in _repository_texts():
        if document.suffix != ".md":
            continue
        for text, target in LINK.findall(_prose(document)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            name, _, anchor = target.partition("#")
            path = (document.parent / name).resolve() if name else document
            where = f"{document.relative_to(ROOT)}: [{text}]({target})"
            if not path.exists():
                wrong.append(f"{where}: no such file")
            elif anchor and path.suffix == ".md":
                anchors = _anchors(path)
                cited = re.search(r"(?:^|[\s§])(\d+(?:\.\d+)?)$", text)
                if anchor not in anchors:
                    wrong.append(f"{where}: no such heading")
                elif cited and anchors[anchor] != cited[1]:
                    wrong.append(f"{where}: the heading is section {anchors[anchor]}")
    assert not wrong, "broken links:\n" + "\n".join(wrong)


# --- the migration note's server ------------------------------------------------------------


async def test_the_migration_notes_rtlink_server_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The rtlink server of docs/migrating-from-socketio.md, and its /chat route: rooms
    for members, notifications for their owner only, stamped chat messages."""
    monkeypatch.setenv("RTLINK_SECRET", secrets.token_urlsafe(32))
    server = the_block(MIGRATION, "python", "rtlink.Hub(")
    server = replaced(server, {
        'backend="redis://redis.internal:6379/0",': 'backend="memory://",',
        "web.run_app(app, port=8080, handler_cancellation=True)": "",
    })
    route = the_block(MIGRATION, "python", "async def post_chat")

    async def is_member(user: str, room: str) -> bool:
        return room == "room:lobby"

    namespace: dict[str, Any] = {"is_member": is_member}
    exec(compile(server, "migrating-from-socketio.md", "exec"), namespace)
    exec(compile(route, "migrating-from-socketio.md", "exec"), namespace)
    auth: rtlink.TokenAuth = namespace["auth"]
    runner = web.AppRunner(namespace["app"], shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        alice, bob = auth.mint("alice"), auth.mint("bob")
        async with rtlink.Client(url + "/rt", token=alice, **FAST_RECONNECT) as client, \
                rtlink.Client(url + "/rt", token=bob, **FAST_RECONNECT) as other:
            async with client.subscribe("room:lobby") as lobby, \
                    client.subscribe("user:alice:notifications") as inbox:
                await lobby.wait_subscribed()
                await inbox.wait_subscribed()
                await client.publish("room:lobby", {"text": "hi"})
                await namespace["notify"]("alice", {"n": 1})
                async with aiohttp.ClientSession() as http:
                    async with http.post(url + "/chat", json={"room": "lobby", "text": "yo"},
                                         headers={"Authorization": f"Bearer {alice}"}) as answer:
                        assert answer.status == 200, await answer.text()
                    async with http.post(url + "/chat", json={"room": "lobby", "text": "x"}) \
                            as answer:
                        assert answer.status == 401
                assert [m.data for m in await collect(lobby, 2)] == [
                    {"text": "hi"}, {"from": "alice", "text": "yo"}]
                assert [m.data for m in await collect(inbox, 1)] == [{"n": 1}]
            with pytest.raises(rtlink.SubscribeError) as refused:
                async with other.subscribe("user:alice:notifications") as stolen:
                    await stolen.wait_subscribed()
            assert refused.value.code == rtlink.ErrorCode.FORBIDDEN
            with pytest.raises(rtlink.SubscribeError):
                async with other.subscribe("room:kitchen") as closed_room:
                    await closed_room.wait_subscribed()
    finally:
        await runner.cleanup()


# --- the Redis deployments of the operations guide ------------------------------------------


async def _publish_and_receive(url: str) -> None:
    """A node subscribed through ``url`` receives what another publishes through it."""
    backend_a, backend_b = create_backend(url), create_backend(url)
    received: list[object] = []
    await backend_a.start(lambda p: received.append(p.data), lambda c: None)
    await backend_b.start(lambda p: None, lambda c: None)
    try:
        await backend_a.subscribe("orders:42")
        policy = rtlink.ChannelOptions().policy
        await backend_b.publish("orders:42", {"status": "shipped"}, key=None, policy=policy)
        await eventually(lambda: received == [{"status": "shipped"}])
    finally:
        await backend_a.close()
        await backend_b.close()


@pytest.mark.redis
async def test_the_guides_redis_urls_work_on_the_deployments_they_name() -> None:
    # Each URL as printed, with the documented addresses replaced by servers started
    # here (no passwords on them).
    with run_cluster() as cluster:
        hosts = ",".join(f"{host}:{port}" for host, port in cluster.startup_nodes)
        await _publish_and_receive(replaced(the_block(OPERATIONS, "", "redis+cluster://"), {
            ":password@": "", "10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000": hosts}).strip())
    with run_sentinel(master_name="mymaster") as setup:
        hosts = ",".join(f"127.0.0.1:{port}" for port in setup.sentinel_ports)
        await _publish_and_receive(replaced(the_block(OPERATIONS, "", "redis+sentinel://"), {
            ":masterpassword@": "", "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379": hosts,
            "?sentinel_password=...": ""}).strip())
    with run_redis() as first, run_redis() as second:
        await _publish_and_receive(replaced(the_block(OPERATIONS, "", "redis+sharded://"), {
            ":password@": "",
            "10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379": f"127.0.0.1:{first.port},"
                                                         f"127.0.0.1:{second.port}"}).strip())

"""The ``rtlink`` command: run a demo server, publish a message, tail a channel.

::

    rtlink serve --port 8080                       # demo chat at http://127.0.0.1:8080/
    rtlink tail http://127.0.0.1:8080/rt chat:lobby
    rtlink publish http://127.0.0.1:8080/rt chat:lobby '{"text": "hi"}'

    rtlink serve --port 8081 --backend redis://127.0.0.1:6379/0    # one of many nodes
    rtlink publish --backend redis://127.0.0.1:6379/0 chat:lobby '{"text": "hi"}'

Exit codes: 0 success, 1 failure (refused, timed out, connection closed for good),
2 usage error (bad arguments, invalid JSON), 130 interrupted while publishing.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import importlib.resources
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from yarl import URL

from . import __version__
from .backends import backend_schemes
from .channels import ChannelOptions
from .client import Client, ConnectionState, Message, StateChange, SubscribedEvent
from .codecs import CODECS
from .errors import (
    BackendError,
    ChannelError,
    ClientClosed,
    FrameError,
    OutboxFull,
    PublishError,
    SubscribeError,
)
from .hub import Hub
from .origins import OriginPolicy
from .protocol import Position, validate_channel, validate_data
from .publisher import Publisher
from .server import ENDPOINTS, attach

__all__ = ["main", "build_parser"]

logger = logging.getLogger("rtlink.cli")

#: Replaced with the mount path in the demo page's ``<meta name="rtlink-path">``.
PATH_PLACEHOLDER = "{{RTLINK_PATH}}"
#: Seconds the server gives open requests to finish on shutdown.
SHUTDOWN_TIMEOUT = 5.0

_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_LOG_DATE_FORMAT = "%H:%M:%S"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line found after parsing; exits with status 2."""


# --- argument types ---------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer that is at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _publish_rate(text: str) -> float | None:
    return None if text == "off" else _positive_float(text)


def _origin(text: str) -> str:
    try:
        OriginPolicy([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _position(text: str) -> Position:
    try:
        return Position.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mount_path(text: str) -> str:
    """Normalise a mount path the way :func:`rtlink.attach` does ("/" means the root)."""
    stripped = text.strip("/")
    if any(c in stripped for c in "?#") or any(c.isspace() for c in stripped):
        raise argparse.ArgumentTypeError(f"not a URL path: {text!r}")
    return "/" + stripped if stripped else ""


def _server_url(text: str) -> str:
    url = URL(text)
    if url.scheme not in ("http", "https", "ws", "wss") or not url.host:
        raise argparse.ArgumentTypeError(
            f"expected the server's rtlink URL, like http://127.0.0.1:8080/rt, not {text!r}"
        )
    return text


def _backend_url(text: str) -> str:
    scheme = urlsplit(text).scheme.lower()
    if scheme not in backend_schemes():
        known = ", ".join(f"{name}://" for name in backend_schemes())
        raise argparse.ArgumentTypeError(
            f"expected a backend URL ({known}), like redis://127.0.0.1:6379/0"
        )
    return text


def _redact(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _channel(text: str) -> str:
    try:
        return validate_channel(text)
    except FrameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- the parser -------------------------------------------------------------------------

_DESCRIPTION = """\
rtlink: realtime pub/sub over WebSocket with resume-on-reconnect.

Run a demo server with `rtlink serve`, then watch a channel with `rtlink tail` and
send to it with `rtlink publish`. URL is where the server mounted rtlink, e.g.
http://127.0.0.1:8080/rt (ws:// and wss:// URLs work too).
"""

_EPILOG = """\
examples:
  rtlink serve --port 8080
  rtlink tail http://127.0.0.1:8080/rt chat:lobby
  rtlink publish http://127.0.0.1:8080/rt chat:lobby '{"text": "hello"}'
  rtlink serve --port 8081 --backend redis://127.0.0.1:6379/0
  rtlink publish --backend redis://127.0.0.1:6379/0 chat:lobby '{"text": "hello"}'
"""


class _IntermixedParser(argparse.ArgumentParser):
    """A command's parser that lets options sit between positionals
    (``publish URL --key K CHANNEL DATA``): with an optional URL before CHANNEL, plain
    argparse would hand a lone URL before an option to CHANNEL."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the layout of descriptions; show meaningful defaults."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if (text and "default" not in text and action.default not in (None, False)
                and action.default is not argparse.SUPPRESS and action.option_strings):
            text += " (default: %(default)s)"
        return text


def _add_history_options(parser: argparse.ArgumentParser, when: str) -> None:
    """--history-size and --history-ttl, for the servers and for publishing into a
    shared engine (which must bound history alike)."""
    parser.add_argument("--history-size", type=_non_negative_int, default=100, metavar="N",
                        help=f"{when}publications kept per channel for resume "
                             "(0 disables resume)")
    parser.add_argument("--history-ttl", type=_positive_float, default=300.0,
                        metavar="SECONDS", help=f"{when}seconds a publication stays in history")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``rtlink`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="rtlink", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                     parser_class=_IntermixedParser)
    commands.required = True

    serve = commands.add_parser(
        "serve",
        help="run an rtlink server (in-memory backend by default) and a demo chat page",
        formatter_class=_Formatter,
        description="""\
Run an rtlink server and a demo chat page.

The demo page is served at / and rtlink at PATH (WebSocket at PATH/ws). Every
channel is allowed. With the default backend (memory://) history lives in this
process only: it is lost on restart, and clients resuming from an older run are
told that messages were missed. With --backend redis://HOST:PORT/DB every server
started with the same URL serves the same channels (put a load balancer in front;
no sticky sessions needed).
Stop with Ctrl-C or SIGTERM: open connections are closed with 1001 (going away),
which tells clients to reconnect and resume.""",
    )
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (0.0.0.0 for all IPv4 interfaces)")
    serve.add_argument("--port", type=_port, default=8080,
                       help="TCP port to listen on (0 picks a free one)")
    serve.add_argument("--path", type=_mount_path, default="/rt",
                       help="mount path of the rtlink endpoint")
    serve.add_argument("--backend", type=_backend_url, default="memory://", metavar="URL",
                       help="the engine: memory:// (this process only) or redis://HOST:PORT/DB "
                            "(shared by every node started with it)")
    _add_history_options(serve, "")
    serve.add_argument("--no-client-publish", action="store_true",
                       help="refuse publishes from clients (rtlink publish, the demo page) "
                            "with error 403; they may only subscribe")
    serve.add_argument("--allowed-origin", action="append", type=_origin, metavar="ORIGIN",
                       dest="allowed_origins",
                       help="a web origin whose pages may connect, like "
                            "https://app.example.com, https://*.example.com (subdomains), "
                            "* (any) or null; repeat for several (default: only pages from "
                            "this server's own host and port). Clients that send no Origin "
                            "(not browsers) are always allowed")
    serve.add_argument("--publish-rate", type=_publish_rate, default=50.0, metavar="PER_SECOND",
                       help="client publishes allowed per second per connection, on average; "
                            "more are refused with error 429 and sent again by clients "
                            "(off: no limit)")
    serve.add_argument("--publish-burst", type=_positive_int, default=100, metavar="N",
                       help="client publishes allowed at once before --publish-rate applies")
    serve.add_argument("--max-connections-per-ip", type=_positive_int, metavar="N",
                       help="connections open at once from one client address; more are "
                            "refused with 1013 (default: no limit; behind a proxy every "
                            "client has the proxy's address: limit there instead)")
    serve.add_argument("--log-level", choices=_LOG_LEVELS, default="info",
                       help="logging level (info includes one access-log line per request)")
    serve.set_defaults(run=_cmd_serve)

    publish = commands.add_parser(
        "publish",
        help="publish one message to a channel and print its position",
        formatter_class=_Formatter,
        description="""\
Publish one message to a channel and print its position as EPOCH:OFFSET.

DATA is JSON text: '{"text": "hi"}', '"a string"', '42', 'null'. Quote it for
your shell. Either through a server (URL): it must allow client publishing on the
channel (rtlink serve does unless started with --no-client-publish); or straight
into a shared engine with --backend redis://HOST:PORT/DB (no URL then): every
server using that engine delivers it. With --backend, give the servers' history
settings (--history-size, --history-ttl) so that history is bounded alike.

exit status: 0 published, 1 refused, unavailable or timed out, 2 usage error""",
        usage="%(prog)s [-h] [options] (URL | --backend URL) CHANNEL DATA",
    )
    publish.add_argument("url", metavar="URL", type=_server_url, nargs="?",
                         help="the server's rtlink URL, e.g. http://127.0.0.1:8080/rt")
    publish.add_argument("channel", metavar="CHANNEL", type=_channel,
                         help="channel name, e.g. chat:lobby")
    publish.add_argument("data", metavar="DATA", help="the message, as JSON text")
    publish.add_argument("--codec", choices=tuple(CODECS), default="json",
                         help="wire encoding")
    publish.add_argument("--key", metavar="KEY",
                         help="idempotency key: publishing again with the same key (within "
                              "the server's key TTL) returns the first position and publishes "
                              "nothing (default: a random key)")
    publish.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                         help="give up if connecting and publishing take longer")
    publish.add_argument("--backend", type=_backend_url, metavar="URL",
                         help="publish straight into this engine (redis://HOST:PORT/DB) "
                              "instead of through a server")
    _add_history_options(publish, "with --backend: ")
    publish.set_defaults(run=_cmd_publish)

    tail = commands.add_parser(
        "tail",
        help="print a channel's messages as they arrive",
        formatter_class=_Formatter,
        description="""\
Subscribe to a channel and print each message on stdout as one line as it arrives.

With --format json (default) each line is a JSON object:
  {"channel": "chat:lobby", "position": "EPOCH:OFFSET", "data": ...}
With --format text: EPOCH:OFFSET CHANNEL DATA (strings as they are, else JSON).

Connection state changes go to stderr. On a disconnect tail reconnects with
backoff and resumes after the last message printed, so nothing is missed or
repeated; if the server's history no longer covers the gap, a warning says so.
Pass --since with a position printed earlier to resume after it. Stop with Ctrl-C.""",
    )
    tail.add_argument("url", metavar="URL", type=_server_url,
                      help="the server's rtlink URL, e.g. http://127.0.0.1:8080/rt")
    tail.add_argument("channel", metavar="CHANNEL", type=_channel,
                      help="channel name, e.g. chat:lobby")
    tail.add_argument("--codec", choices=tuple(CODECS), default="json",
                      help="wire encoding")
    tail.add_argument("--since", type=_position, metavar="EPOCH:OFFSET",
                      help="first print the messages published after this position "
                           "(from the server's history)")
    tail.add_argument("--count", type=_positive_int, metavar="N",
                      help="exit after printing N messages (default: run until interrupted)")
    tail.add_argument("--format", choices=("json", "text"), default="json",
                      help="output format of message lines")
    tail.set_defaults(run=_cmd_tail)
    return parser


# --- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rtlink`` command with ``argv`` (default: ``sys.argv[1:]``); return the
    exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        _err(f"rtlink {args.command}: error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C, or no signal handling on this platform
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (e.g. `rtlink tail ... | head -1`).
        # Point stdout at devnull so that the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=_LOG_FORMAT, datefmt=_LOG_DATE_FORMAT,
                        stream=sys.stderr)


async def _until_signal(work: Coroutine[Any, Any, int], interrupted: int) -> int:
    """Run ``work``; on SIGINT or SIGTERM cancel it (it cleans up) and return
    ``interrupted``. A second signal while it cleans up raises KeyboardInterrupt."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    signalled = False

    def on_signal() -> None:
        nonlocal signalled
        if signalled:
            raise KeyboardInterrupt
        signalled = True
        task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            pass
    try:
        return await task
    except asyncio.CancelledError:
        if signalled:
            return interrupted
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


# --- serve ------------------------------------------------------------------------------


def _demo_page(path: str) -> str:
    page = importlib.resources.files("rtlink").joinpath("static/index.html")
    text = page.read_text(encoding="utf-8")
    return text.replace(PATH_PLACEHOLDER, html.escape(path, quote=True))


def _http_url(host: str, port: int, path: str) -> str:
    # A wildcard address is where the server listens, not an address to browse to.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def build_app(
    *,
    path: str = "/rt",
    backend: str = "memory://",
    history_size: int = 100,
    history_ttl: float = 300.0,
    client_publish: bool = True,
    allowed_origins: Sequence[str] | None = None,
    publish_rate: float | None = 50.0,
    publish_burst: int = 100,
    max_connections_per_ip: int | None = None,
) -> tuple[web.Application, Hub]:
    """Build the demo application: a hub on ``backend`` allowing every channel, rtlink
    mounted at ``path`` (for pages of ``allowed_origins``, default same origin) and the
    demo chat page at ``/``."""
    hub = Hub(
        backend=backend,
        channels={"*": ChannelOptions(history_size=history_size, history_ttl=history_ttl,
                                      client_publish=client_publish)},
        publish_rate=publish_rate,
        publish_burst=publish_burst,
        max_connections_per_ip=max_connections_per_ip,
    )
    app = web.Application()
    attach(app, hub, path=path, allowed_origins=allowed_origins)
    body = _demo_page(path)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    return app, hub


def _cmd_serve(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    try:
        app, _ = build_app(path=args.path, backend=args.backend,
                           history_size=args.history_size,
                           history_ttl=args.history_ttl,
                           client_publish=not args.no_client_publish,
                           allowed_origins=args.allowed_origins,
                           publish_rate=args.publish_rate,
                           publish_burst=args.publish_burst,
                           max_connections_per_ip=args.max_connections_per_ip)
    except (OSError, ValueError, ImportError) as exc:
        _err(f"rtlink serve: error: cannot set up the server: {exc}")
        return EXIT_FAILURE
    return asyncio.run(_serve(app, args))


async def _serve(app: web.Application, args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second Ctrl-C: give up on a clean shutdown
        logger.info("received %s, shutting down (press Ctrl-C again to force)",
                    signal.Signals(signum).name)
        stop.set()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):
            pass

    # Handler cancellation: an SSE stream or a held poll whose client left is dropped
    # at once rather than at its next write (ping) or the end of the poll.
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as exc:
            _err(f"rtlink serve: error: cannot listen on {args.host}:{args.port}: "
                 f"{exc.strerror or exc}")
            return EXIT_FAILURE
        port = runner.addresses[0][1] if runner.addresses else args.port
        page = _http_url(args.host, port, "/")
        endpoint = _http_url(args.host, port, args.path)
        print(f"rtlink serving on {page} (endpoint {endpoint}, backend "
              f"{_redact(args.backend)})", flush=True)
        if args.host in ("0.0.0.0", "::"):
            logger.info("listening on all interfaces (%s)", args.host)
        logger.info("transports: %s; client publishing %s",
                    ", ".join(f"{name} {endpoint}{sub_path}"
                              for name, (sub_path, _) in ENDPOINTS.items()),
                    "off" if args.no_client_publish else "on")
        logger.info("allowed origins: %s; publish rate %s; connections per address: %s",
                    ", ".join(args.allowed_origins) if args.allowed_origins is not None
                    else "same origin only",
                    "no limit" if args.publish_rate is None
                    else f"{args.publish_rate:g}/s, bursts of {args.publish_burst}",
                    args.max_connections_per_ip or "no limit")
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in installed:
            loop.remove_signal_handler(signum)
    logger.info("stopped")
    return EXIT_OK


# --- publish ----------------------------------------------------------------------------


def _cmd_publish(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data, parse_constant=_reject_constant)
    except ValueError as exc:
        raise UsageError(f"DATA is not valid JSON ({exc}): {args.data[:200]!r}\n"
                         "hint: quote it for your shell, e.g. '{\"text\": \"hi\"}' "
                         "or '\"a string\"'") from None
    try:
        validate_data(data)
    except FrameError as exc:
        raise UsageError(f"DATA cannot be published: {exc}") from None
    if (args.url is None) == (args.backend is None):
        raise UsageError("give either the server's URL or --backend URL (not both)")
    _setup_logging("warning")
    work = _publish(args, data) if args.backend is None else _publish_to_backend(args, data)
    return asyncio.run(_until_signal(work, EXIT_INTERRUPTED))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _publish(args: argparse.Namespace, data: Any) -> int:
    client = Client(args.url, codec=args.codec, connect_timeout=args.timeout)
    last_problem = ""

    def on_state(change: StateChange) -> None:
        nonlocal last_problem
        if change.new_state in (ConnectionState.DISCONNECTED, ConnectionState.CLOSED):
            last_problem = _describe_close(change.code, change.reason)

    client.on("state", on_state)
    connected = False
    try:
        async with asyncio.timeout(args.timeout):
            await client.connect()
            connected = True
            position = await client.publish(args.channel, data, key=args.key)
    except TimeoutError:
        if connected:
            _err(f"error: no acknowledgement from {args.url} within {args.timeout:g}s; "
                 "the message may or may not have been published (retry with the same --key "
                 "to be sure it is published once)")
        else:
            detail = f" (last attempt: {last_problem})" if last_problem else ""
            _err(f"error: could not connect to {args.url} within {args.timeout:g}s{detail}")
        return EXIT_FAILURE
    except PublishError as exc:
        _err(f"error: {exc}")
        return EXIT_FAILURE
    except (ClientClosed, OutboxFull) as exc:
        _err(f"error: {exc}")
        return EXIT_FAILURE
    finally:
        await client.close()
    print(position, flush=True)
    return EXIT_OK


async def _publish_to_backend(args: argparse.Namespace, data: Any) -> int:
    where = _redact(args.backend)
    try:
        publisher = Publisher(args.backend, channels={"*": ChannelOptions(
            history_size=args.history_size, history_ttl=args.history_ttl)})
    except (ValueError, ImportError) as exc:
        _err(f"error: cannot use the backend {where}: {exc}")
        return EXIT_FAILURE
    try:
        async with asyncio.timeout(args.timeout):
            async with publisher:
                position = await publisher.publish(args.channel, data,
                                                   key=args.key or secrets.token_hex(16))
    except TimeoutError:
        _err(f"error: {where} did not answer within {args.timeout:g}s; the message may or "
             "may not have been published (retry with the same --key to be sure it is "
             "published once)")
        return EXIT_FAILURE
    except (BackendError, ChannelError) as exc:
        _err(f"error: {exc}")
        return EXIT_FAILURE
    print(position, flush=True)
    return EXIT_OK


# --- tail -------------------------------------------------------------------------------


def _describe_close(code: int | None, reason: str) -> str:
    if code is None:
        return reason or "no reason"
    return f"code {code}{', ' + reason if reason else ''}"


def _format_message(message: Message, fmt: str) -> str:
    if fmt == "text":
        data = message.data if isinstance(message.data, str) else _json(message.data)
        return f"{message.position} {message.channel} {data}"
    return _json({"channel": message.channel, "position": str(message.position),
                  "data": message.data})


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


def _cmd_tail(args: argparse.Namespace) -> int:
    _setup_logging("warning")
    return asyncio.run(_until_signal(_tail(args), EXIT_OK))


async def _tail(args: argparse.Namespace) -> int:
    client = Client(args.url, codec=args.codec)
    channel: str = args.channel
    last: Position | None = args.since  # position of the last message printed
    closed_by = ""

    def on_state(change: StateChange) -> None:
        nonlocal closed_by
        state = change.new_state
        if state is ConnectionState.CONNECTING:
            _err(f"rtlink: connecting to {args.url} ...")
        elif state is ConnectionState.CONNECTED:
            _err(f"rtlink: connected ({client.transport}, session {client.session_id})")
        elif state is ConnectionState.DISCONNECTED:
            _err(f"rtlink: disconnected ({_describe_close(change.code, change.reason)}); "
                 "reconnecting")
        elif state is ConnectionState.CLOSED and change.code is not None:
            closed_by = _describe_close(change.code, change.reason)

    def on_subscribed(event: SubscribedEvent) -> None:
        nonlocal last
        if event.resumed and not event.recovered:
            _err(f"rtlink: WARNING: could not resume {channel} after {last}: the server's "
                 f"history no longer covers it; messages may have been missed. "
                 f"Continuing from {event.position}.")
        elif event.resumed:
            _err(f"rtlink: subscribed to {channel}, resumed after {last}")
        else:
            _err(f"rtlink: subscribed to {channel} at {event.position}")
        if not event.resumed or not event.recovered:
            last = event.position  # where the client resumes from next time

    client.on("state", on_state)
    subscription = client.subscribe(channel, since=args.since)
    subscription.on("subscribed", on_subscribed)
    printed = 0
    try:
        await client.connect()
        async for message in subscription:
            print(_format_message(message, args.format), flush=True)
            last = message.position
            printed += 1
            if args.count is not None and printed >= args.count:
                return EXIT_OK
    except SubscribeError as exc:
        _err(f"error: cannot subscribe to {channel}: {exc}")
        return EXIT_FAILURE
    except ClientClosed as exc:
        _err(f"error: {exc}")
        return EXIT_FAILURE
    finally:
        await client.close()
    # The subscription ended without an error: the server closed for good.
    _err(f"error: connection closed by the server ({closed_by or 'no reason'}); "
         "not reconnecting")
    return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

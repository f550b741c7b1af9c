"""The ``rtlink`` command: run a server, publish a message, tail a channel, mint a token.

::

    rtlink serve --port 8080                       # demo chat at http://127.0.0.1:8080/
    rtlink tail http://127.0.0.1:8080/rt chat:lobby
    rtlink publish http://127.0.0.1:8080/rt chat:lobby '{"text": "hi"}'

    rtlink serve --port 8081 --backend redis://127.0.0.1:6379/0    # one of many nodes
    rtlink publish --backend redis://127.0.0.1:6379/0 chat:lobby '{"text": "hi"}'

    rtlink serve --config rtlink.toml --print-config  # what a config resolves to
    RTLINK_TOKEN_SECRET=... rtlink token alice --ttl 600

``serve`` takes its options from flags, ``RTLINK_*`` environment variables and a TOML
config file (:mod:`rtlink.config`).

Exit codes: 0 success, 1 failure (refused, timed out, connection closed for good),
2 usage error (bad arguments or configuration, invalid JSON), 130 interrupted while
publishing.
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
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from aiohttp import web
from yarl import URL

from . import __version__
from .auth import TokenAuth
from .channels import ChannelOptions
from .client import Client, ConnectionState, Message, StateChange, SubscribedEvent
from .codecs import CODECS
from .config import (
    CONFIG_ENV,
    SERVE_OPTIONS,
    Boolean,
    Choice,
    ConfigError,
    Integer,
    Number,
    Option,
    Secret,
    ServeConfig,
    TextList,
    backend_url,
    format_config,
    load_serve_config,
    read_secret_file,
    redact_url,
    transport_name,
)
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
from .protocol import Position, validate_channel, validate_data
from .publisher import Publisher
from .server import TRANSPORT_NAMES, attach

__all__ = ["main", "build_parser", "build_app"]

logger = logging.getLogger("rtlink.cli")

#: Replaced with the mount path in the demo page's ``<meta name="rtlink-path">``.
PATH_PLACEHOLDER = "{{RTLINK_PATH}}"
#: Seconds the server gives open requests to finish on shutdown.
SHUTDOWN_TIMEOUT = 5.0
#: Seconds an idle kept-alive HTTP connection stays open (what ``web.run_app`` uses;
#: aiohttp's lower-level default is 3,630 s, which holds a descriptor per recent
#: HTTP client for an hour).
KEEPALIVE_TIMEOUT = 75.0
#: Where clients' token commands look for the token when no --token-file is given.
TOKEN_ENV = "RTLINK_TOKEN"
#: Where ``rtlink token`` looks for the secret (as ``rtlink serve`` does).
TOKEN_SECRET_ENV = "RTLINK_TOKEN_SECRET"

#: One line per event: UTC time, level, logger, message (details as key=value).
_LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
_LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
#: aiohttp's access log line (logger aiohttp.access), in the same key=value style.
_ACCESS_LOG_FORMAT = 'remote=%a request="%r" status=%s bytes=%b seconds=%Tf'

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_T = TypeVar("_T")


class UsageError(Exception):
    """A problem with the command line found after parsing; exits with status 2."""


# --- argument types ---------------------------------------------------------------------


def _arg(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type from a parser raising ValueError (argparse then says
    ``argument --port: <the message>`` and exits with status 2)."""

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


_positive_int = _arg(Integer(1).from_text)
_positive_float = _arg(Number().from_text)
_transport_list = _arg(TextList(f"transports ({', '.join(TRANSPORT_NAMES)})",
                                transport_name, non_empty=True).from_text)


def _position(text: str) -> Position:
    try:
        return Position.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _server_url(text: str) -> str:
    url = URL(text)
    if url.scheme not in ("http", "https", "ws", "wss") or not url.host:
        raise argparse.ArgumentTypeError(
            f"expected the server's rtlink URL, like http://127.0.0.1:8080/rt, not {text!r}"
        )
    return text


def _channel(text: str) -> str:
    try:
        return validate_channel(text)
    except FrameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- the parser -------------------------------------------------------------------------

_DESCRIPTION = """\
rtlink: realtime pub/sub over WebSocket, SSE and long polling with resume-on-reconnect.

Run a server with `rtlink serve`, then watch a channel with `rtlink tail` and send
to it with `rtlink publish`; `rtlink token` makes tokens for servers that require
them. URL is where the server mounted rtlink, e.g. http://127.0.0.1:8080/rt (ws://
and wss:// URLs work too). `rtlink COMMAND --help` lists a command's options.
"""

_EPILOG = """\
examples:
  rtlink serve --port 8080
  rtlink tail http://127.0.0.1:8080/rt chat:lobby
  rtlink publish http://127.0.0.1:8080/rt chat:lobby '{"text": "hello"}'
  rtlink serve --port 8081 --backend redis://127.0.0.1:6379/0
  rtlink publish --backend redis://127.0.0.1:6379/0 chat:lobby '{"text": "hello"}'
  rtlink serve --config rtlink.toml --print-config
  RTLINK_TOKEN=$(rtlink token alice --secret-file secret.txt) \\
      rtlink tail http://127.0.0.1:8080/rt user:alice:inbox

exit status: 0 success, 1 failure (refused, unavailable, timed out), 2 usage or
configuration error, 130 interrupted
"""

_SERVE_DESCRIPTION = f"""\
Run an rtlink server and a demo chat page.

The demo page is served at / and rtlink at PATH (WebSocket at PATH/ws, SSE at
PATH/sse, long polling at PATH/poll). With the default backend (memory://) history
lives in this process only: it is lost on restart, and clients resuming from an
older run are told that messages were missed. With --backend redis://HOST:PORT/DB
every server started with the same URL serves the same channels (put a load
balancer in front; no sticky sessions needed).

Every option comes from, strongest first: its flag, its environment variable
(RTLINK_<OPTION>, lists comma-separated; empty counts as unset), the config file
(--config FILE or {CONFIG_ENV}), the default. The config file is TOML, with keys named
like the options (history_size = 50) and the channel rules, one table per pattern,
first match wins:

  port = 8081
  allowed_origins = ["https://app.example.com"]
  token_secret_file = "secret.txt"        # relative to the config file

  [channels."news:*"]                     # history_size, history_ttl,
  history_size = 1000                     # client_publish, key_ttl, subscribe
  [channels."user:{{user}}:*"]
  subscribe = "authenticated"

Without [channels] tables every channel is allowed. See docs/operations.md
("Configuring rtlink serve") for every key. Secrets are never flag values (ps shows
those to every user): the flags and keys name a file, the RTLINK_TOKEN_SECRET and
RTLINK_API_KEYS variables hold the value (or name a file: ..._FILE).
--print-config shows where each value came from, secrets redacted.

Logs go to stderr, one line per event: UTC time, level, logger, message with
key=value details. Stop with Ctrl-C or SIGTERM: open connections are closed with
1001 (going away), which tells clients to reconnect and resume.

exit status: 0 stopped by a signal (or --print-config), 1 cannot start (address in
use, bad backend options), 2 usage or configuration error"""


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
    """--history-size and --history-ttl of ``rtlink publish --backend``, which must bound
    history as the servers do."""
    parser.add_argument("--history-size", type=_arg(Integer(0).from_text), default=100,
                        metavar="N", help=f"{when}publications kept per channel for resume "
                                          "(0 disables resume)")
    parser.add_argument("--history-ttl", type=_positive_float, default=300.0,
                        metavar="SECONDS", help=f"{when}seconds a publication stays in history")


def _add_token_option(parser: argparse.ArgumentParser) -> None:
    """--token-file, for clients of servers that require a token."""
    parser.add_argument("--token-file", metavar="FILE",
                        help="a file holding the token to connect with (read again before "
                             "every reconnection, so it can be renewed in place); default: "
                             f"the environment variable {TOKEN_ENV}, else no token. Make "
                             "tokens with `rtlink token`")


#: How a default that is None or empty reads in --help, where "off" does not say it.
_UNSET_HELP = {
    "allowed_origins": "only pages of this server's own host and port",
    "token_secret": "none (no authentication)",
    "api_keys": "none (no publish API)",
}


def _default_help(option: Option) -> str:
    """An option's default as --help shows it."""
    value = option.default
    if option.name in _UNSET_HELP and not value:
        return _UNSET_HELP[option.name]
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value) or "/"


def _option_help(option: Option) -> str:
    if option.secret:
        where = (f"env {option.env} (the value) or {option.file_env} (a file); "
                 f"config {option.key}")
    else:
        where = f"env {option.env}"
    return f"{option.help} [{where}; default: {_default_help(option)}]"


def _add_serve_options(serve: argparse.ArgumentParser) -> None:
    """The flags of every :data:`~rtlink.config.SERVE_OPTIONS`; absent flags leave no
    attribute (default SUPPRESS), so that the environment and the file can apply."""
    serve.add_argument("--config", metavar="FILE",
                       help=f"read options and channel rules from this TOML file [env "
                            f"{CONFIG_ENV}; default: none]")
    serve.add_argument("--print-config", action="store_true",
                       help="print the effective configuration (TOML, the source of each "
                            "value in a comment, secrets redacted) and exit")
    for option in SERVE_OPTIONS:
        help_text = _option_help(option)
        common: dict[str, Any] = {"dest": option.name, "default": argparse.SUPPRESS}
        if isinstance(option.kind, Boolean):
            serve.add_argument(option.flag, action=argparse.BooleanOptionalAction,
                               help=help_text, **common)
        elif option.secret:
            serve.add_argument(option.flag, metavar="FILE", help=help_text, **common)
        elif option.off_flag is not None:
            group = serve.add_mutually_exclusive_group()
            group.add_argument(option.flag, type=_arg(option.kind.from_text),
                               metavar=option.metavar, help=help_text, **common)
            group.add_argument(option.off_flag, action="store_const", const=None,
                               help=f"same as {option.flag} off", **common)
        else:
            choices = option.kind.choices if isinstance(option.kind, Choice) else None
            serve.add_argument(option.flag, type=_arg(option.kind.from_text),
                               action="extend" if option.repeatable else "store",
                               metavar=option.metavar, choices=choices, help=help_text,
                               **common)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``rtlink`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="rtlink", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                     parser_class=_IntermixedParser)
    # No abbreviated options: `--token-secret VALUE` must not pass for
    # `--token-secret-file VALUE` (then echo the secret in "cannot read VALUE").
    commands.required = True

    serve = commands.add_parser(
        "serve", allow_abbrev=False,
        help="run an rtlink server (in-memory backend by default) and a demo chat page",
        formatter_class=_Formatter, description=_SERVE_DESCRIPTION,
        epilog="""\
examples:
  rtlink serve --port 8080 --allowed-origin https://app.example.com
  RTLINK_BACKEND=redis://127.0.0.1:6379/0 rtlink serve --port 8081
  rtlink serve --config /etc/rtlink.toml --token-secret-file /run/secrets/rtlink
  rtlink serve --config /etc/rtlink.toml --print-config""",
    )
    _add_serve_options(serve)
    serve.set_defaults(run=_cmd_serve)

    publish = commands.add_parser(
        "publish", allow_abbrev=False,
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
        epilog="""\
examples:
  rtlink publish http://127.0.0.1:8080/rt chat:lobby '{"text": "hello"}'
  rtlink publish --key order-42 http://127.0.0.1:8080/rt orders '{"id": 42}'
  rtlink publish --backend redis://127.0.0.1:6379/0 chat:lobby '"hello"'""",
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
    _add_token_option(publish)
    publish.add_argument("--backend", type=_arg(backend_url), metavar="URL",
                         help="publish straight into this engine (redis://HOST:PORT/DB) "
                              "instead of through a server")
    _add_history_options(publish, "with --backend: ")
    publish.set_defaults(run=_cmd_publish)

    tail = commands.add_parser(
        "tail", allow_abbrev=False,
        help="print a channel's messages as they arrive",
        formatter_class=_Formatter,
        description="""\
Subscribe to a channel and print each message on stdout as one line as it arrives.

With --format json (default) each line is a JSON object:
  {"channel": "chat:lobby", "position": "EPOCH:OFFSET", "data": ...}
With --format text: EPOCH:OFFSET CHANNEL DATA (strings as they are, else JSON).

stdout has the messages only. stderr tells what the connection does: each attempt
and the transport it tries, the transport in use once connected, each disconnect
with its close code and reason, each reconnection, and each resume: after a
reconnect tail resumes after the last message printed, so nothing is missed or
repeated; if the server's history no longer covers the gap, a WARNING says so.
Pass --since with a position printed earlier to resume after it. Stop with Ctrl-C.

exit status: 0 --count messages printed or interrupted, 1 refused or closed by the
server for good, 2 usage error""",
        epilog="""\
examples:
  rtlink tail http://127.0.0.1:8080/rt chat:lobby
  rtlink tail --format text --since 8f3a:41 http://127.0.0.1:8080/rt chat:lobby
  rtlink tail --transports sse,longpoll http://127.0.0.1:8080/rt chat:lobby
  rtlink tail --token-file alice.jwt http://127.0.0.1:8080/rt user:alice:inbox""",
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
    tail.add_argument("--transports", type=_transport_list, default=TRANSPORT_NAMES,
                      metavar="LIST",
                      help="transports to use, comma-separated, in order of preference; "
                           "tail falls back along the list (default: "
                           f"{','.join(TRANSPORT_NAMES)})")
    _add_token_option(tail)
    tail.set_defaults(run=_cmd_tail)

    token = commands.add_parser(
        "token", allow_abbrev=False,
        help="mint a client token signed with the servers' token secret",
        formatter_class=_Formatter,
        description=f"""\
Print a token (an HS256 JWT) for SUBJECT, signed with the secret that `rtlink serve`
verifies tokens with (its --token-secret-file or {TOKEN_SECRET_ENV}). Clients send it
as `Authorization: Bearer TOKEN`; `rtlink tail` and `rtlink publish` read it from
--token-file or {TOKEN_ENV}. Channels whose rule has subscribe = "authenticated" need
one; a "user:{{user}}:*" rule lets only SUBJECT use user:SUBJECT:... channels.

The secret comes from --secret-file FILE, or the variable named by --secret-env,
else {TOKEN_SECRET_ENV}, else the file named by {TOKEN_SECRET_ENV}_FILE.

exit status: 0 token printed, 2 usage error (no secret, bad claim)""",
        epilog=f"""\
examples:
  rtlink token alice --secret-file secret.txt
  {TOKEN_SECRET_ENV}=... rtlink token alice --ttl 600 --claim role=admin
  rtlink token svc-1 --secret-env MY_SECRET --claim 'rooms:=["a", "b"]'""",
    )
    token.add_argument("subject", metavar="SUBJECT",
                       help="whom the token names (its sub claim), e.g. a user id")
    token.add_argument("--ttl", type=_positive_float, default=3600.0, metavar="SECONDS",
                       help="seconds until the token expires")
    token.add_argument("--claim", action="append", metavar="KEY=VALUE",
                       help="an extra claim, repeatable: KEY=VALUE for a string, "
                            "KEY:=JSON for any JSON value (KEY:=3, KEY:=true)")
    source = token.add_mutually_exclusive_group()
    source.add_argument("--secret-file", metavar="FILE",
                        help="a file holding the secret (its final newline is ignored)")
    source.add_argument("--secret-env", metavar="VAR",
                        help="an environment variable holding the secret")
    token.set_defaults(run=_cmd_token)
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
    formatter = logging.Formatter(_LOG_FORMAT, _LOG_DATE_FORMAT)
    formatter.converter = time.gmtime  # UTC: comparable across machines
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _fields(**details: object) -> str:
    """``key=value`` pairs for a log line; values with spaces or quotes are quoted."""
    parts = []
    for key, value in details.items():
        text = str(value)
        if not text or any(c.isspace() or c in "\"=" for c in text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


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


def _client_token(args: argparse.Namespace) -> str | Callable[[], str] | None:
    """The token a client command connects with: a function re-reading --token-file
    before every connection attempt, else ``RTLINK_TOKEN``, else None.

    Raises:
        UsageError: the token file cannot be read now, or is empty.
    """
    path: str | None = args.token_file
    if path is None:
        return os.environ.get(TOKEN_ENV) or None

    def read() -> str:
        return read_secret_file(path, "--token-file").strip()

    try:
        if not read():
            raise UsageError(f"--token-file: {path!r} is empty")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return read


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


def build_app(config: ServeConfig | None = None) -> tuple[web.Application, Hub]:
    """Build the application of ``rtlink serve``: a hub with ``config``'s backend, channel
    rules, authentication and limits, rtlink mounted at ``config.path`` (with the
    publish API and the metrics endpoint if configured) and the demo chat page at ``/``.

    Args:
        config: the configuration (default: :class:`~rtlink.config.ServeConfig`'s
            defaults: memory backend, every channel, no authentication).

    Raises:
        ValueError: options the hub, the backend or :func:`rtlink.attach` refuse.
        ImportError: the backend's optional dependency is not installed.
    """
    config = config or ServeConfig()
    authenticate = None
    if config.token_secret is not None:
        authenticate = TokenAuth(config.token_secret, anonymous=config.allow_anonymous)
    hub = Hub(
        backend=config.backend,
        channels=config.channel_rules(),
        authenticate=authenticate,
        publish_rate=config.publish_rate,
        publish_burst=config.publish_burst,
        max_connections_per_ip=config.max_connections_per_ip,
        websocket_compression=config.websocket_compression,
    )
    app = web.Application()
    attach(app, hub, path=config.path, transports=config.transports,
           allowed_origins=config.allowed_origins, api_keys=config.api_keys,
           metrics_path=config.metrics_path)
    body = _demo_page(config.path)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    return app, hub


def _serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The serve options given as flags (absent flags leave no attribute)."""
    return {option.name: getattr(args, option.name)
            for option in SERVE_OPTIONS if hasattr(args, option.name)}


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = load_serve_config(_serve_flags(args), os.environ, args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.print_config:
        sys.stdout.write(format_config(config))
        return EXIT_OK
    _setup_logging(config.log_level)
    try:
        app, _ = build_app(config)
    except (OSError, ValueError, ImportError) as exc:
        _err(f"rtlink serve: error: cannot set up the server: {exc}")
        return EXIT_FAILURE
    return asyncio.run(_serve(app, config))


def _describe_config(config: ServeConfig) -> dict[str, object]:
    """The key=value details of the startup log line."""
    origins = config.allowed_origins
    rules = config.channel_rules()
    return {
        "transports": ",".join(config.transports),
        "backend": redact_url(config.backend),
        "origins": "same-origin" if origins is None else ",".join(origins) or "none",
        "auth": "off" if config.token_secret is None else "token",
        "anonymous": "allowed" if config.allow_anonymous else "refused",
        "publish_api": "off" if not config.api_keys else "on",
        "api_keys": len(config.api_keys),
        "metrics": config.metrics_path or "off",
        "channels": ",".join(rules),
        "client_publish": ",".join(p for p, o in rules.items() if o.client_publish) or "none",
        "publish_rate": "off" if config.publish_rate is None else f"{config.publish_rate:g}/s",
        "publish_burst": config.publish_burst,
        "max_connections_per_ip": config.max_connections_per_ip or "off",
        "config": config.config_file or "none",
    }


async def _serve(app: web.Application, config: ServeConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second Ctrl-C: give up on a clean shutdown
        logger.info("shutting down (the same signal again forces it) %s",
                    _fields(signal=signal.Signals(signum).name))
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
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT, handler_cancellation=True,
                           keepalive_timeout=KEEPALIVE_TIMEOUT,
                           access_log_format=_ACCESS_LOG_FORMAT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            _err(f"rtlink serve: error: cannot listen on {config.host}:{config.port}: "
                 f"{exc.strerror or exc}")
            return EXIT_FAILURE
        port = runner.addresses[0][1] if runner.addresses else config.port
        page = _http_url(config.host, port, "/")
        endpoint = _http_url(config.host, port, config.path)
        print(f"rtlink serving on {page} (endpoint {endpoint}, backend "
              f"{redact_url(config.backend)})", flush=True)
        logger.info("serving %s", _fields(url=page, endpoint=endpoint, listen=config.host,
                                          port=port, **_describe_config(config)))
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in installed:
            loop.remove_signal_handler(signum)
    logger.info("stopped")
    return EXIT_OK


# --- token ------------------------------------------------------------------------------


def _token_secret(args: argparse.Namespace) -> str:
    """The secret ``rtlink token`` signs with; see its --help for where it looks."""
    secret_file: str | None = args.secret_file
    env: str | None = args.secret_env
    if secret_file is not None:
        text = read_secret_file(secret_file, "--secret-file")
        return _checked_secret(text, f"file {secret_file} (--secret-file)", from_file=True)
    name = env or TOKEN_SECRET_ENV
    value = os.environ.get(name)
    if value:
        return _checked_secret(value, f"environment {name}")
    if env is not None:
        raise UsageError(f"--secret-env: the environment variable {name} is not set")
    path = os.environ.get(TOKEN_SECRET_ENV + "_FILE")
    if path:
        source = f"environment {TOKEN_SECRET_ENV}_FILE"
        return _checked_secret(read_secret_file(path, source), f"file {path} ({source})",
                               from_file=True)
    raise UsageError(f"no token secret: give --secret-file FILE or --secret-env VAR, or set "
                     f"{TOKEN_SECRET_ENV} (the secret `rtlink serve` verifies tokens with)")


def _checked_secret(text: str, where: str, *, from_file: bool = False) -> str:
    """``text`` as a token secret (a file's without its final newline), like serve's.

    Raises:
        UsageError: too short; the message names ``where``, not the secret.
    """
    kind = Secret()
    try:
        return str(kind.from_file(text) if from_file else kind.from_text(text))
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _claims(items: Sequence[str]) -> dict[str, Any]:
    """``--claim`` values: ``KEY=VALUE`` (a string) or ``KEY:=JSON``."""
    claims: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"--claim {item!r}: expected KEY=VALUE or KEY:=JSON")
        if key.endswith(":"):
            key = key[:-1]
            try:
                parsed: Any = json.loads(value, parse_constant=_reject_constant)
            except ValueError as exc:
                raise UsageError(f"--claim {item!r}: the value after := is not valid JSON "
                                 f"({exc})") from None
        else:
            parsed = value
        if not key:
            raise UsageError(f"--claim {item!r}: the key is empty")
        if key in claims:
            raise UsageError(f"--claim {key}: given twice")
        claims[key] = parsed
    return claims


def _cmd_token(args: argparse.Namespace) -> int:
    try:
        secret = _token_secret(args)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    claims = _claims(args.claim or ())
    try:
        token = TokenAuth(secret).mint(args.subject, ttl=args.ttl, claims=claims)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(token, flush=True)
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
    if args.backend is not None and args.token_file is not None:
        raise UsageError("--token-file is for publishing through a server, not --backend")
    token = _client_token(args)
    _setup_logging("warning")
    work = (_publish(args, data, token) if args.backend is None
            else _publish_to_backend(args, data))
    return asyncio.run(_until_signal(work, EXIT_INTERRUPTED))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _publish(args: argparse.Namespace, data: Any,
                   token: str | Callable[[], str] | None) -> int:
    client = Client(args.url, codec=args.codec, connect_timeout=args.timeout, token=token)
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
    where = redact_url(args.backend)
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
    token = _client_token(args)
    _setup_logging("warning")
    return asyncio.run(_until_signal(_tail(args, token), EXIT_OK))


class _ConnectionReport:
    """Tells on stderr what ``rtlink tail``'s connection does: each attempt and its
    transport, the transport in use, disconnects with their close code, reconnections
    (numbered) and how each (re)subscription resumed. stdout stays for messages."""

    def __init__(self, url: str, channel: str, since: Position | None) -> None:
        self.url = url
        self.channel = channel
        self.last = since  # position of the last message printed
        self.trying: str | None = None  # the transport of the current attempt
        self.connections = 0
        self.closed_by = ""

    def on_state(self, change: StateChange, session: str | None) -> None:
        state = change.new_state
        if state is ConnectionState.CONNECTING:
            self.trying = change.transport
            _err(f"rtlink: connecting to {self.url} via {change.transport} ...")
        elif state is ConnectionState.CONNECTED:
            self.connections += 1
            if self.connections == 1:
                _err(f"rtlink: connected via {change.transport} (session {session})")
            else:
                _err(f"rtlink: reconnected via {change.transport} (session {session}, "
                     f"reconnection {self.connections - 1})")
        elif state is ConnectionState.DISCONNECTED:
            why = _describe_close(change.code, change.reason)
            if change.old_state is ConnectionState.CONNECTED:
                _err(f"rtlink: disconnected ({why}); reconnecting")
            else:
                _err(f"rtlink: could not connect via {self.trying} ({why})")
        elif state is ConnectionState.CLOSED and change.code is not None:
            self.closed_by = _describe_close(change.code, change.reason)

    def on_subscribed(self, event: SubscribedEvent) -> None:
        channel = self.channel
        if event.resumed and not event.recovered:
            _err(f"rtlink: WARNING: could not resume {channel} after {self.last}: the "
                 "server's history no longer covers it; messages may have been missed. "
                 f"Continuing from {event.position}.")
        elif event.resumed:
            _err(f"rtlink: subscribed to {channel}, resumed after {self.last} "
                 "(recovered: nothing missed)")
        else:
            _err(f"rtlink: subscribed to {channel} at {event.position}")
        if not event.resumed or not event.recovered:
            self.last = event.position  # where the client resumes from next time


async def _tail(args: argparse.Namespace, token: str | Callable[[], str] | None) -> int:
    client = Client(args.url, codec=args.codec, token=token, transports=args.transports)
    channel: str = args.channel
    report = _ConnectionReport(args.url, channel, args.since)
    client.on("state", lambda change: report.on_state(change, client.session_id))
    subscription = client.subscribe(channel, since=args.since)
    subscription.on("subscribed", report.on_subscribed)
    printed = 0
    try:
        await client.connect()
        async for message in subscription:
            print(_format_message(message, args.format), flush=True)
            report.last = message.position
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
    _err(f"error: connection closed by the server ({report.closed_by or 'no reason'}); "
         "not reconnecting")
    return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

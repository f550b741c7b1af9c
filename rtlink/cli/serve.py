"""``rtlink serve``: run a server and the demo chat page until SIGINT or SIGTERM,
logging one line when it starts and one when it stops."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from ..config import (
    CONFIG_ENV,
    ConfigError,
    ServeConfig,
    format_config,
    load_serve_config,
    redact_url,
)
from .app import build_app
from .arguments import Commands, HelpFormatter
from .console import err, fields, setup_logging
from .serve_options import add_serve_options, serve_flags
from .signals import signal_handlers
from .status import EXIT_FAILURE, EXIT_OK, UsageError

__all__ = ["SHUTDOWN_TIMEOUT", "KEEPALIVE_TIMEOUT", "logger", "add_parser", "run"]

#: The command's logger; named "rtlink.cli", as its log lines have always said (the
#: operations guide shows them), not after this module.
logger = logging.getLogger("rtlink.cli")

#: Seconds the server gives open requests to finish on shutdown.
SHUTDOWN_TIMEOUT = 5.0
#: Seconds an idle kept-alive HTTP connection stays open (what ``web.run_app`` uses;
#: aiohttp's lower-level default is 3,630 s, which holds a descriptor per recent
#: HTTP client for an hour).
KEEPALIVE_TIMEOUT = 75.0
#: aiohttp's access log line (logger aiohttp.access), in the same key=value style.
_ACCESS_LOG_FORMAT = 'remote=%a request="%r" status=%s bytes=%b seconds=%Tf'

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


def add_parser(commands: Commands) -> None:
    """Add ``serve`` to the ``rtlink`` command."""
    serve = commands.add_parser(
        # No abbreviated options: `--token-secret VALUE` must not pass for
        # `--token-secret-file VALUE` (then echo the secret in "cannot read VALUE").
        "serve", allow_abbrev=False,
        help="run an rtlink server (in-memory backend by default) and a demo chat page",
        formatter_class=HelpFormatter, description=_SERVE_DESCRIPTION,
        epilog="""\
examples:
  rtlink serve --port 8080 --allowed-origin https://app.example.com
  RTLINK_BACKEND=redis://127.0.0.1:6379/0 rtlink serve --port 8081
  rtlink serve --config /etc/rtlink.toml --token-secret-file /run/secrets/rtlink
  rtlink serve --config /etc/rtlink.toml --print-config""",
    )
    add_serve_options(serve)
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``rtlink serve`` with its parsed ``args``; return the exit status."""
    try:
        config = load_serve_config(serve_flags(args), os.environ, args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.print_config:
        sys.stdout.write(format_config(config))
        return EXIT_OK
    setup_logging(config.log_level)
    try:
        app, _ = build_app(config)
    except (OSError, ValueError, ImportError) as exc:
        err(f"rtlink serve: error: cannot set up the server: {exc}")
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
    """Serve ``app`` until SIGINT or SIGTERM; a second one gives up on a clean shutdown."""
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second Ctrl-C: give up on a clean shutdown
        logger.info("shutting down (the same signal again forces it) %s",
                    fields(signal=signal.Signals(signum).name))
        stop.set()

    with signal_handlers(on_signal):
        # Handler cancellation: an SSE stream or a held poll whose client left is dropped
        # at once rather than at its next write (ping) or the end of the poll.
        runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT,
                               handler_cancellation=True, keepalive_timeout=KEEPALIVE_TIMEOUT,
                               access_log_format=_ACCESS_LOG_FORMAT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port)
            try:
                await site.start()
            except OSError as exc:
                err(f"rtlink serve: error: cannot listen on {config.host}:{config.port}: "
                    f"{exc.strerror or exc}")
                return EXIT_FAILURE
            port = runner.addresses[0][1] if runner.addresses else config.port
            page = _http_url(config.host, port, "/")
            endpoint = _http_url(config.host, port, config.path)
            print(f"rtlink serving on {page} (endpoint {endpoint}, backend "
                  f"{redact_url(config.backend)})", flush=True)
            logger.info("serving %s", fields(url=page, endpoint=endpoint, listen=config.host,
                                             port=port, **_describe_config(config)))
            await stop.wait()
        finally:
            await runner.cleanup()
    logger.info("stopped")
    return EXIT_OK


def _http_url(host: str, port: int, path: str) -> str:
    """The URL to browse to for a server listening on ``host``."""
    # A wildcard address is where the server listens, not an address to browse to.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"

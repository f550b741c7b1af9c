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

The package, one job per module: :mod:`~rtlink.cli.command` (:func:`main`: parse, run,
exit status), :mod:`~rtlink.cli.parser` (:func:`build_parser`), one module per
command (:mod:`~rtlink.cli.serve`, :mod:`~rtlink.cli.publish`,
:mod:`~rtlink.cli.tail`, :mod:`~rtlink.cli.token`: each adds its parser and runs
it), :mod:`~rtlink.cli.serve_options` (serve's flags from the option table),
:mod:`~rtlink.cli.app` (:func:`build_app`), :mod:`~rtlink.cli.arguments` (argument
types, the parser and help classes), :mod:`~rtlink.cli.clients` (what publish and
tail share), :mod:`~rtlink.cli.signals` (SIGINT and SIGTERM),
:mod:`~rtlink.cli.console` (stderr and log lines) and :mod:`~rtlink.cli.status`
(exit statuses, :class:`UsageError`).
"""

from __future__ import annotations

from .app import PATH_PLACEHOLDER, build_app
from .clients import TOKEN_ENV
from .command import main
from .parser import build_parser
from .serve import KEEPALIVE_TIMEOUT, SHUTDOWN_TIMEOUT, logger
from .status import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from .token import TOKEN_SECRET_ENV

__all__ = [
    "main",
    "build_parser",
    "build_app",
    "UsageError",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "PATH_PLACEHOLDER",
    "SHUTDOWN_TIMEOUT",
    "KEEPALIVE_TIMEOUT",
    "TOKEN_ENV",
    "TOKEN_SECRET_ENV",
    "logger",
]

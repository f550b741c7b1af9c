"""The ``rtlink`` argument parser: the top level (description, examples, ``--version``)
and one subcommand per command module, each adding its own parser."""

from __future__ import annotations

import argparse

from .. import __version__
from .arguments import HelpFormatter, IntermixedParser
from .publish import add_parser as add_publish
from .serve import add_parser as add_serve
from .tail import add_parser as add_tail
from .token import add_parser as add_token

__all__ = ["build_parser"]

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


def build_parser() -> argparse.ArgumentParser:
    """Return the ``rtlink`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="rtlink", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                     parser_class=IntermixedParser)
    commands.required = True
    # In the order of --help. Each sets its parser's default ``run``: the function that
    # runs the command with the parsed arguments and returns the exit status.
    for add_command in (add_serve, add_publish, add_tail, add_token):
        add_command(commands)
    return parser

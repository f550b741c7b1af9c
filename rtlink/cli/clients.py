"""What the client commands (``rtlink publish`` and ``rtlink tail``) share: the token
they connect with (``--token-file`` or ``RTLINK_TOKEN``) and how a close reads."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from ..config import ConfigError, read_secret_file
from .status import UsageError

__all__ = ["TOKEN_ENV", "add_token_option", "client_token", "describe_close"]

#: Where clients' token commands look for the token when no --token-file is given.
TOKEN_ENV = "RTLINK_TOKEN"


def add_token_option(parser: argparse.ArgumentParser) -> None:
    """--token-file, for clients of servers that require a token."""
    parser.add_argument("--token-file", metavar="FILE",
                        help="a file holding the token to connect with (read again before "
                             "every reconnection, so it can be renewed in place); default: "
                             f"the environment variable {TOKEN_ENV}, else no token. Make "
                             "tokens with `rtlink token`")


def client_token(args: argparse.Namespace) -> str | Callable[[], str] | None:
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


def describe_close(code: int | None, reason: str) -> str:
    """A close or a failed attempt as messages tell it: ``code 1008, forbidden``."""
    if code is None:
        return reason or "no reason"
    return f"code {code}{', ' + reason if reason else ''}"

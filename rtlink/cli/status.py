"""The exit statuses of the ``rtlink`` command, and :class:`UsageError`, which a
command raises to exit with :data:`EXIT_USAGE`."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED", "UsageError"]

#: Success.
EXIT_OK = 0
#: Failure: refused, unavailable, timed out, closed by the server for good.
EXIT_FAILURE = 1
#: Usage or configuration error (argparse exits with 2 too).
EXIT_USAGE = 2
#: Interrupted (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line found after parsing; exits with status 2."""

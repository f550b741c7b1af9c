"""What the commands' parsers are made of: argument types that turn a bad value into
argparse's usage error (``argument --port: <the message>``, status 2), JSON as the
commands take it, the parser class of the commands and the help formatter."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

from yarl import URL

from ..config import Integer, Number
from ..config.options import OPTIONS_BY_NAME
from ..errors import FrameError
from ..protocol import MAX_SAFE_INTEGER, Position, validate_channel

__all__ = [
    "argument_type",
    "positive_int",
    "last_count",
    "positive_float",
    "transport_list",
    "stream_position",
    "server_url",
    "channel_name",
    "strict_json",
    "IntermixedParser",
    "HelpFormatter",
    "Commands",
]

_T = TypeVar("_T")


def argument_type(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type from a parser raising ValueError (argparse then says
    ``argument --port: <the message>`` and exits with status 2)."""

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


#: An integer >= 1 (a count).
positive_int = argument_type(Integer(1).from_text)


def _last(text: str) -> int | str:
    # "all" as the clients take it; a count from 1 to 2**53-1 otherwise.
    if text == "all":
        return text
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_SAFE_INTEGER:
        raise ValueError(f"must be a count from 1 to {MAX_SAFE_INTEGER}, or all; "
                         f"not {text[:40]!r}")
    return int(text)


#: ``--last``: a count >= 1, or ``all``.
last_count = argument_type(_last)
#: A finite number > 0 (seconds).
positive_float = argument_type(Number().from_text)
#: Comma-separated transport names, as ``rtlink serve --transports`` takes them.
transport_list = argument_type(OPTIONS_BY_NAME["transports"].kind.from_text)
#: A position, ``EPOCH:OFFSET``.
stream_position = argument_type(Position.parse)


def server_url(text: str) -> str:
    """A server's rtlink URL: http(s) or ws(s), with a host."""
    url = URL(text)
    if url.scheme not in ("http", "https", "ws", "wss") or not url.host:
        raise argparse.ArgumentTypeError(
            f"expected the server's rtlink URL, like http://127.0.0.1:8080/rt, not {text!r}"
        )
    return text


def channel_name(text: str) -> str:
    """A valid channel name."""
    try:
        return validate_channel(text)
    except FrameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def strict_json(text: str) -> Any:
    """``text`` parsed as JSON, without the NaN and Infinity that Python's parser lets
    through (no other JSON reader takes them).

    Raises:
        ValueError: not valid JSON.
    """
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class IntermixedParser(argparse.ArgumentParser):
    """A command's parser that lets options sit between positionals
    (``publish URL --key K CHANNEL DATA``): with an optional URL before CHANNEL, plain
    argparse would hand a lone URL before an option to CHANNEL."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse with options between positionals (see the class)."""
        if self._intermixing:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the layout of descriptions; show meaningful defaults."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if (text and "default" not in text and action.default not in (None, False)
                and action.default is not argparse.SUPPRESS and action.option_strings):
            text += " (default: %(default)s)"
        return text


#: The subparsers of :func:`~rtlink.cli.build_parser`, to which each command adds its
#: parser (a string: argparse's class is not subscriptable at run time).
Commands: TypeAlias = "argparse._SubParsersAction[IntermixedParser]"

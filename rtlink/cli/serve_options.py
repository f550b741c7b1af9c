"""The flags of ``rtlink serve``, made from the option table
(:data:`~rtlink.config.SERVE_OPTIONS`): one flag per option, its help naming the
environment variable and the default; and the flags given, handed to the loader."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import CONFIG_ENV, SERVE_OPTIONS, Boolean, Choice, Option
from .arguments import argument_type

__all__ = ["add_serve_options", "serve_flags"]

#: How a default that is None or empty reads in --help, where "off" does not say it.
_UNSET_HELP = {
    "allowed_origins": ("only pages of this server's own host and port, when that host "
                        "is an IP address or localhost"),
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
    """An option's --help: its line, then where else it is set and its default."""
    if option.secret:
        where = (f"env {option.env} (the value) or {option.file_env} (a file); "
                 f"config {option.key}")
    else:
        where = f"env {option.env}"
    return f"{option.help} [{where}; default: {_default_help(option)}]"


def add_serve_options(serve: argparse.ArgumentParser) -> None:
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
            group.add_argument(option.flag, type=argument_type(option.kind.from_text),
                               metavar=option.metavar, help=help_text, **common)
            group.add_argument(option.off_flag, action="store_const", const=None,
                               help=f"same as {option.flag} off", **common)
        else:
            choices = option.kind.choices if isinstance(option.kind, Choice) else None
            serve.add_argument(option.flag, type=argument_type(option.kind.from_text),
                               action="extend" if option.repeatable else "store",
                               metavar=option.metavar, choices=choices, help=help_text,
                               **common)


def serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The serve options given as flags (absent flags leave no attribute)."""
    return {option.name: getattr(args, option.name)
            for option in SERVE_OPTIONS if hasattr(args, option.name)}

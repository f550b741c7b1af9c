"""Reading the files a configuration names: the TOML config file and the files that
hold secrets. Errors name the file and the source that named it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["read_secret_file", "read_config_file"]


def read_secret_file(path: str | Path, source: str) -> str:
    """The text of a secret file: its bytes decoded as UTF-8, as they are.

    Line endings are not translated (``newline=""``): a secret's key bytes are those
    of the file (but the final line ending, which :meth:`~rtlink.config.values.Kind.from_file`
    drops), which is what someone minting tokens in another language reads.

    Raises:
        ConfigError: the file cannot be read or is not UTF-8 (the message names
            ``source``).
    """
    try:
        with open(path, encoding="utf-8", newline="") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot read {str(path)!r}: {reason}") from None


def read_config_file(path: str, source: str) -> dict[str, Any]:
    """The tables of the TOML config file ``path``, named by ``source``.

    Raises:
        ConfigError: the file cannot be read, or is not valid TOML.
    """
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path} ({source}): cannot read it: "
                          f"{exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None

""":class:`ConfigError`, and the two messages every part of the loader builds on it:
a bad value named by its source, and an unknown key with a suggestion."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ConfigError", "parsed", "unknown_key"]


class ConfigError(Exception):
    """An invalid or unreadable configuration; the message names the source (the
    flag, the environment variable, the config file and key) and what was expected.
    ``rtlink serve`` exits with status 2 on it."""


def parsed(parse: Callable[[Any], Any], raw: Any, where: str) -> Any:
    """``parse(raw)``, its ValueError turned into a :class:`ConfigError` naming ``where``.

    Args:
        parse: a method of a :class:`~rtlink.config.Kind` (``from_text``, ``from_toml``,
            ``from_file``).
        raw: what the source holds.
        where: the source, as the message starts: ``"environment RTLINK_PORT"``.

    Raises:
        ConfigError: ``parse`` refused ``raw``.
    """
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def unknown_key(key: str, known: Iterable[str], where: str) -> ConfigError:
    """The error for a key of the config file that is not an option: it suggests the
    closest known key, or lists them all when none is close."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"
    return ConfigError(f"{where}: unknown option {key!r}{hint}")

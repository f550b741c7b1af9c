"""The kinds of values options have: how each is written in a flag or an environment
variable, in the config file and in a secret file, how it is checked, and how
``--print-config`` writes it back.

Every method raises ValueError with a message saying what was expected
(``expected an integer >= 0, got -1``); the loader (:mod:`rtlink.config.loading`)
prefixes it with the source.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from ..auth import MIN_SECRET_BYTES
from ..transports.publish_api import MIN_API_KEY_LENGTH, ApiKeys

__all__ = [
    "REDACTED",
    "Kind",
    "Integer",
    "Number",
    "Boolean",
    "Choice",
    "Text",
    "TextList",
    "Secret",
    "KeyList",
    "MetricsPath",
    "toml_literal",
    "shown",
]

#: How secrets are shown by ``--print-config`` (:func:`~rtlink.config.format_config`).
REDACTED = "<redacted>"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def toml_literal(value: Any) -> str:
    """``value`` written as TOML (strings, numbers, booleans and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(toml_literal(item) for item in value) + "]"


def shown(value: Any) -> str:
    """A value as it appears in an error message (short, quoted like the input)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Kind:
    """The type of an option: parses its text (flags, environment variables), checks
    its TOML value, reads it from a file (secrets) and writes it back as TOML.

    Every method raises ValueError with a message saying what was expected; the
    loader prefixes it with the source.
    """

    #: What a valid value looks like, for messages and help: "an integer >= 0".
    expected = "a value"

    def from_text(self, text: str) -> Any:
        """The value written as ``text`` in a flag or an environment variable."""
        raise NotImplementedError

    def from_toml(self, value: Any) -> Any:
        """The value as the config file has it (already a TOML type)."""
        if isinstance(value, str):
            return self.from_text(value)
        raise self.error(value)

    def from_file(self, content: str) -> Any:
        """The value read from a file (secrets): its text without one final line ending
        (``\\n``, ``\\r\\n`` or ``\\r``); everything else, spaces included, is kept."""
        return self.from_text(content.removesuffix("\n").removesuffix("\r"))

    def show(self, value: Any) -> str:
        """``value`` as a TOML literal, for ``--print-config``."""
        return toml_literal(value)

    def error(self, got: Any) -> ValueError:
        """The error for a value that is not :attr:`expected`."""
        return ValueError(f"expected {self.expected}, got {shown(got)}")


class Integer(Kind):
    """An integer within bounds; with ``off``, also ``"off"`` (None: no limit)."""

    def __init__(self, minimum: int, maximum: int | None = None, *, off: bool = False,
                 expected: str | None = None) -> None:
        self.minimum, self.maximum, self.off = minimum, maximum, off
        self.expected = expected or (
            f"an integer >= {minimum}" if maximum is None
            else f"an integer from {minimum} to {maximum}")
        if off:
            self.expected += ' or "off"'

    def from_text(self, text: str) -> int | None:
        if self.off and text.strip().lower() == "off":
            return None
        try:
            value = int(text.strip())
        except ValueError:
            raise self.error(text) from None
        return self._check(value, text)

    def from_toml(self, value: Any) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return self._check(value, value)
        if self.off and value == "off":
            return None
        raise self.error(value)

    def _check(self, value: int, got: Any) -> int:
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise self.error(got)
        return value

    def show(self, value: Any) -> str:
        return '"off"' if value is None else str(value)


class Number(Kind):
    """A positive finite number (seconds, a rate); with ``off``, also ``"off"``."""

    def __init__(self, *, off: bool = False) -> None:
        self.off = off
        self.expected = 'a number > 0 or "off"' if off else "a number > 0"

    def from_text(self, text: str) -> float | None:
        if self.off and text.strip().lower() == "off":
            return None
        try:
            value = float(text.strip())
        except ValueError:
            raise self.error(text) from None
        return self._check(value, text)

    def from_toml(self, value: Any) -> float | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._check(float(value), value)
        if self.off and value == "off":
            return None
        raise self.error(value)

    def _check(self, value: float, got: Any) -> float:
        if not 0 < value < math.inf:  # also refuses nan
            raise self.error(got)
        return value

    def show(self, value: Any) -> str:
        return '"off"' if value is None else repr(float(value))


class Boolean(Kind):
    """true or false (in text also yes/no, on/off, 1/0)."""

    expected = "true or false"

    def from_text(self, text: str) -> bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise self.error(text)

    def from_toml(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise self.error(value)


class Choice(Kind):
    """One of a few words."""

    def __init__(self, choices: Iterable[str]) -> None:
        self.choices = tuple(choices)
        self.expected = "one of " + ", ".join(self.choices)

    def from_text(self, text: str) -> str:
        word = text.strip().lower()
        if word not in self.choices:
            raise self.error(text)
        return word


class Text(Kind):
    """A string checked (and normalised) by ``check``, which raises ValueError."""

    def __init__(self, expected: str, check: Callable[[str], str]) -> None:
        self.expected = expected
        self._check = check

    def from_text(self, text: str) -> str:
        return self._check(text)


class TextList(Kind):
    """A list of strings each checked by ``item``: comma-separated in text, an array of
    strings in the config file; no repeats, and with ``non_empty`` at least one.

    Args:
        items: what the items are, for messages: ``"origins"``.
        item: checks (and normalises) one item; raises ValueError.
        non_empty: refuse an empty list.
    """

    def __init__(self, items: str, item: Callable[[str], str], *,
                 non_empty: bool = False) -> None:
        self.items = items
        self.expected = f"a list of {items}"
        self._item = item
        self.non_empty = non_empty

    def from_text(self, text: str) -> tuple[str, ...]:
        return self._check([part.strip() for part in text.split(",") if part.strip()], text)

    def from_toml(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"expected an array of {self.items} (strings), got {shown(value)}")
        return self._check(value, value)

    def _check(self, items: list[str], got: Any) -> tuple[str, ...]:
        checked = tuple(self._item(item) for item in items)
        if self.non_empty and not checked:
            raise ValueError(f"expected at least one of {self.items}, got {shown(got)}")
        if len(set(checked)) != len(checked):
            raise ValueError(f"expected {self.items} without repeats, got {shown(got)}")
        return checked


class Secret(Kind):
    """A token secret: at least :data:`~rtlink.auth.MIN_SECRET_BYTES` bytes. Messages
    never include the value."""

    expected = (f"a secret of at least {MIN_SECRET_BYTES} bytes (make one with: python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))')")

    def from_text(self, text: str) -> str:
        size = len(text.encode())
        if size < MIN_SECRET_BYTES:
            raise ValueError(f"expected {self.expected}, got {size} bytes")
        return text

    def from_toml(self, value: Any) -> str:  # pragma: no cover - never read inline
        raise ValueError("secrets are read from a file")

    def show(self, value: Any) -> str:
        return json.dumps(REDACTED)


class KeyList(Kind):
    """Publish API keys: comma-separated in an environment variable, one per line in a
    file (blank lines and lines starting with ``#`` are skipped). Each at least
    :data:`MIN_API_KEY_LENGTH` visible ASCII characters (no spaces), and no commas.
    Messages never include a key."""

    expected = (f"API keys of at least {MIN_API_KEY_LENGTH} visible ASCII characters "
                "(no spaces or commas)")

    def from_text(self, text: str) -> tuple[str, ...]:
        return self._check(text.split(","))

    def from_file(self, content: str) -> tuple[str, ...]:
        return self._check([line for line in content.splitlines()
                            if line.strip() and not line.lstrip().startswith("#")])

    def from_toml(self, value: Any) -> tuple[str, ...]:  # pragma: no cover - never inline
        raise ValueError("API keys are read from a file")

    def _check(self, items: list[str]) -> tuple[str, ...]:
        keys = tuple(item.strip() for item in items if item.strip())
        if not keys:
            raise ValueError(f"expected {self.expected}, got none")
        if any("," in key for key in keys):  # would split apart in RTLINK_API_KEYS
            raise ValueError("API keys may not contain commas")
        ApiKeys(keys)  # raises ValueError naming the key by its rank, never its value
        return keys

    def show(self, value: Any) -> str:
        return toml_literal([REDACTED] * len(value))


def _metrics_path(text: str) -> str:
    """Check a metrics path: absolute, not the root, no query or fragment, no spaces."""
    path = text.strip()
    if (not path.startswith("/") or path == "/" or any(c in path for c in "?#")
            or any(c.isspace() for c in path)):
        raise ValueError(f'expected an absolute URL path like /metrics, or "off", got {text!r}')
    return path


class MetricsPath(Kind):
    """Where Prometheus metrics are served, or None (``"off"``, or ``false`` in TOML)."""

    expected = 'an absolute URL path like /metrics, or "off"'

    def from_text(self, text: str) -> str | None:
        return None if text.strip().lower() == "off" else _metrics_path(text)

    def from_toml(self, value: Any) -> str | None:
        if value is False:
            return None
        if isinstance(value, str):
            return self.from_text(value)
        raise self.error(value)

    def show(self, value: Any) -> str:
        return '"off"' if value is None else toml_literal(value)


"""The configuration of ``rtlink serve``: defaults, a TOML file, environment variables
and flags, merged and validated, remembering where every value came from.

Sources, from weakest to strongest (for each option the strongest one that sets it
wins):

1. the defaults (:class:`ServeConfig`'s field defaults);
2. a TOML file (``--config FILE`` or ``RTLINK_CONFIG``): top-level keys named like
   the options (``port = 8081``), and the only place for channel rules, one table per
   pattern, first match wins::

       port = 8081
       backend = "redis://redis.internal:6379/0"
       allowed_origins = ["https://app.example.com"]
       token_secret_file = "/run/secrets/rtlink-token"   # relative: to this file

       [channels."news:*"]
       history_size = 1000
       history_ttl = 86400

       [channels."user:{user}:*"]
       subscribe = "authenticated"

   A table's missing fields take the server-wide ``history_size``, ``history_ttl``
   and ``client_publish`` (whatever source set them) and :class:`ChannelOptions`'
   defaults for the rest. Without any table, one rule ``"*"`` built from the
   server-wide values allows every channel;
3. environment variables ``RTLINK_<OPTION>`` (``RTLINK_PORT=8081``; lists are
   comma-separated: ``RTLINK_ALLOWED_ORIGINS=https://a.example,https://b.example``);
   an empty variable counts as unset;
4. command-line flags (``--port 8081``).

Secrets (the token secret, the publish API keys) are never flag values, which any
user of the machine can read with ``ps``: flags and the config file name a file that
holds them (``--token-secret-file``, ``token_secret_file``); environment variables
hold them (``RTLINK_TOKEN_SECRET``) or name such a file
(``RTLINK_TOKEN_SECRET_FILE``, as container secrets are mounted). Their values never
appear in messages or in :func:`format_config`.

Every value is checked where it is read, and an error names its source::

    config file rtlink.toml: channels.'news:*'.history_size: expected an integer >= 0, got -1
    environment RTLINK_PORT: expected a port number (0 to 65535), got 'http'

Pure apart from reading the config and secret files: no asyncio, no aiohttp, no
argparse (the command line is :mod:`rtlink.cli`'s business; it hands over the flags
it parsed with :meth:`Kind.from_text`).
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from .auth import MIN_SECRET_BYTES
from .backends import backend_schemes
from .channels import USER_PLACEHOLDER, ChannelOptions, ChannelRules
from .origins import OriginPolicy
from .server import CLIENT_FILES, ENDPOINTS, TRANSPORT_NAMES
from .transports.publish_api import MIN_API_KEY_LENGTH, ApiKeys

__all__ = [
    "ConfigError",
    "ServeConfig",
    "Kind",
    "Integer",
    "Number",
    "Boolean",
    "Choice",
    "Text",
    "TextList",
    "Secret",
    "KeyList",
    "Option",
    "SERVE_OPTIONS",
    "CONFIG_ENV",
    "load_serve_config",
    "format_config",
    "read_secret_file",
    "redact_url",
    "mount_path",
    "backend_url",
    "origin",
    "transport_name",
]

#: The environment variable naming the config file when ``--config`` is not given.
CONFIG_ENV = "RTLINK_CONFIG"
#: How secrets are shown in :func:`format_config`.
REDACTED = "<redacted>"
_LOG_LEVELS = ("debug", "info", "warning", "error")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class ConfigError(Exception):
    """An invalid or unreadable configuration; the message names the source (the
    flag, the environment variable, the config file and key) and what was expected.
    ``rtlink serve`` exits with status 2 on it."""


def redact_url(url: str) -> str:
    """``url`` without its passwords (``redis://user:***@host``, and query options
    named like ``*password``, as Sentinel's), for printing."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [: show the scheme only, never the rest
        return f"{url.partition(':')[0]}://***"
    netloc, query = parts.netloc, parts.query
    credentials, at, hosts = netloc.rpartition("@")
    user, colon, _ = credentials.partition(":")
    if at and colon:
        netloc = f"{user}:***@{hosts}"
    if "password" in query:
        query = "&".join(
            f"{name}=***" if name.endswith("password") else f"{name}{eq}{value}"
            for name, eq, value in (item.partition("=") for item in query.split("&"))
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Not urlunsplit: it turns unix:///path into unix:/path.
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


# --- kinds: how the values of an option are written and checked -------------------------


def _toml_literal(value: Any) -> str:
    """``value`` written as TOML (strings, numbers, booleans and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(_toml_literal(item) for item in value) + "]"


def _shown(value: Any) -> str:
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
        """The value read from a file (secrets): its text, without the final newline."""
        return self.from_text(content.removesuffix("\n").removesuffix("\r"))

    def show(self, value: Any) -> str:
        """``value`` as a TOML literal, for ``--print-config``."""
        return _toml_literal(value)

    def error(self, got: Any) -> ValueError:
        """The error for a value that is not :attr:`expected`."""
        return ValueError(f"expected {self.expected}, got {_shown(got)}")


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
            raise ValueError(f"expected an array of {self.items} (strings), got {_shown(value)}")
        return self._check(value, value)

    def _check(self, items: list[str], got: Any) -> tuple[str, ...]:
        checked = tuple(self._item(item) for item in items)
        if self.non_empty and not checked:
            raise ValueError(f"expected at least one of {self.items}, got {_shown(got)}")
        if len(set(checked)) != len(checked):
            raise ValueError(f"expected {self.items} without repeats, got {_shown(got)}")
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
        return _toml_literal([REDACTED] * len(value))


# --- checks of single strings -----------------------------------------------------------


def _host(text: str) -> str:
    host = text.strip()
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"expected a host name or address, like 127.0.0.1 or 0.0.0.0, "
                         f"got {text!r}")
    return host


def mount_path(text: str) -> str:
    """Normalise a mount path the way :func:`rtlink.attach` does (``"/"`` → ``""``)."""
    stripped = text.strip().strip("/")
    if any(c in stripped for c in "?#") or any(c.isspace() for c in stripped):
        raise ValueError(f"expected a URL path like /rt, got {text!r}")
    return "/" + stripped if stripped else ""


def _metrics_path(text: str) -> str:
    path = text.strip()
    if (not path.startswith("/") or path == "/" or any(c in path for c in "?#")
            or any(c.isspace() for c in path)):
        raise ValueError(f'expected an absolute URL path like /metrics, or "off", got {text!r}')
    return path


class _MetricsPath(Kind):
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
        return '"off"' if value is None else _toml_literal(value)


def backend_url(text: str) -> str:
    """Check that ``text`` is a URL of a registered backend scheme."""
    scheme = urlsplit(text.strip()).scheme.lower()
    if scheme not in backend_schemes():
        known = ", ".join(f"{name}://" for name in backend_schemes())
        raise ValueError(f"expected a backend URL ({known}), like redis://127.0.0.1:6379/0, "
                         f"got {redact_url(text)!r}")
    return text.strip()


def origin(text: str) -> str:
    """Check one entry of ``allowed_origins`` (see :mod:`rtlink.origins`)."""
    OriginPolicy([text])  # raises ValueError naming the problem
    return text


def transport_name(text: str) -> str:
    """Check the name of a transport (``websocket``, ``sse``, ``longpoll``)."""
    name = text.strip().lower()
    if name not in TRANSPORT_NAMES:
        raise ValueError(f"unknown transport {text!r}; known: {', '.join(TRANSPORT_NAMES)}")
    return name


# --- the configuration ------------------------------------------------------------------


@attrs.frozen
class ServeConfig:
    """The effective configuration of ``rtlink serve`` (the defaults, as constructed).

    Attributes:
        host: interface to listen on.
        port: TCP port (0: any free one).
        path: mount path of rtlink (``""`` for the root).
        backend: backend URL.
        history_size: server-wide publications kept per channel.
        history_ttl: server-wide seconds a publication stays in history.
        client_publish: server-wide: whether clients may publish.
        allowed_origins: web origins whose pages may connect; None: same origin only.
        publish_rate: client publishes per second per connection; None: no limit.
        publish_burst: client publishes allowed at once.
        max_connections_per_ip: connections per client address; None: no limit.
        websocket_compression: accept permessage-deflate on WebSocket.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        transports: the transports served.
        token_secret: the HS256 secret of :class:`~rtlink.auth.TokenAuth`; None: no
            authentication (every connection is anonymous).
        allow_anonymous: with a token secret, accept connections without a token.
        api_keys: keys of the publish API (``POST {path}/publish``); empty: not mounted.
        metrics_path: where Prometheus metrics are served; None: not served.
        channels: channel rules from the config file; None: the ``"*"`` rule of
            :meth:`channel_rules`.
        config_file: the config file read, if any.
        sources: where each value came from, by option name (and
            ``"channels.'PATTERN'.FIELD"``): ``"default"``, ``"flag --port"``,
            ``"environment RTLINK_PORT"``, ``"config file x.toml"``, ...
    """

    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/rt"
    backend: str = "memory://"
    history_size: int = 100
    history_ttl: float = 300.0
    client_publish: bool = True
    allowed_origins: tuple[str, ...] | None = None
    publish_rate: float | None = 50.0
    publish_burst: int = 100
    max_connections_per_ip: int | None = None
    websocket_compression: bool = False
    log_level: str = "info"
    transports: tuple[str, ...] = TRANSPORT_NAMES
    token_secret: str | None = attrs.field(default=None, repr=False)
    allow_anonymous: bool = True
    api_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    metrics_path: str | None = "/metrics"
    channels: Mapping[str, ChannelOptions] | None = None
    config_file: str | None = None
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False)

    def channel_rules(self) -> dict[str, ChannelOptions]:
        """The hub's channel rules: those of the config file, else every channel with
        the server-wide history and client publishing settings."""
        if self.channels is not None:
            return dict(self.channels)
        return {"*": ChannelOptions(history_size=self.history_size,
                                    history_ttl=self.history_ttl,
                                    client_publish=self.client_publish)}

    @property
    def needs_authentication(self) -> bool:
        """Whether some channel rule refuses anonymous connections."""
        return any(options.subscribe == "authenticated" or USER_PLACEHOLDER in pattern
                   for pattern, options in self.channel_rules().items())


@attrs.frozen
class Option:
    """One option of ``rtlink serve``, as a flag, an environment variable and a key of
    the config file.

    Attributes:
        name: the :class:`ServeConfig` field (and, for plain options, the TOML key).
        kind: its type.
        help: one line for ``--help``.
        metavar: the flag's value placeholder.
        secret: read from a file (flag ``--X-file``, key ``X_file``) or the environment
            (``RTLINK_X`` holds it, ``RTLINK_X_FILE`` names a file); never printed.
        flag_stem: the flag's name without dashes if not the name's (``api-key``).
        repeatable: the flag may be given several times, its values adding up.
        off_flag: a flag without value setting the option to None (``--no-metrics``).
    """

    name: str
    kind: Kind
    help: str
    metavar: str | None = None
    secret: bool = False
    flag_stem: str | None = None
    repeatable: bool = False
    off_flag: str | None = None

    @property
    def default(self) -> Any:
        """The default value (that of :class:`ServeConfig`)."""
        return getattr(_DEFAULTS, self.name)

    @property
    def flag(self) -> str:
        """The command-line flag: ``--history-size``; ``--token-secret-file`` for secrets."""
        stem = self.flag_stem or self.name.replace("_", "-")
        return f"--{stem}-file" if self.secret else f"--{stem}"

    @property
    def env(self) -> str:
        """The environment variable: ``RTLINK_HISTORY_SIZE``."""
        return "RTLINK_" + self.name.upper()

    @property
    def file_env(self) -> str | None:
        """For secrets, the environment variable naming a file that holds the value."""
        return self.env + "_FILE" if self.secret else None

    @property
    def key(self) -> str:
        """The config file key: the name; ``NAME_file`` (a path) for secrets."""
        return self.name + "_file" if self.secret else self.name


_DEFAULTS = ServeConfig()

#: Every option of ``rtlink serve`` but ``--config`` and the channel rules, in the
#: order of ``--help``.
SERVE_OPTIONS: tuple[Option, ...] = (
    Option("host", Text("a host name or address", _host),
           "interface to listen on (0.0.0.0: every IPv4 interface)", "HOST"),
    Option("port", Integer(0, 65535, expected="a port number (0 to 65535)"),
           "TCP port to listen on (0 picks a free one)", "PORT"),
    Option("path", Text("a URL path like /rt", mount_path),
           "mount path of the rtlink endpoint", "PATH"),
    Option("backend", Text("a backend URL", backend_url),
           "the engine: memory:// (this process only) or redis://HOST:PORT/DB (shared by "
           "every node started with it)", "URL"),
    Option("transports", TextList(f"transports ({', '.join(TRANSPORT_NAMES)})",
                                  transport_name, non_empty=True),
           "the transports served, comma-separated", "LIST"),
    Option("history_size", Integer(0),
           "publications kept per channel for resume (0 disables resume)", "N"),
    Option("history_ttl", Number(), "seconds a publication stays in history", "SECONDS"),
    Option("client_publish", Boolean(),
           "let clients publish (rtlink publish, the demo page); with --no-client-publish "
           "they may only subscribe and publishes are refused with error 403"),
    Option("allowed_origins", TextList("origins", origin),
           "web origins whose pages may connect, like https://app.example.com, "
           "https://*.example.com (subdomains), * (any) or null; repeat or separate with "
           "commas. Clients that send no Origin (not browsers) are always allowed", "ORIGIN",
           flag_stem="allowed-origin", repeatable=True),
    Option("publish_rate", Number(off=True),
           "client publishes allowed per second per connection, on average; more are "
           "refused with error 429 and sent again by clients (off: no limit)", "PER_SECOND"),
    Option("publish_burst", Integer(1),
           "client publishes allowed at once before --publish-rate applies", "N"),
    Option("max_connections_per_ip", Integer(1, off=True),
           "connections open at once from one client address; more are refused with 1013 "
           "(off: no limit; behind a proxy every client has the proxy's address: limit "
           "there instead)", "N"),
    Option("websocket_compression", Boolean(),
           "accept permessage-deflate when a WebSocket client offers it (browsers always "
           "do); off by default: it costs zlib state per connection and CPU per message"),
    Option("token_secret", Secret(),
           "a file holding the HS256 secret of client tokens (make tokens with `rtlink "
           "token`); turns authentication on", "FILE", secret=True),
    Option("allow_anonymous", Boolean(),
           "with a token secret, also accept connections without a token (they may use "
           'only channels whose rule has subscribe = "anyone")'),
    Option("api_keys", KeyList(),
           "a file of publish API keys, one per line; mounts POST PATH/publish "
           "(Authorization: Bearer KEY)", "FILE", secret=True, flag_stem="api-key"),
    Option("metrics_path", _MetricsPath(),
           "where Prometheus metrics are served (outside PATH)", "PATH",
           off_flag="--no-metrics"),
    Option("log_level", Choice(_LOG_LEVELS),
           "logging level (info includes one access-log line per request)", "LEVEL"),
)
from .transports.registry import root_routes  # noqa: E402, I001 - the registry owns them
#: The paths rtlink takes when mounted at the root (``path = "/"``).
_ROOT_ROUTES = root_routes(ENDPOINTS, CLIENT_FILES)
_BY_KEY = {option.key: option for option in SERVE_OPTIONS}
_BY_NAME = {option.name: option for option in SERVE_OPTIONS}
#: The fields of a ``[channels."PATTERN"]`` table, and the server-wide option each one
#: takes when missing (None: :class:`ChannelOptions`' default).
_CHANNEL_FIELDS: dict[str, tuple[Kind, str | None]] = {
    "history_size": (Integer(0), "history_size"),
    "history_ttl": (Number(), "history_ttl"),
    "client_publish": (Boolean(), "client_publish"),
    "key_ttl": (Number(), None),
    "subscribe": (Choice(("anyone", "authenticated")), None),
}


def read_secret_file(path: str | Path, source: str) -> str:
    """The text of a secret file.

    Raises:
        ConfigError: the file cannot be read (the message names ``source``).
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot read {str(path)!r}: {reason}") from None


# --- loading ----------------------------------------------------------------------------


def load_serve_config(flags: Mapping[str, Any], environ: Mapping[str, str],
                      config_file: str | None = None) -> ServeConfig:
    """Merge the defaults, the config file, the environment and the flags.

    Args:
        flags: values of the flags given, by option name, already parsed with
            :meth:`Kind.from_text` (for secret options: the path of the file).
        environ: the environment (``os.environ``).
        config_file: the ``--config`` flag; if None, ``RTLINK_CONFIG`` names the file.

    Raises:
        ConfigError: a value is invalid, a file cannot be read, or the options do
            not fit together (channel rules needing authentication without a token
            secret, the metrics path inside the rtlink path).
    """
    values: dict[str, Any] = {option.name: option.default for option in SERVE_OPTIONS}
    sources = dict.fromkeys(values, "default")
    file_source = "flag --config"
    if config_file is None and environ.get(CONFIG_ENV):
        config_file, file_source = environ[CONFIG_ENV], f"environment {CONFIG_ENV}"
    table: dict[str, Any] = {}
    if config_file is not None:
        table = _read_config_file(config_file, file_source)
        _apply_file(table, config_file, values, sources)
    _apply_environment(environ, values, sources)
    _apply_flags(flags, values, sources)
    channels = None
    if "channels" in table:
        channels = _channel_rules(table["channels"], f"config file {config_file}",
                                  values, sources)
    config = ServeConfig(**values, channels=channels, config_file=config_file,
                         sources=sources)
    _check_consistency(config)
    return config


def _read_config_file(path: str, source: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path} ({source}): cannot read it: "
                          f"{exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def _unknown_key(key: str, known: Iterable[str], where: str) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"
    return ConfigError(f"{where}: unknown option {key!r}{hint}")


def _apply_file(table: Mapping[str, Any], path: str, values: dict[str, Any],
                sources: dict[str, str]) -> None:
    source = f"config file {path}"
    for key, raw in table.items():
        if key == "channels":
            continue  # needs the merged server-wide values: see _channel_rules
        option = _BY_KEY.get(key)
        if option is None:
            extra = {o.name: o.key for o in SERVE_OPTIONS if o.secret}
            if key in extra:  # e.g. token_secret = "..." inline
                raise ConfigError(f"{source}: {key}: secrets are not written in the config "
                                  f"file; put it in a file and set {extra[key]} = \"PATH\" "
                                  f"(or use the environment variable RTLINK_{key.upper()})")
            raise _unknown_key(key, [*_BY_KEY, "channels"], source)
        if option.secret:
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"{source}: {key}: expected the path of a file, got "
                                  f"{_shown(raw)}")
            # Relative to the config file, so a config and its secrets move together.
            secret_path = Path(path).parent / raw
            where = f"file {secret_path} ({source}: {key})"
            values[option.name] = _parse(option.kind.from_file,
                                         read_secret_file(secret_path, f"{source}: {key}"),
                                         where)
            sources[option.name] = where
        else:
            values[option.name] = _parse(option.kind.from_toml, raw, f"{source}: {key}")
            sources[option.name] = source


def _apply_environment(environ: Mapping[str, str], values: dict[str, Any],
                       sources: dict[str, str]) -> None:
    for option in SERVE_OPTIONS:
        text = environ.get(option.env) or None
        file_env = option.file_env
        path = None
        if file_env is not None:
            path = environ.get(file_env) or None
        if text is not None and path is not None:
            raise ConfigError(f"environment: set {option.env} or {file_env}, not both")
        if text is not None:
            where = f"environment {option.env}"
            values[option.name] = _parse(option.kind.from_text, text, where)
        elif path is not None:
            where = f"file {path} (environment {file_env})"
            content = read_secret_file(path, f"environment {file_env}")
            values[option.name] = _parse(option.kind.from_file, content, where)
        else:
            continue
        sources[option.name] = where


def _apply_flags(flags: Mapping[str, Any], values: dict[str, Any],
                 sources: dict[str, str]) -> None:
    for name, value in flags.items():
        option = _BY_NAME[name]
        if option.secret:
            where = f"file {value} (flag {option.flag})"
            content = read_secret_file(value, f"flag {option.flag}")
            values[name] = _parse(option.kind.from_file, content, where)
        else:
            values[name] = tuple(value) if option.repeatable else value
            if value is None and option.off_flag is not None:
                where = f"flag {option.off_flag}"
            elif value is False and isinstance(option.kind, Boolean):
                where = f"flag --no-{option.flag.removeprefix('--')}"
            else:
                where = f"flag {option.flag}"
        sources[name] = where


def _parse(parse: Callable[[Any], Any], raw: Any, where: str) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _channel_rules(tables: Any, source: str, values: Mapping[str, Any],
                   sources: dict[str, str]) -> dict[str, ChannelOptions]:
    if not isinstance(tables, dict):
        raise ConfigError(f'{source}: channels: expected tables like [channels."news:*"], '
                          f"got {_shown(tables)}")
    if not tables:
        raise ConfigError(f'{source}: channels: no rules; add tables like [channels."news:*"] '
                          "(or remove [channels] to allow every channel)")
    rules: dict[str, ChannelOptions] = {}
    for pattern, table in tables.items():
        where = f"{source}: channels.{pattern!r}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table of options ({', '.join(_CHANNEL_FIELDS)})"
                              f", got {_shown(table)}")
        fields: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in _CHANNEL_FIELDS:
                raise _unknown_key(key, _CHANNEL_FIELDS, where)
            fields[key] = _parse(_CHANNEL_FIELDS[key][0].from_toml, raw, f"{where}.{key}")
            sources[f"channels.{pattern!r}.{key}"] = source
        for key, (_, inherited) in _CHANNEL_FIELDS.items():
            if key in fields:
                continue
            if inherited is not None:
                fields[key] = values[inherited]
                sources[f"channels.{pattern!r}.{key}"] = (
                    f"server-wide {inherited} ({sources[inherited]})")
            else:
                sources[f"channels.{pattern!r}.{key}"] = "default"
        try:
            ChannelRules({pattern: ChannelOptions()})  # the pattern's syntax
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        rules[pattern] = ChannelOptions(**fields)
    return rules


def _check_consistency(config: ServeConfig) -> None:
    """Options that are valid alone but not together."""
    if config.token_secret is None:
        if config.needs_authentication:
            pattern = next(p for p, o in config.channel_rules().items()
                           if o.subscribe == "authenticated" or USER_PLACEHOLDER in p)
            raise ConfigError(
                f"config file {config.config_file}: channels.{pattern!r}: needs authenticated "
                "connections, but no token secret is set (--token-secret-file FILE, "
                "RTLINK_TOKEN_SECRET or token_secret_file): nobody could use it")
        if not config.allow_anonymous:
            raise ConfigError(f"{config.sources['allow_anonymous']}: allow_anonymous = false "
                              "needs a token secret (--token-secret-file FILE, "
                              "RTLINK_TOKEN_SECRET or token_secret_file)")
    metrics, base = config.metrics_path, config.path
    if metrics is not None and (metrics == base or metrics.startswith(base + "/") if base
                                else metrics.rstrip("/") in _ROOT_ROUTES):
        where = f"outside the rtlink path {base}" if base else "not used by rtlink (at /)"
        raise ConfigError(f"{config.sources['metrics_path']}: metrics_path: expected a path "
                          f"{where}, got {metrics!r}")


# --- printing ---------------------------------------------------------------------------


def format_config(config: ServeConfig) -> str:
    """The effective configuration as TOML, each value with its source in a comment.

    Options without a value, and secrets (redacted), are comment lines, so that the
    text is itself a config file giving the same configuration (secrets aside).
    """
    rows: list[tuple[str, str]] = []
    if config.config_file is not None:
        rows.append((f"# config file: {config.config_file}", ""))
    for option in SERVE_OPTIONS:
        value = getattr(config, option.name)
        if not value and option.name in _UNSET:
            line = f"# {option.name}: not set ({_UNSET[option.name]})"
        elif option.secret:  # a comment: the output stays a loadable config file
            line = f"# {option.name} = {option.kind.show(value)}"
        elif option.name == "backend":
            line = f"{option.name} = {_toml_literal(redact_url(value))}"
        elif option.name == "path":
            line = f"{option.name} = {_toml_literal(value or '/')}"  # "" is the root
        else:
            line = f"{option.name} = {option.kind.show(value)}"
        rows.append((line, config.sources.get(option.name, "default")))
    rules = config.channel_rules()
    for pattern, options in rules.items():
        rows.append(("", ""))
        header = f"[channels.{json.dumps(pattern)}]"
        if config.channels is None:
            rows.append((header, "default: every channel (no [channels] tables)"))
        else:
            rows.append((header, ""))
        for key, (kind, inherited) in _CHANNEL_FIELDS.items():
            source = config.sources.get(f"channels.{pattern!r}.{key}")
            if source is None:  # the default "*" rule
                source = (f"server-wide {inherited} ({config.sources[inherited]})"
                          if inherited is not None else "default")
            rows.append((f"{key} = {kind.show(getattr(options, key))}", source))
    # Comments line up, except after the few long lines (they would push all far right).
    width = min(max(len(line) for line, source in rows if source), _COMMENT_COLUMN)
    return "\n".join(
        f"{line:<{width}}  # {source}" if source else line for line, source in rows
    ) + "\n"


_COMMENT_COLUMN = 40
_UNSET = {
    "allowed_origins": "only pages of this server's own origin",
    "token_secret": "no authentication: every connection is anonymous",
    "api_keys": "no publish API",
}

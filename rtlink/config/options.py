"""The option table of ``rtlink serve``: :data:`SERVE_OPTIONS`, one :class:`Option`
per setting, is the single source of its flag, its environment variable, its config
file key, its kind and its help; :data:`CHANNEL_FIELDS` is the same for the fields of
a ``[channels."PATTERN"]`` table."""

from __future__ import annotations

from typing import Any

import attrs

from ..server import TRANSPORT_NAMES
from .checks import backend_url, host, mount_path, origin, transport_name
from .settings import ServeConfig
from .values import (
    Boolean,
    Choice,
    Integer,
    KeyList,
    Kind,
    MetricsPath,
    Number,
    Secret,
    Text,
    TextList,
)

__all__ = [
    "CONFIG_ENV",
    "LOG_LEVELS",
    "Option",
    "SERVE_OPTIONS",
    "OPTIONS_BY_KEY",
    "OPTIONS_BY_NAME",
    "CHANNEL_FIELDS",
]

#: The environment variable naming the config file when ``--config`` is not given.
CONFIG_ENV = "RTLINK_CONFIG"
#: The values of ``log_level``.
LOG_LEVELS = ("debug", "info", "warning", "error")


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
    Option("host", Text("a host name or address", host),
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
    Option("metrics_path", MetricsPath(),
           "where Prometheus metrics are served (outside PATH)", "PATH",
           off_flag="--no-metrics"),
    Option("log_level", Choice(LOG_LEVELS),
           "logging level (info includes one access-log line per request)", "LEVEL"),
)
#: The options by config file key (``token_secret_file`` for a secret).
OPTIONS_BY_KEY = {option.key: option for option in SERVE_OPTIONS}
#: The options by name (the :class:`ServeConfig` field).
OPTIONS_BY_NAME = {option.name: option for option in SERVE_OPTIONS}
#: The fields of a ``[channels."PATTERN"]`` table, and the server-wide option each one
#: takes when missing (None: :class:`~rtlink.channels.ChannelOptions`' default).
CHANNEL_FIELDS: dict[str, tuple[Kind, str | None]] = {
    "history_size": (Integer(0), "history_size"),
    "history_ttl": (Number(), "history_ttl"),
    "client_publish": (Boolean(), "client_publish"),
    "key_ttl": (Number(), None),
    "subscribe": (Choice(("anyone", "authenticated")), None),
    "presence": (Boolean(), None),
}

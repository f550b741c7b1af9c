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

The package, one job per module: :mod:`~rtlink.config.values` (the kinds of values:
how each is parsed, checked and written back), :mod:`~rtlink.config.checks` (the
checks of single strings, :func:`redact_url`), :mod:`~rtlink.config.settings`
(:class:`ServeConfig`), :mod:`~rtlink.config.options` (the option table, the single
source of flags, environment variables and TOML keys), :mod:`~rtlink.config.files`
(reading the config and secret files), :mod:`~rtlink.config.rules` (the
``[channels]`` tables), :mod:`~rtlink.config.loading` (the merge) and
:mod:`~rtlink.config.printing` (``--print-config``); :mod:`~rtlink.config.errors`
holds :class:`ConfigError`.

Why hand-written kinds rather than a settings library (pydantic-settings, cattrs on
the attrs classes): the same option is read three ways with different rules (a flag's
or variable's text accepts ``yes`` and ``off``, TOML wants a real boolean or number;
secrets only from files, relative to the config file), every error starts with its
exact source (``environment RTLINK_PORT: expected a port number (0 to 65535), got
'http'``), never echoes a secret, and each value remembers where it came from for
``--print-config``. Neither library tracks per-field sources or writes values back as
TOML, and their validation messages have their own format, so each kind would
come back as a custom hook or validator of about the same size, plus a dependency
(pydantic: a compiled core) for a library that keeps its dependencies few.
"""

from __future__ import annotations

from .checks import backend_url, mount_path, origin, redact_url, transport_name
from .errors import ConfigError
from .files import read_secret_file
from .loading import load_serve_config
from .options import CONFIG_ENV, SERVE_OPTIONS, Option
from .printing import format_config
from .settings import ServeConfig
from .values import (
    REDACTED,
    Boolean,
    Choice,
    Integer,
    KeyList,
    Kind,
    Number,
    Secret,
    Text,
    TextList,
)

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
    "REDACTED",
    "load_serve_config",
    "format_config",
    "read_secret_file",
    "redact_url",
    "mount_path",
    "backend_url",
    "origin",
    "transport_name",
]

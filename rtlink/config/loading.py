"""Loading: the defaults, the config file, the environment and the flags merged into
a :class:`~rtlink.config.ServeConfig`, each value checked where it is read and its
source remembered, then the options that do not fit together refused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..channels import USER_PLACEHOLDER
from ..transports.registry import root_routes
from .errors import ConfigError, parsed, unknown_key
from .files import read_config_file, read_secret_file
from .options import CONFIG_ENV, OPTIONS_BY_KEY, OPTIONS_BY_NAME, SERVE_OPTIONS
from .rules import channel_rules
from .settings import ServeConfig
from .values import Boolean, shown

__all__ = ["load_serve_config"]

#: The paths rtlink takes when mounted at the root (``path = "/"``).
_ROOT_ROUTES = root_routes()


def load_serve_config(flags: Mapping[str, Any], environ: Mapping[str, str],
                      config_file: str | None = None) -> ServeConfig:
    """Merge the defaults, the config file, the environment and the flags.

    Args:
        flags: values of the flags given, by option name, already parsed with
            :meth:`~rtlink.config.Kind.from_text` (for secret options: the path of the file).
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
        table = read_config_file(config_file, file_source)
        _apply_file(table, config_file, values, sources)
    _apply_environment(environ, values, sources)
    _apply_flags(flags, values, sources)
    channels = None
    if "channels" in table:
        channels = channel_rules(table["channels"], f"config file {config_file}",
                                 values, sources)
    config = ServeConfig(**values, channels=channels, config_file=config_file,
                         sources=sources)
    _check_consistency(config)
    return config


def _apply_file(table: Mapping[str, Any], path: str, values: dict[str, Any],
                sources: dict[str, str]) -> None:
    """Set ``values`` (and ``sources``) from the config file's top-level keys."""
    source = f"config file {path}"
    for key, raw in table.items():
        if key == "channels":
            continue  # needs the merged server-wide values: see channel_rules
        option = OPTIONS_BY_KEY.get(key)
        if option is None:
            extra = {o.name: o.key for o in SERVE_OPTIONS if o.secret}
            if key in extra:  # e.g. token_secret = "..." inline
                raise ConfigError(f"{source}: {key}: secrets are not written in the config "
                                  f"file; put it in a file and set {extra[key]} = \"PATH\" "
                                  f"(or use the environment variable RTLINK_{key.upper()})")
            raise unknown_key(key, [*OPTIONS_BY_KEY, "channels"], source)
        if option.secret:
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"{source}: {key}: expected the path of a file, got "
                                  f"{shown(raw)}")
            # Relative to the config file, so a config and its secrets move together.
            secret_path = Path(path).parent / raw
            where = f"file {secret_path} ({source}: {key})"
            values[option.name] = parsed(option.kind.from_file,
                                         read_secret_file(secret_path, f"{source}: {key}"),
                                         where)
            sources[option.name] = where
        else:
            values[option.name] = parsed(option.kind.from_toml, raw, f"{source}: {key}")
            sources[option.name] = source


def _apply_environment(environ: Mapping[str, str], values: dict[str, Any],
                       sources: dict[str, str]) -> None:
    """Set ``values`` (and ``sources``) from ``RTLINK_*`` variables; empty ones are unset."""
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
            values[option.name] = parsed(option.kind.from_text, text, where)
        elif path is not None:
            where = f"file {path} (environment {file_env})"
            content = read_secret_file(path, f"environment {file_env}")
            values[option.name] = parsed(option.kind.from_file, content, where)
        else:
            continue
        sources[option.name] = where


def _apply_flags(flags: Mapping[str, Any], values: dict[str, Any],
                 sources: dict[str, str]) -> None:
    """Set ``values`` (and ``sources``) from the flags given (parsed, but secret files
    are still to be read)."""
    for name, value in flags.items():
        option = OPTIONS_BY_NAME[name]
        if option.secret:
            where = f"file {value} (flag {option.flag})"
            content = read_secret_file(value, f"flag {option.flag}")
            values[name] = parsed(option.kind.from_file, content, where)
        else:
            values[name] = tuple(value) if option.repeatable else value
            if value is None and option.off_flag is not None:
                where = f"flag {option.off_flag}"
            elif value is False and isinstance(option.kind, Boolean):
                where = f"flag --no-{option.flag.removeprefix('--')}"
            else:
                where = f"flag {option.flag}"
        sources[name] = where


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

"""Printing: the effective configuration as TOML (``rtlink serve --print-config``),
each value with its source in a comment and secrets redacted."""

from __future__ import annotations

import json

from .checks import redact_url
from .options import CHANNEL_FIELDS, SERVE_OPTIONS
from .settings import ServeConfig
from .values import toml_literal

__all__ = ["format_config"]

#: How far source comments line up at most: a longer line pushes only its own comment.
_COMMENT_COLUMN = 40
#: What an option that is not set means, in its comment line.
_UNSET = {
    "allowed_origins": "only pages of this server's own origin",
    "token_secret": "no authentication: every connection is anonymous",
    "api_keys": "no publish API",
}


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
            line = f"{option.name} = {toml_literal(redact_url(value))}"
        elif option.name == "path":
            line = f"{option.name} = {toml_literal(value or '/')}"  # "" is the root
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
        for key, (kind, inherited) in CHANNEL_FIELDS.items():
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


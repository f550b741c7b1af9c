"""The channel rules of the config file: one ``[channels."PATTERN"]`` table per rule,
its missing fields taken from the server-wide options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..channels import ChannelOptions, ChannelRules
from .errors import ConfigError, parsed, unknown_key
from .options import CHANNEL_FIELDS
from .values import shown

__all__ = ["channel_rules"]


def channel_rules(tables: Any, source: str, values: Mapping[str, Any],
                  sources: dict[str, str]) -> dict[str, ChannelOptions]:
    """The rules of the config file's ``channels`` tables, in the file's order.

    Args:
        tables: the file's ``channels`` value (a table of tables, if valid).
        source: the config file, as messages name it: ``"config file rtlink.toml"``.
        values: the merged server-wide values, by option name; a table's missing
            ``history_size``, ``history_ttl`` and ``client_publish`` come from there.
        sources: where each value came from; gets ``"channels.'PATTERN'.FIELD"`` entries.

    Raises:
        ConfigError: not tables, no tables, an unknown or invalid field, a bad pattern.
    """
    if not isinstance(tables, dict):
        raise ConfigError(f'{source}: channels: expected tables like [channels."news:*"], '
                          f"got {shown(tables)}")
    if not tables:
        raise ConfigError(f'{source}: channels: no rules; add tables like [channels."news:*"] '
                          "(or remove [channels] to allow every channel)")
    rules: dict[str, ChannelOptions] = {}
    for pattern, table in tables.items():
        where = f"{source}: channels.{pattern!r}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table of options ({', '.join(CHANNEL_FIELDS)})"
                              f", got {shown(table)}")
        fields: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in CHANNEL_FIELDS:
                raise unknown_key(key, CHANNEL_FIELDS, where)
            fields[key] = parsed(CHANNEL_FIELDS[key][0].from_toml, raw, f"{where}.{key}")
            sources[f"channels.{pattern!r}.{key}"] = source
        for key, (_, inherited) in CHANNEL_FIELDS.items():
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

"""The channel rules of the config file (rtlink.config.rules): one table per pattern,
in the file's order, missing fields taken from the server-wide options. Their errors
are with the loader's, in test_loading.py."""

from __future__ import annotations

from pathlib import Path

from rtlink.channels import ChannelOptions
from rtlink.config import load_serve_config
from tests.config.helpers import SECRET, write


def test_channel_rules_keep_file_order_and_take_server_wide_defaults(tmp_path: Path) -> None:
    write(tmp_path / "secret", SECRET)
    config_file = write(tmp_path / "rtlink.toml", """
history_size = 7
client_publish = false
token_secret_file = "secret"

[channels."news:*"]
history_size = 1000
history_ttl = 86400

[channels."user:{user}:*"]
subscribe = "authenticated"
client_publish = true
key_ttl = 30

[channels."*"]
""")
    config = load_serve_config({}, {"RTLINK_HISTORY_TTL": "90"}, config_file)
    assert list(config.channel_rules().items()) == [
        ("news:*", ChannelOptions(history_size=1000, history_ttl=86400.0)),
        ("user:{user}:*", ChannelOptions(history_size=7, history_ttl=90.0, client_publish=True,
                                         key_ttl=30.0, subscribe="authenticated")),
        ("*", ChannelOptions(history_size=7, history_ttl=90.0)),
    ]
    assert config.sources["channels.'news:*'.history_size"] == f"config file {config_file}"
    assert config.sources["channels.'*'.history_ttl"] == (
        "server-wide history_ttl (environment RTLINK_HISTORY_TTL)")
    assert config.needs_authentication

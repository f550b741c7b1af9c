"""``rtlink serve --print-config`` (rtlink.config.printing): the effective
configuration as TOML, each value with its source, secrets redacted, loadable again."""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs
import pytest

from rtlink.config import SERVE_OPTIONS, format_config, load_serve_config
from tests.config.helpers import API_KEY, OTHER_KEY, SECRET, print_config, source_of, write


def test_precedence_in_print_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = write(tmp_path / "rtlink.toml",
                        'allowed_origins = ["https://file.example"]\npublish_burst = 7\n'
                        "history_ttl = 60\n")
    monkeypatch.setenv("RTLINK_ALLOWED_ORIGINS", "https://env.example, https://*.env.example")
    monkeypatch.setenv("RTLINK_PUBLISH_BURST", "8")
    values, text = print_config(capsys, "--config", config_file,
                                "--allowed-origin", "https://flag.example",
                                "--allowed-origin", "https://two.example,https://three.example")
    assert values["allowed_origins"] == ["https://flag.example", "https://two.example",
                                         "https://three.example"]
    assert source_of(text, "allowed_origins") == "flag --allowed-origin"
    assert (values["publish_burst"], source_of(text, "publish_burst")) == (
        8, "environment RTLINK_PUBLISH_BURST")
    assert (values["history_ttl"], source_of(text, "history_ttl")) == (
        60.0, f"config file {config_file}")
    assert text.startswith(f"# config file: {config_file}\n")
    values, _ = print_config(capsys, "--config", config_file)
    assert values["allowed_origins"] == ["https://env.example", "https://*.env.example"]


def test_print_config_shows_rules_and_redacts_secrets(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = write(tmp_path / "rtlink.toml", """
backend = "redis://admin:hunter2-password@10.0.0.1:6379/0"
[channels."user:{user}:*"]
subscribe = "authenticated"
""")
    monkeypatch.setenv("RTLINK_TOKEN_SECRET", SECRET)
    monkeypatch.setenv("RTLINK_API_KEYS", f"{API_KEY},{OTHER_KEY}")
    values, text = print_config(capsys, "--config", config_file)
    assert SECRET not in text and API_KEY not in text and "hunter2" not in text
    assert values["backend"] == "redis://admin:***@10.0.0.1:6379/0"
    assert "token_secret" not in values and "api_keys" not in values  # comment lines
    assert source_of(text, "# token_secret") == "environment RTLINK_TOKEN_SECRET"
    assert '# token_secret = "<redacted>"' in text
    assert '# api_keys = ["<redacted>", "<redacted>"]' in text
    assert values["channels"] == {"user:{user}:*": {
        "history_size": 100, "history_ttl": 300.0, "client_publish": True, "key_ttl": 600.0,
        "subscribe": "authenticated", "presence": False}}
    assert "# allowed_origins: not set (only pages of this server's own origin)" in text


def test_print_config_of_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    values, text = print_config(capsys)
    assert values["port"] == 8080 and values["max_connections_per_ip"] == "off"
    assert values["channels"] == {"*": {
        "history_size": 100, "history_ttl": 300.0, "client_publish": True, "key_ttl": 600.0,
        "subscribe": "anyone", "presence": False}}
    assert "# default: every channel (no [channels] tables)" in text
    assert "# token_secret: not set (no authentication" in text
    assert "# api_keys: not set (no publish API)" in text
    assert {option.name for option in SERVE_OPTIONS} - set(values) == {
        "allowed_origins", "token_secret", "api_keys"}


def test_printed_config_loads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    source = write(tmp_path / "a.toml", """
port = 9001
path = "/"
transports = ["sse"]
publish_rate = "off"
allowed_origins = ["*"]
metrics_path = "/internal/metrics"
[channels."a:*"]
history_size = 3
""")
    monkeypatch.setenv("RTLINK_HISTORY_TTL", "5")
    _, text = print_config(capsys, "--config", source)
    copy = write(tmp_path / "b.toml", text)
    original = load_serve_config({}, {"RTLINK_HISTORY_TTL": "5"}, source)
    assert load_serve_config({}, {}, copy) == attrs.evolve(original, config_file=copy)


def test_format_config_writes_every_option() -> None:
    config = load_serve_config({}, {"RTLINK_TOKEN_SECRET": SECRET, "RTLINK_API_KEYS": API_KEY,
                                    "RTLINK_ALLOWED_ORIGINS": "*"})
    text = format_config(config)
    secret_names = {option.name for option in SERVE_OPTIONS if option.secret}
    assert {option.name for option in SERVE_OPTIONS} - set(tomllib.loads(text)) == secret_names
    for name in secret_names:
        assert f"# {name} = " in text
    assert SECRET not in text and API_KEY not in text

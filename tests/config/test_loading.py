"""Loading the configuration of ``rtlink serve`` (rtlink.config.loading): defaults, a
TOML file, the environment and flags, merged in that order, and validated with
messages that name their source.

The loader is tested directly with real files; the command (``main``) in this process,
since ``--print-config`` and usage errors never start a server. What the settings do
over the wire is in tests/e2e/test_cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rtlink.channels import ChannelOptions
from rtlink.cli import main
from rtlink.config import ConfigError, ServeConfig, load_serve_config
from tests.config.helpers import API_KEY, OTHER_KEY, SECRET, serve_flags, write

# --- defaults and precedence ----------------------------------------------------------------------


def test_defaults() -> None:
    config = load_serve_config({}, {})
    assert config == ServeConfig()
    assert set(config.sources.values()) == {"default"}
    assert (config.host, config.port, config.path, config.backend) == (
        "127.0.0.1", 8080, "/rt", "memory://")
    assert config.transports == ("websocket", "sse", "longpoll")
    assert (config.metrics_path, config.token_secret, config.api_keys) == ("/metrics", None, ())
    assert config.channel_rules() == {"*": ChannelOptions(client_publish=True)}


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    config_file = write(tmp_path / "rtlink.toml", "port = 1001\nhistory_size = 5\n"
                                                  "log_level = 'debug'\n")
    env = {"RTLINK_PORT": "1002", "RTLINK_HISTORY_SIZE": "6"}
    config = load_serve_config(serve_flags("--port", "1003"), env, config_file)
    assert (config.port, config.history_size, config.log_level) == (1003, 6, "debug")
    assert config.sources["port"] == "flag --port"
    assert config.sources["history_size"] == "environment RTLINK_HISTORY_SIZE"
    assert config.sources["log_level"] == f"config file {config_file}"
    assert config.sources["host"] == "default"
    without_flag = load_serve_config({}, env, config_file)
    assert (without_flag.port, without_flag.sources["port"]) == (
        1002, "environment RTLINK_PORT")
    without_env = load_serve_config({}, {}, config_file)
    assert (without_env.port, without_env.sources["port"]) == (
        1001, f"config file {config_file}")


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    config_file = write(tmp_path / "rtlink.toml", "port = 1001\n")
    config = load_serve_config({}, {"RTLINK_CONFIG": config_file})
    assert (config.port, config.config_file) == (1001, config_file)
    # --config wins over RTLINK_CONFIG.
    other = write(tmp_path / "other.toml", "port = 1002\n")
    assert load_serve_config({}, {"RTLINK_CONFIG": config_file}, other).port == 1002


@pytest.mark.parametrize(
    ("env", "text", "field", "value"),
    [
        ("RTLINK_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("RTLINK_PORT", "0", "port", 0),
        ("RTLINK_PATH", "/live/", "path", "/live"),
        ("RTLINK_PATH", "/", "path", ""),
        ("RTLINK_BACKEND", "redis://127.0.0.1:6379/0", "backend", "redis://127.0.0.1:6379/0"),
        ("RTLINK_TRANSPORTS", "sse, longpoll", "transports", ("sse", "longpoll")),
        ("RTLINK_HISTORY_SIZE", "0", "history_size", 0),
        ("RTLINK_HISTORY_TTL", "2.5", "history_ttl", 2.5),
        ("RTLINK_CLIENT_PUBLISH", "false", "client_publish", False),
        ("RTLINK_CLIENT_PUBLISH", "Yes", "client_publish", True),
        ("RTLINK_ALLOWED_ORIGINS", "*,null", "allowed_origins", ("*", "null")),
        ("RTLINK_PUBLISH_RATE", "off", "publish_rate", None),
        ("RTLINK_PUBLISH_RATE", "2.5", "publish_rate", 2.5),
        ("RTLINK_PUBLISH_BURST", "3", "publish_burst", 3),
        ("RTLINK_MAX_CONNECTIONS_PER_IP", "4", "max_connections_per_ip", 4),
        ("RTLINK_MAX_CONNECTIONS_PER_IP", "off", "max_connections_per_ip", None),
        ("RTLINK_WEBSOCKET_COMPRESSION", "true", "websocket_compression", True),
        ("RTLINK_METRICS_PATH", "/internal/metrics", "metrics_path", "/internal/metrics"),
        ("RTLINK_METRICS_PATH", "off", "metrics_path", None),
        ("RTLINK_LOG_LEVEL", "WARNING", "log_level", "warning"),
        ("RTLINK_TOKEN_SECRET", SECRET, "token_secret", SECRET),
        ("RTLINK_API_KEYS", f"{API_KEY}, {OTHER_KEY}", "api_keys", (API_KEY, OTHER_KEY)),
    ],
)
def test_every_option_from_the_environment(env: str, text: str, field: str,
                                           value: Any) -> None:
    config = load_serve_config({}, {env: text})
    assert getattr(config, field) == value
    assert config.sources[field] == f"environment {env}"


def test_an_empty_environment_variable_counts_as_unset() -> None:
    assert load_serve_config({}, {"RTLINK_PORT": "", "RTLINK_TOKEN_SECRET": ""}) == ServeConfig()


def test_every_option_from_the_config_file(tmp_path: Path) -> None:
    write(tmp_path / "secret.txt", SECRET + "\n")
    write(tmp_path / "keys.txt", f"# publishers\n{API_KEY}\n\n  {OTHER_KEY}  \n")
    config_file = write(tmp_path / "rtlink.toml", """
host = "0.0.0.0"
port = 9000
path = "/live"
backend = "redis://127.0.0.1:6379/2"
transports = ["longpoll", "sse"]
history_size = 10
history_ttl = 60
client_publish = false
allowed_origins = ["https://app.example.com"]
publish_rate = "off"
publish_burst = 5
max_connections_per_ip = 20
websocket_compression = true
token_secret_file = "secret.txt"
allow_anonymous = false
api_keys_file = "keys.txt"
metrics_path = false
log_level = "error"
""")
    config = load_serve_config({}, {}, config_file)
    assert config == ServeConfig(
        host="0.0.0.0", port=9000, path="/live", backend="redis://127.0.0.1:6379/2",
        transports=("longpoll", "sse"), history_size=10, history_ttl=60.0,
        client_publish=False, allowed_origins=("https://app.example.com",),
        publish_rate=None, publish_burst=5, max_connections_per_ip=20,
        websocket_compression=True, token_secret=SECRET, allow_anonymous=False,
        api_keys=(API_KEY, OTHER_KEY), metrics_path=None, log_level="error",
        config_file=config_file)
    # Secret files are found next to the config file, and named as the source.
    assert config.sources["token_secret"] == (
        f"file {tmp_path / 'secret.txt'} (config file {config_file}: token_secret_file)")
    assert all(source.startswith(("config file", "file")) for source in config.sources.values())


def test_secrets_from_files_named_by_flags_and_environment(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", SECRET + "\r\n")
    keys_file = write(tmp_path / "keys", API_KEY + "\n")
    config = load_serve_config(
        serve_flags("--token-secret-file", secret_file, "--api-key-file", keys_file), {})
    assert (config.token_secret, config.api_keys) == (SECRET, (API_KEY,))
    assert config.sources["token_secret"] == f"file {secret_file} (flag --token-secret-file)"
    config = load_serve_config({}, {"RTLINK_TOKEN_SECRET_FILE": secret_file,
                                    "RTLINK_API_KEYS_FILE": keys_file})
    assert (config.token_secret, config.api_keys) == (SECRET, (API_KEY,))
    assert config.sources["api_keys"] == f"file {keys_file} (environment RTLINK_API_KEYS_FILE)"


def test_no_metrics_flag(tmp_path: Path) -> None:
    config = load_serve_config(serve_flags("--no-metrics"), {"RTLINK_METRICS_PATH": "/m"})
    assert (config.metrics_path, config.sources["metrics_path"]) == (None, "flag --no-metrics")
    assert load_serve_config(serve_flags("--metrics-path", "off"), {}).metrics_path is None
    assert load_serve_config(serve_flags("--no-client-publish"), {}).client_publish is False
    # --client-publish undoes a false from the environment.
    assert load_serve_config(serve_flags("--client-publish"),
                             {"RTLINK_CLIENT_PUBLISH": "no"}).client_publish is True


# --- errors: every one names its source, exits with 2 ---------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("port = 'x'", "port: expected a port number (0 to 65535), got 'x'"),
        ("port = 70000", "port: expected a port number (0 to 65535), got 70000"),
        ("port = 8080.0", "port: expected a port number (0 to 65535), got 8080.0"),
        ("port = true", "port: expected a port number (0 to 65535), got True"),
        ("host = ''", "host: expected a host name or address"),
        ("path = '/a b'", "path: expected a URL path like /rt, got '/a b'"),
        ("backend = 'foo://x'", "backend: expected a backend URL (memory://, redis://"),
        ("backend = 3", "backend: expected a backend URL, got 3"),
        ("transports = []", "transports: expected at least one of transports (websocket, sse, "
                            "longpoll), got []"),
        ("transports = ['ws']", "transports: unknown transport 'ws'; known: websocket, sse, "
                                "longpoll"),
        ("transports = 'sse'", "transports: expected an array of transports (websocket, sse, "
                               "longpoll) (strings), got 'sse'"),
        ("transports = ['sse', 'sse']", "transports: expected transports (websocket, sse, "
                                        "longpoll) without repeats"),
        ("history_size = -1", "history_size: expected an integer >= 0, got -1"),
        ("history_ttl = 0", "history_ttl: expected a number > 0, got 0"),
        ("history_ttl = 'long'", "history_ttl: expected a number > 0, got 'long'"),
        ("history_ttl = inf", "history_ttl: expected a number > 0, got inf"),
        ("client_publish = 'yes'", "client_publish: expected true or false, got 'yes'"),
        ("allowed_origins = 'https://a.example'",
         "allowed_origins: expected an array of origins (strings), got 'https://a.example'"),
        ("allowed_origins = ['a.example']", "allowed_origins: not an origin: 'a.example'"),
        ("publish_rate = 0", 'publish_rate: expected a number > 0 or "off", got 0'),
        ("publish_burst = 0", "publish_burst: expected an integer >= 1, got 0"),
        ("max_connections_per_ip = 0",
         'max_connections_per_ip: expected an integer >= 1 or "off", got 0'),
        ("metrics_path = 'metrics'",
         "metrics_path: expected an absolute URL path like /metrics, or \"off\", got 'metrics'"),
        ("metrics_path = '/rt/metrics'",
         "metrics_path: expected a path outside the rtlink path /rt, got '/rt/metrics'"),
        ("path = '/'\nmetrics_path = '/ws'",
         "metrics_path: expected a path not used by rtlink (at /), got '/ws'"),
        ("log_level = 'loud'", "log_level: expected one of debug, info, warning, error, "
                               "got 'loud'"),
        ("histroy_size = 3", "unknown option 'histroy_size' (did you mean 'history_size'?)"),
        ("token_secret = 'abc'", "token_secret: secrets are not written in the config file; "
                                 'put it in a file and set token_secret_file = "PATH"'),
        ("api_keys = ['abc']", "api_keys: secrets are not written in the config file"),
        ("token_secret_file = 3", "token_secret_file: expected the path of a file, got 3"),
        ("token_secret_file = 'missing.txt'", "token_secret_file: cannot read"),
        ("allow_anonymous = false", "allow_anonymous = false needs a token secret"),
        ("port =", "not valid TOML: Invalid value (at line 1, column 7)"),
        ("channels = 3", "channels: expected tables like [channels.\"news:*\"], got 3"),
        ("[channels]", "channels: no rules; add tables like [channels.\"news:*\"]"),
        ("[channels.'news:*']\nhistory_size = -1",
         "channels.'news:*'.history_size: expected an integer >= 0, got -1"),
        ("[channels.'news:*']\nhistory_ttl = 0",
         "channels.'news:*'.history_ttl: expected a number > 0, got 0"),
        ("[channels.'news:*']\nclient_publish = 1",
         "channels.'news:*'.client_publish: expected true or false, got 1"),
        ("[channels.'news:*']\nkey_ttl = -5",
         "channels.'news:*'.key_ttl: expected a number > 0, got -5"),
        ("[channels.'news:*']\nsubscribe = 'admins'",
         "channels.'news:*'.subscribe: expected one of anyone, authenticated, got 'admins'"),
        ("[channels.'news:*']\nhistory = 3",
         "channels.'news:*': unknown option 'history' (did you mean 'history_ttl'?)"),
        ("[channels]\n'news:*' = 3", "channels.'news:*': expected a table of options"),
        ("[channels.'a{b}']", "channels.'a{b}': channel pattern 'a{b}': the only placeholder "
                              "is {user}"),
        ("[channels.'u:*{user}']", "{user} must not touch a '*'"),
        ("[channels.'user:{user}:*']",
         "channels.'user:{user}:*': needs authenticated connections, but no token secret "
         "is set"),
        ("[channels.'inbox']\nsubscribe = 'authenticated'",
         "channels.'inbox': needs authenticated connections"),
    ],
)
def test_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            toml: str, message: str) -> None:
    config_file = write(tmp_path / "bad.toml", toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_serve_config({}, {}, config_file)
    assert str(caught.value).startswith(f"config file {config_file}"), caught.value
    assert message in str(caught.value)
    # The command says the same and exits with 2.
    assert main(["serve", "--config", config_file, "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"rtlink serve: error: config file {config_file}")
    assert message in captured.err


@pytest.mark.parametrize(
    ("env", "text", "message"),
    [
        ("RTLINK_PORT", "http", "environment RTLINK_PORT: expected a port number (0 to 65535), "
                                "got 'http'"),
        ("RTLINK_HOST", "a b", "environment RTLINK_HOST: expected a host name or address"),
        ("RTLINK_PATH", "/a?b", "environment RTLINK_PATH: expected a URL path like /rt"),
        ("RTLINK_BACKEND", "127.0.0.1:6379", "environment RTLINK_BACKEND: expected a backend "
                                             "URL (memory://, redis://"),
        ("RTLINK_TRANSPORTS", ",", "environment RTLINK_TRANSPORTS: expected at least one of "
                                   "transports"),
        ("RTLINK_TRANSPORTS", "websocket,polling", "unknown transport 'polling'"),
        ("RTLINK_HISTORY_SIZE", "1.5", "environment RTLINK_HISTORY_SIZE: expected an integer "
                                       ">= 0, got '1.5'"),
        ("RTLINK_HISTORY_TTL", "nan", "environment RTLINK_HISTORY_TTL: expected a number > 0, "
                                      "got 'nan'"),
        ("RTLINK_CLIENT_PUBLISH", "maybe", "environment RTLINK_CLIENT_PUBLISH: expected true "
                                           "or false, got 'maybe'"),
        ("RTLINK_ALLOWED_ORIGINS", "https://a.example/", "environment RTLINK_ALLOWED_ORIGINS: "
                                                         "not an origin"),
        ("RTLINK_PUBLISH_RATE", "-1", "environment RTLINK_PUBLISH_RATE: expected a number > 0 "
                                      "or \"off\", got '-1'"),
        ("RTLINK_PUBLISH_BURST", "none", "environment RTLINK_PUBLISH_BURST: expected an "
                                         "integer >= 1, got 'none'"),
        ("RTLINK_MAX_CONNECTIONS_PER_IP", "0", "environment RTLINK_MAX_CONNECTIONS_PER_IP: "
                                               "expected an integer >= 1 or \"off\""),
        ("RTLINK_METRICS_PATH", "metrics", "environment RTLINK_METRICS_PATH: expected an "
                                           "absolute URL path"),
        ("RTLINK_LOG_LEVEL", "verbose", "environment RTLINK_LOG_LEVEL: expected one of debug"),
        ("RTLINK_ALLOW_ANONYMOUS", "no", "environment RTLINK_ALLOW_ANONYMOUS: allow_anonymous "
                                         "= false needs a token secret"),
        ("RTLINK_TOKEN_SECRET", "too-short", "environment RTLINK_TOKEN_SECRET: expected a "
                                             "secret of at least 32 bytes"),
        ("RTLINK_API_KEYS", "short", "environment RTLINK_API_KEYS: API key #1 has 5 "
                                     "characters; at least 16 are required"),
        ("RTLINK_API_KEYS", f"{API_KEY},with space inside it",
         "environment RTLINK_API_KEYS: API key #2 must be made of visible ASCII"),
        ("RTLINK_API_KEYS", " , ", "environment RTLINK_API_KEYS: expected API keys"),
        ("RTLINK_TOKEN_SECRET_FILE", "/no/such/file",
         "environment RTLINK_TOKEN_SECRET_FILE: cannot read '/no/such/file': No such file"),
        ("RTLINK_CONFIG", "/no/such.toml",
         "config file /no/such.toml (environment RTLINK_CONFIG): cannot read it"),
    ],
)
def test_environment_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                            env: str, text: str, message: str) -> None:
    monkeypatch.setenv(env, text)
    assert main(["serve", "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("rtlink serve: error: ")
    assert message in captured.err, captured.err
    if env in ("RTLINK_TOKEN_SECRET", "RTLINK_API_KEYS"):  # never echo a secret
        assert not any(part.strip() and part.strip() in captured.err
                       for part in text.split(",")), captured.err


def test_secret_environment_and_file_are_exclusive(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "s", SECRET)
    with pytest.raises(ConfigError, match="environment: set RTLINK_TOKEN_SECRET or "
                                          "RTLINK_TOKEN_SECRET_FILE, not both"):
        load_serve_config({}, {"RTLINK_TOKEN_SECRET": SECRET,
                               "RTLINK_TOKEN_SECRET_FILE": secret_file})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "x"], "argument --port: expected a port number (0 to 65535), got 'x'"),
        (["--history-size", "-1"], "argument --history-size: expected an integer >= 0, "
                                   "got '-1'"),
        (["--history-ttl", "0"], "argument --history-ttl: expected a number > 0, got '0'"),
        (["--transports", "ws"], "argument --transports: unknown transport 'ws'"),
        (["--allowed-origin", "example.com"], "argument --allowed-origin: not an origin"),
        (["--log-level", "loud"], "argument --log-level: expected one of debug, info, warning, "
                                  "error, got 'loud'"),
        (["--metrics-path", "/m", "--no-metrics"],
         "argument --no-metrics: not allowed with argument --metrics-path"),
        (["--token-secret", "abc"], "unrecognized arguments: --token-secret"),
        (["--token-secret-file", "/no/such/file"],
         "flag --token-secret-file: cannot read '/no/such/file': No such file or directory"),
        (["--api-key-file", "/no/such/file"], "flag --api-key-file: cannot read"),
        (["--config", "/no/such.toml"], "config file /no/such.toml (flag --config): cannot "
                                        "read it: No such file or directory"),
        (["--no-allow-anonymous"], "flag --no-allow-anonymous: allow_anonymous = false needs "
                                   "a token secret"),
    ],
)
def test_flag_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(["serve", "--print-config", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err, captured.err
    assert "Traceback" not in captured.err


def test_secret_file_errors_never_show_the_secret(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    short = write(tmp_path / "short", "hunter2\n")
    assert main(["serve", "--print-config", "--token-secret-file", short]) == 2
    err = capsys.readouterr().err
    assert f"file {short} (flag --token-secret-file): expected a secret of at least 32 bytes" \
           in err and "got 7 bytes" in err
    assert "hunter2" not in err
    keys = write(tmp_path / "keys", f"{API_KEY}\nhunter2-short\n")
    assert main(["serve", "--print-config", "--api-key-file", keys]) == 2
    err = capsys.readouterr().err
    assert f"file {keys} (flag --api-key-file): API key #2 has 13 characters" in err
    assert "hunter2" not in err
    empty = write(tmp_path / "empty", "# no keys yet\n\n")
    assert main(["serve", "--print-config", "--api-key-file", empty]) == 2
    assert "expected API keys of at least 16" in capsys.readouterr().err

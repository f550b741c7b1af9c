"""The origin allow-list (rtlink/origins.py) as plain function calls."""

from __future__ import annotations

import pytest

from rtlink.origins import OriginPolicy, parse_origin


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "example.com", True),  # not a browser
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://127.0.0.1:8080", "127.0.0.1:8081", False),
        ("http://127.0.0.1:8080", "127.0.0.1", False),  # port 80 implied
        ("http://localhost:8080", "127.0.0.1:8080", False),  # another host name
        ("https://example.com", "example.com", True),
        # TLS terminated by a proxy: the request reaches the server over plain HTTP,
        # with the browser's Host; the scheme is not compared.
        ("http://example.com", "example.com", True),
        ("https://example.com", "example.com:443", True),
        ("https://example.com:8443", "example.com:8443", True),
        ("https://example.com", "EXAMPLE.com", True),
        ("https://evil.example", "example.com", False),
        ("https://example.com.evil.example", "example.com", False),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("null", "example.com", False),
        ("not an origin", "example.com", False),
        ("https://example.com/path", "example.com", False),
        ("https://example.com", None, False),
        ("https://example.com", "example.com:notaport", False),
    ],
)
def test_same_origin_by_default(origin: str | None, host: str | None, allowed: bool) -> None:
    assert OriginPolicy().allows(origin, host) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("https://app.example.com", True),
        ("https://APP.example.com", True),
        ("https://app.example.com:443", True),  # the default port, written out
        ("http://app.example.com", False),  # another scheme
        ("https://app.example.com:8443", False),  # another port
        ("https://a.example.com", True),  # subdomain wildcard
        ("https://a.b.example.com", True),  # at any depth
        ("https://example.com", False),  # not the bare domain
        ("https://badexample.com", False),
        ("http://a.example.com", False),
        ("http://localhost:3000", True),
        ("http://localhost:3001", False),
        ("null", False),
        ("https://same-host.test", False),  # no same-origin rule with a list
    ],
)
def test_allow_list(origin: str | None, allowed: bool) -> None:
    policy = OriginPolicy(["https://app.example.com", "https://*.example.com",
                           "http://localhost:3000"])
    assert policy.allows(origin, "same-host.test") is allowed


def test_star_allows_any_origin_but_null() -> None:
    policy = OriginPolicy(["*"])
    assert policy.allows("https://anything.example", "example.com")
    assert policy.allows("chrome-extension://abcdef", "example.com")
    assert not policy.allows("null", "example.com")
    assert OriginPolicy(["*", "null"]).allows("null", "example.com")
    assert OriginPolicy(["null"]).allows("null", "example.com")


def test_an_empty_list_allows_only_clients_without_origin() -> None:
    policy = OriginPolicy([])
    assert policy.allows(None, "example.com")
    assert not policy.allows("https://example.com", "example.com")


@pytest.mark.parametrize(
    "entry",
    ["app.example.com", "https://app.example.com/", "https://app.example.com/path",
     "https://app.example.com?x=1", "https://user@app.example.com", "https://*example.com",
     "https://app.*.com", "*.example.com", "https://app.example.com:99999", "https://"],
)
def test_invalid_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        OriginPolicy([entry])


def test_a_single_string_is_refused() -> None:
    with pytest.raises(TypeError, match="list of origins"):
        OriginPolicy("https://app.example.com")


def test_parse_origin_fills_in_default_ports() -> None:
    assert parse_origin("HTTPS://App.Example.com") == ("https", "app.example.com", 443)
    assert parse_origin("http://example.com") == ("http", "example.com", 80)
    assert parse_origin("http://example.com:8080") == ("http", "example.com", 8080)
    assert parse_origin("chrome-extension://abc") == ("chrome-extension", "abc", None)

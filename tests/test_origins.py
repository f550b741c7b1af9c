"""The origin allow-list (rtlink/origins.py) as plain function calls."""

from __future__ import annotations

import pytest

from rtlink.origins import OriginPolicy, is_fixed_host, parse_origin


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "example.com", True),  # not a browser
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://127.0.0.1:8080", "127.0.0.1:8081", False),
        ("http://127.0.0.1:8080", "127.0.0.1", False),  # port 80 implied
        ("http://localhost:8080", "127.0.0.1:8080", False),  # another host name
        ("http://localhost:8080", "localhost:8080", True),
        ("http://app.localhost:8080", "app.localhost:8080", True),
        ("http://192.168.1.20", "192.168.1.20", True),
        # TLS terminated by a proxy: the request reaches the server over plain HTTP,
        # with the browser's Host; the scheme is not compared.
        ("https://10.0.0.5", "10.0.0.5", True),
        ("https://10.0.0.5", "10.0.0.5:443", True),
        ("https://10.0.0.5:8443", "10.0.0.5:8443", True),
        ("http://LOCALHOST:8080", "localhost:8080", True),
        ("https://10.0.0.6", "10.0.0.5", False),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("null", "127.0.0.1", False),
        ("not an origin", "127.0.0.1", False),
        ("https://127.0.0.1/path", "127.0.0.1", False),
        ("https://127.0.0.1", None, False),
        ("https://127.0.0.1", "127.0.0.1:notaport", False),
    ],
)
def test_same_origin_by_default(origin: str | None, host: str | None, allowed: bool) -> None:
    assert OriginPolicy().allows(origin, host) is allowed


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        # DNS rebinding: evil.example answers with the attacker's address, then with
        # 127.0.0.1 or a private address; its page's requests then reach the server
        # with Host and Origin both evil.example.
        ("http://evil.example:8080", "evil.example:8080"),
        ("https://example.com", "example.com"),
        ("http://example.com", "example.com:80"),
        ("http://localhost.evil.example", "localhost.evil.example"),
        ("http://127.0.0.1.nip.io:8080", "127.0.0.1.nip.io:8080"),
    ],
)
def test_same_origin_is_refused_for_dns_names(origin: str, host: str) -> None:
    policy = OriginPolicy()
    assert not policy.allows(origin, host)
    assert "DNS rebinding" in (policy.refusal(origin, host) or "")
    # Listed, the origin is allowed: the list does not depend on Host at all.
    assert OriginPolicy([origin]).allows(origin, host)


@pytest.mark.parametrize(
    ("hostname", "fixed"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("::1", True), ("fe80::1", True),
     ("localhost", True), ("app.localhost", True), ("example.com", False),
     ("localhost.example.com", False), ("127.0.0.1.nip.io", False), ("", False)],
)
def test_fixed_hosts(hostname: str, fixed: bool) -> None:
    assert is_fixed_host(hostname) is fixed


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

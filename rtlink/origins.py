"""Which web origins may use an rtlink server: the rules of ``attach(allowed_origins=...)``.

A browser names the page that makes a request in its ``Origin`` header: on every
WebSocket handshake, and on cross-origin (and most non-GET) HTTP requests. WebSockets
are not covered by CORS, so without a check any page on the web could open a
WebSocket to the server with the user's cookies; the allow-list is that check, made
by :mod:`rtlink.transports.guard` on every rtlink route before authentication.

Pure: no aiohttp, no I/O. The entries are:

* ``"*"``: any origin (except ``null``);
* ``"https://app.example.com"``: exactly this origin (scheme, host and port);
* ``"https://*.example.com"``: any subdomain of example.com, at any depth, with this
  scheme and port; not ``https://example.com`` itself;
* ``"null"``: the opaque origin ``null`` (sandboxed iframes, ``file:`` pages,
  some redirects). It is refused unless listed, even with ``"*"``: any sandboxed
  document can claim it, so it proves nothing about who is calling.

With no list (``None``) only same-origin requests are allowed: the host and port of
the ``Origin`` must be those of the ``Host`` header the request was sent to.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["OriginPolicy", "parse_origin"]

#: Ports implied by a scheme when the origin or the Host header names none.
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def parse_origin(text: str) -> tuple[str, str, int | None]:
    """Split a serialized origin ``scheme://host[:port]`` into lowercase scheme, host
    and port (the scheme's default port when none is written; None if it has none).

    Raises:
        ValueError: ``text`` is not an origin (no scheme or host; a path, query,
            fragment or user; a bad port).
    """
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not an origin: {text!r} ({exc})") from None
    if (not parts.scheme or not parts.hostname or parts.path or parts.query
            or parts.fragment or "@" in parts.netloc or "?" in text or "#" in text):
        raise ValueError(f"not an origin: {text!r}; an origin is scheme://host[:port], "
                         "like https://app.example.com (no path, not even a trailing /)")
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _parse_host(host: str) -> tuple[str, int | None] | None:
    """The host name and explicit port (or None) of a ``Host`` header; None if invalid."""
    try:
        parts = urlsplit("//" + host)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in host:
        return None
    return parts.hostname.lower(), port


class OriginPolicy:
    """The origins allowed to use a server, and the check of one request.

    Args:
        allowed: origins as listed in the module docstring, or None for same-origin
            only. An empty list allows no browser page at all (clients that send no
            ``Origin`` header, i.e. everything but browsers, are always allowed).

    Raises:
        ValueError: an entry that is not one of the accepted forms.
        TypeError: ``allowed`` is a single string (a common slip for a list of one).
    """

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        if isinstance(allowed, str | bytes):
            raise TypeError("allowed_origins is a list of origins, e.g. [\"https://app.example.com\"],"
                            " not a string")
        self.same_origin = allowed is None
        self.any_origin = False
        self.null_origin = False
        self._exact: set[tuple[str, str, int | None]] = set()
        self._suffixes: set[tuple[str, str, int | None]] = set()  # (scheme, ".domain", port)
        entries = [] if allowed is None else list(allowed)
        for entry in entries:
            if not isinstance(entry, str):
                raise TypeError(f"an allowed origin is a string, not {entry!r}")
            if entry == "*":
                self.any_origin = True
            elif entry == "null":
                self.null_origin = True
            elif "://*." in entry:
                scheme, _, rest = entry.partition("://*.")
                scheme, domain, port = parse_origin(f"{scheme}://{rest}")
                self._suffixes.add((scheme, "." + domain, port))
            elif "*" in entry:
                raise ValueError(f"invalid allowed origin {entry!r}: a wildcard is either \"*\" "
                                 "alone or a subdomain wildcard like https://*.example.com")
            else:
                self._exact.add(parse_origin(entry))
        self.entries = tuple(entries)

    def __repr__(self) -> str:
        return "OriginPolicy(same origin)" if self.same_origin else f"OriginPolicy({self.entries})"

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this ``Origin`` header, sent to this ``Host``, may go on.

        No ``Origin`` (None) is allowed: browsers always send one where it matters (a
        WebSocket handshake, a cross-origin request), so its absence means a
        non-browser client, which could send any ``Origin`` it liked anyway.

        Same-origin mode compares host and port but not the scheme, on purpose: behind
        a proxy that terminates TLS, the page is ``https://example.com`` while the
        request reaches the server as plain HTTP with ``Host: example.com``. The port
        of a ``Host`` without one is taken to be the default port of the origin's
        scheme, as a browser leaves the default port out of both. The proxy must pass
        the client's ``Host`` header on (nginx: ``proxy_set_header Host $http_host``).
        """
        if origin is None:
            return True
        if origin == "null":
            return self.null_origin
        try:
            scheme, hostname, port = parse_origin(origin)
        except ValueError:
            return False
        if self.same_origin:
            target = _parse_host(host) if host else None
            if target is None:
                return False
            target_host, target_port = target
            if target_port is None:
                target_port = _DEFAULT_PORTS.get(scheme)
            return (hostname, port) == (target_host, target_port)
        if self.any_origin or (scheme, hostname, port) in self._exact:
            return True
        return any(scheme == s and port == p and hostname.endswith(suffix)
                   for s, suffix, p in self._suffixes)

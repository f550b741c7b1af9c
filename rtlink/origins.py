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
the ``Origin`` must be those of the ``Host`` header the request was sent to, and that
host must be one no DNS answer can point elsewhere: an IP address, ``localhost`` or a
``*.localhost`` name. A DNS name needs listing. Otherwise a page of a domain whose DNS
the attacker controls (**DNS rebinding**: ``evil.example`` answered first with the
attacker's address, then with ``127.0.0.1``) would send ``Host`` and ``Origin`` both
``evil.example:PORT`` to a server it reaches through the victim's browser — on loopback
or a private network — and pass as same-origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["OriginPolicy", "parse_origin", "is_fixed_host"]

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


def is_fixed_host(hostname: str) -> bool:
    """Whether no DNS answer can send a browser elsewhere for ``hostname`` (lowercase,
    IPv6 without brackets): an IP address, ``localhost`` or a name under
    ``.localhost``, which browsers resolve to loopback themselves (RFC 6761) and which
    no public DNS serves. Pages of such a host cannot be DNS-rebound."""
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


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
        """Whether a request with this ``Origin`` header, sent to this ``Host``, may go on
        (:meth:`refusal` is None)."""
        return self.refusal(origin, host) is None

    def refusal(self, origin: str | None, host: str | None) -> str | None:
        """Why a request with this ``Origin`` header, sent to this ``Host``, may not go
        on (for the log), or None if it may.

        No ``Origin`` (None) is allowed: browsers always send one where it matters (a
        WebSocket handshake, a cross-origin request), so its absence means a
        non-browser client, which could send any ``Origin`` it liked anyway.

        Same-origin mode compares host and port but not the scheme, on purpose: behind
        a proxy that terminates TLS, the page is ``https://example.com`` while the
        request reaches the server as plain HTTP with ``Host: example.com``. The port
        of a ``Host`` without one is taken to be the default port of the origin's
        scheme, as a browser leaves the default port out of both. The host must be
        fixed (:func:`is_fixed_host`): a DNS name is refused even when ``Origin`` and
        ``Host`` agree, since a rebinding attacker makes them agree (see the module
        docstring); such a site lists its origin instead.
        """
        if origin is None:
            return None
        if origin == "null":
            return None if self.null_origin else "the null origin is not listed"
        try:
            scheme, hostname, port = parse_origin(origin)
        except ValueError:
            return "malformed Origin"
        if self.same_origin:
            target = _parse_host(host) if host else None
            if target is None:
                return "no valid Host header to compare it with"
            target_host, target_port = target
            if target_port is None:
                target_port = _DEFAULT_PORTS.get(scheme)
            if (hostname, port) != (target_host, target_port):
                return "not the same origin (no allowed_origins list)"
            if not is_fixed_host(hostname):
                return ("same origin, but a DNS name: without allowed_origins only pages "
                        "of an IP address or localhost are allowed (DNS rebinding); list "
                        "this origin in allowed_origins")
            return None
        if self.any_origin or (scheme, hostname, port) in self._exact:
            return None
        if any(scheme == s and port == p and hostname.endswith(suffix)
               for s, suffix, p in self._suffixes):
            return None
        return "not in allowed_origins"

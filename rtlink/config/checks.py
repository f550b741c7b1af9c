"""The checks of the single strings options are made of: a host, a mount path, a
backend URL, an origin, a transport name; and :func:`redact_url`, with which every
message and printout shows a URL without its passwords.

Each check returns the value normalised, or raises ValueError saying what was expected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..backends import backend_schemes
from ..origins import OriginPolicy
from ..server import TRANSPORT_NAMES

__all__ = ["redact_url", "host", "mount_path", "backend_url", "origin", "transport_name"]


def redact_url(url: str) -> str:
    """``url`` without its passwords (``redis://user:***@host``, and query options
    named like ``*password``, as Sentinel's), for printing."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [: show the scheme only, never the rest
        return f"{url.partition(':')[0]}://***"
    netloc, query = parts.netloc, parts.query
    credentials, at, hosts = netloc.rpartition("@")
    user, colon, _ = credentials.partition(":")
    if at and colon:
        netloc = f"{user}:***@{hosts}"
    if "password" in query:
        query = "&".join(
            f"{name}=***" if name.endswith("password") else f"{name}{eq}{value}"
            for name, eq, value in (item.partition("=") for item in query.split("&"))
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Not urlunsplit: it turns unix:///path into unix:/path.
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def host(text: str) -> str:
    """Check a host name or address to listen on (no spaces, no URL parts)."""
    name = text.strip()
    if not name or any(c.isspace() or c in "/?#@" for c in name):
        raise ValueError(f"expected a host name or address, like 127.0.0.1 or 0.0.0.0, "
                         f"got {text!r}")
    return name


def mount_path(text: str) -> str:
    """Normalise a mount path the way :func:`rtlink.attach` does (``"/"`` → ``""``)."""
    stripped = text.strip().strip("/")
    if any(c in stripped for c in "?#") or any(c.isspace() for c in stripped):
        raise ValueError(f"expected a URL path like /rt, got {text!r}")
    return "/" + stripped if stripped else ""



def backend_url(text: str) -> str:
    """Check that ``text`` is a URL of a registered backend scheme."""
    scheme = urlsplit(text.strip()).scheme.lower()
    if scheme not in backend_schemes():
        known = ", ".join(f"{name}://" for name in backend_schemes())
        raise ValueError(f"expected a backend URL ({known}), like redis://127.0.0.1:6379/0, "
                         f"got {redact_url(text)!r}")
    return text.strip()


def origin(text: str) -> str:
    """Check one entry of ``allowed_origins`` (see :mod:`rtlink.origins`)."""
    OriginPolicy([text])  # raises ValueError naming the problem
    return text


def transport_name(text: str) -> str:
    """Check the name of a transport (``websocket``, ``sse``, ``longpoll``)."""
    name = text.strip().lower()
    if name not in TRANSPORT_NAMES:
        raise ValueError(f"unknown transport {text!r}; known: {', '.join(TRANSPORT_NAMES)}")
    return name

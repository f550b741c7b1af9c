"""Backends: the engine behind a hub (see :mod:`rtlink.backends.base`).

A backend is given to the server as an object or as a URL. URLs are resolved through
a registry of schemes, each naming a ``"module.path:ClassName"`` that is imported only
when a URL of that scheme is used, so optional engines cost nothing until chosen::

    create_backend("memory://")                      # MemoryBackend()
    create_backend("memory://?sweep_interval=30")    # MemoryBackend(sweep_interval=30)
    create_backend(MyBackend())                      # passed through

Pre-registered schemes: ``memory`` (:class:`~rtlink.backends.memory.MemoryBackend`),
and ``redis``, ``rediss``, ``unix``, ``redis+sentinel``, ``redis+cluster``,
``rediss+cluster`` and ``redis+sharded`` (``rtlink.backends.redis``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from .base import Backend, HistoryPolicy, HistoryResult, PublicationListener, PublishResult
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "HistoryPolicy",
    "HistoryResult",
    "PublishResult",
    "PublicationListener",
    "MemoryBackend",
    "register_backend",
    "create_backend",
    "backend_schemes",
]

#: Something that builds a backend: a Backend subclass or a factory function.
BackendFactory = Callable[..., Backend]

_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.\-]*")
_TARGET_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

_registry: dict[str, str | BackendFactory] = {}
_install_hints: dict[str, str] = {}


def register_backend(
    scheme: str, target: str | BackendFactory, *, install_hint: str | None = None
) -> None:
    """Make ``scheme://`` URLs create backends with ``target``.

    Registering a scheme again replaces the earlier registration.

    How a URL becomes a backend: if the factory has a ``from_url`` attribute, the
    backend is ``factory.from_url(url)`` (for engines with an address, like Redis).
    Otherwise the URL must have no host or path, and its query parameters are passed
    as keyword arguments (``memory://?idle_ttl=600`` → ``factory(idle_ttl=600)``),
    with values converted to int, float, bool (``true``/``false``) or None
    (``none``) when they look like one.

    Args:
        scheme: the URL scheme, lowercase (``"memory"``).
        target: ``"module.path:ClassName"``, imported lazily on first use, or the
            factory itself.
        install_hint: what to tell the user when the module needs a package that is
            not installed (e.g. ``"pip install 'rtlink[redis]'"``).

    Raises:
        ValueError: the scheme or the target string is malformed.
    """
    if not _SCHEME_RE.fullmatch(scheme):
        raise ValueError(f"invalid backend scheme {scheme!r}: use lowercase letters")
    if isinstance(target, str) and not _TARGET_RE.fullmatch(target):
        raise ValueError(f"backend target must look like 'module.path:ClassName', not {target!r}")
    _registry[scheme] = target
    if install_hint is None:
        _install_hints.pop(scheme, None)
    else:
        _install_hints[scheme] = install_hint


def backend_schemes() -> list[str]:
    """Return the registered URL schemes, sorted."""
    return sorted(_registry)


def create_backend(url_or_backend: str | Backend) -> Backend:
    """Return a backend: ``url_or_backend`` itself if it is one, else one built from the URL.

    Args:
        url_or_backend: a :class:`Backend` instance, or a URL such as ``"memory://"``.

    Returns:
        The backend, not started yet (unless an instance was passed in).

    Raises:
        ValueError: the URL's scheme is not registered, or the URL or its options are
            invalid for the backend.
        ImportError: the backend for the scheme is not available in this installation
            (its module or a package it needs is missing).
        TypeError: the argument is neither a URL nor a backend, or the factory did
            not return a backend.
    """
    if isinstance(url_or_backend, Backend):
        return url_or_backend
    if not isinstance(url_or_backend, str):
        raise TypeError(
            f"expected a backend URL or a Backend instance, not {type(url_or_backend).__name__}"
        )
    url = url_or_backend
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    known = ", ".join(f"{name}://" for name in backend_schemes())
    if not scheme:
        raise ValueError(f"a backend URL needs a scheme (known schemes: {known})")
    if scheme not in _registry:
        raise ValueError(f"unknown backend scheme {scheme!r} (known schemes: {known})")
    factory = _load(scheme)
    from_url = getattr(factory, "from_url", None)
    if callable(from_url):
        backend = from_url(url)
    else:
        # Messages name only the scheme: a URL may carry credentials.
        if parts.netloc or parts.path not in ("", "/") or parts.fragment:
            raise ValueError(f"{scheme}:// backend URLs take no host or path, only ?options")
        options = _options(scheme, parts.query)
        try:
            backend = factory(**options)
        except TypeError as exc:
            raise ValueError(f"invalid options for the {scheme}:// backend: {exc}") from exc
    if not isinstance(backend, Backend):
        raise TypeError(f"the {scheme}:// factory returned {type(backend).__name__}, not a Backend")
    return backend


def _load(scheme: str) -> BackendFactory:
    target = _registry[scheme]
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ImportError(
                f"the {scheme}:// backend is not available: its module {module_name!r} is not "
                "part of this installation (yet)"
            ) from exc
        hint = _install_hints.get(scheme)
        raise ImportError(
            f"the {scheme}:// backend needs the {missing!r} package, which is not installed"
            + (f"; install it with: {hint}" if hint else "")
        ) from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ImportError(
            f"the {scheme}:// backend is not available: {module_name!r} has no {attribute!r}"
        )
    return factory  # type: ignore[no-any-return]


def _options(scheme: str, query: str) -> dict[str, object]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ValueError(f"invalid query string in the {scheme}:// backend URL") from exc
    options: dict[str, object] = {}
    for name, value in pairs:
        if not name.isidentifier():
            raise ValueError(f"invalid option name {name!r} for the {scheme}:// backend")
        if name in options:
            raise ValueError(f"option {name!r} given twice for the {scheme}:// backend")
        options[name] = _convert(value)
    return options


def _convert(value: str) -> object:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


register_backend("memory", "rtlink.backends.memory:MemoryBackend")
# One Redis (plain, TLS, a Unix socket), a Sentinel-managed master, a Redis Cluster, or
# channels spread over several independent Redis servers: rtlink.backends.redis.
for _scheme, _target in [
    ("redis", "RedisBackend"), ("rediss", "RedisBackend"), ("unix", "RedisBackend"),
    ("redis+sentinel", "RedisBackend"), ("redis+cluster", "RedisBackend"),
    ("rediss+cluster", "RedisBackend"), ("redis+sharded", "ShardedRedisBackend"),
]:
    register_backend(_scheme, f"rtlink.backends.redis:{_target}",
                     install_hint="pip install 'rtlink[redis]'")

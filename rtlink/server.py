"""Mounting rtlink on an aiohttp application."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import web

from .codecs import CODECS
from .codes import CloseCode
from .hub import Hub
from .logs import redact_aiohttp_logs
from .metrics import metrics_handler
from .origins import OriginPolicy
from .protocol import PROTOCOL_VERSION
from .transports.guard import Guard
from .transports.http import NO_CACHE, refuse_request, send_handler
from .transports.publish_api import ApiKeys, publish_handler, refuse_publish
from .transports.registry import (
    CLIENT_FILES,
    ENDPOINTS,
    INFO_PATH,
    PUBLISH_PATH,
    SEND_PATH,
    TICKET_PATH,
    TRANSPORT_NAMES,
    TRANSPORTS,
)
from .transports.server_api import API_OPERATIONS, API_PATH, api_operation_handler
from .transports.tickets import ticket_handler

# TRANSPORT_NAMES, ENDPOINTS and CLIENT_FILES live in the transport registry
# (rtlink.transports.registry); they are re-exported here, where they always were.
__all__ = ["attach", "TRANSPORT_NAMES", "ENDPOINTS", "CLIENT_FILES"]

logger = logging.getLogger("rtlink.server")


def attach(app: web.Application, hub: Hub, path: str = "/rt",
           transports: Iterable[str] = TRANSPORT_NAMES, *, serve_client: bool = True,
           allowed_origins: Iterable[str] | None = None,
           api_keys: Iterable[str] | None = None,
           metrics_path: str | None = None) -> None:
    """Serve ``hub`` on ``app`` under ``path``.

    Mounts, for the enabled ``transports``: ``{path}/ws`` (WebSocket), ``{path}/sse``
    (server-sent events) and ``{path}/poll`` (long polling); ``{path}/send`` (POST,
    client frames for the HTTP transports) when either HTTP transport is enabled;
    ``{path}/ticket`` (POST) when the hub's authenticator issues tickets (a
    :class:`~rtlink.auth.TokenAuth` does): trades a token for a single-use ticket;
    ``{path}/publish`` (POST) with ``api_keys``: the HTTP publish API for services,
    and ``{path}/api/<operation>`` (POST): the server API (publish_many, channels,
    disconnect, unsubscribe, subscribe; :mod:`rtlink.transports.server_api`);
    ``{path}/info``, a small JSON discovery document listing what is enabled; and, with
    ``serve_client``, the browser client: ``{path}/client.js`` (script-tag build, defines
    the global ``rtlink``) and ``{path}/client.mjs`` (ES module); and, with
    ``metrics_path``, the hub's Prometheus metrics (:mod:`rtlink.metrics`).

    Credentials in URLs and ``Authorization`` values are redacted from aiohttp's access
    and server logs (:func:`rtlink.logs.redact_aiohttp_logs`): a token refused because
    it came in a URL must not stay in the access line that records the URL.

    The hub is started with the application and closed with it; on shutdown every
    connection is closed with 1001 (going away), which tells clients to reconnect —
    to another node, or to this one once it is back — and resume from their
    positions.

    Args:
        app: the aiohttp application.
        hub: the hub to serve.
        path: the mount path; clients connect to ``http://host:port{path}``.
        transports: names of the transports to enable (default: all).
        serve_client: serve the browser client files shipped in the package (default:
            true). They are read once, here, and answered with an ETag (requests with
            a matching ``If-None-Match`` get 304), ``Cache-Control: no-cache`` (browsers
            revalidate, so a server upgrade is picked up at once) and, when the request
            accepts it, gzip. A file missing from the package (a broken install) is
            logged as a warning and not mounted; the rest of rtlink works without it.
        allowed_origins: the web origins whose pages may use the server (see
            :mod:`rtlink.origins`): ``"*"`` (any), ``"https://app.example.com"``,
            ``"https://*.example.com"`` (subdomains), ``"null"``. Default (None): only
            pages served from the host the request was sent to (same origin), when
            that host is an IP address or ``localhost`` (a DNS name must be listed:
            DNS rebinding, see :mod:`rtlink.origins`). Every
            route but the client files checks the browser's ``Origin`` header before
            authentication and refuses others with 4501 (see
            :mod:`rtlink.transports.guard`); requests without ``Origin`` (non-browser
            clients) are allowed. The HTTP routes answer CORS for allowed origins.
        api_keys: keys accepted by ``POST {path}/publish``
            (:mod:`rtlink.transports.publish_api`; docs/http-api.md §5), which
            publishes like :meth:`Hub.publish` for a request with ``Authorization:
            Bearer <key>``, and by ``POST {path}/api/<operation>`` (the server API,
            :mod:`rtlink.transports.server_api`; §7). Each key is a full-power
            credential (any channel the server knows, no client rules; any user
            disconnected). None or empty (default): not mounted.
        metrics_path: where to serve the hub's metrics in the Prometheus text format
            (``GET``; an absolute path, not under ``path``), e.g. ``"/metrics"``
            (:mod:`rtlink.metrics`). None (default): not mounted. Metrics are for the
            operator: keep the path from the public (see docs/operations.md).

    Raises:
        ValueError: an unknown or empty transport list, an invalid origin, or an API
            key shorter than 16 characters or not of visible ASCII, or a
            ``metrics_path`` that does not start with ``/``.
        TypeError: ``api_keys`` is a single string instead of a collection of keys.
    """
    enabled = tuple(transports)
    unknown = sorted(set(enabled) - set(TRANSPORTS))
    if unknown or not enabled:
        raise ValueError(f"unknown transports {unknown}; known: {', '.join(TRANSPORTS)}")
    base = "/" + path.strip("/") if path.strip("/") else ""
    keys = ApiKeys(api_keys or ())  # checked before anything is mounted
    if metrics_path is not None and not metrics_path.startswith("/"):
        raise ValueError(f"metrics_path must be an absolute path, not {metrics_path!r}")
    # Tokens in URLs are refused, but aiohttp logs the URLs of every request, refused
    # ones included: its access and server logs get credentials redacted.
    redact_aiohttp_logs()
    # Every route but the client files goes through the guard (origin, CORS, limits).
    guard = Guard(app, OriginPolicy(allowed_origins), hub.connection_slots)
    mounted = [transport for name, transport in TRANSPORTS.items() if name in enabled]
    for transport in mounted:
        guard.add_route("GET", base + transport.path, transport.handler(hub),
                        refuse=transport.refuse, cors=transport.cors, counted=True)
    if any(transport.sends for transport in mounted):
        guard.add_route("POST", base + SEND_PATH, send_handler(hub), refuse=refuse_request)
    # Browsers trade their token for a single-use ticket to open WebSocket/SSE; without
    # tickets the 404 goes through the guard too (rtlink.transports.tickets).
    guard.add_route("POST", base + TICKET_PATH, ticket_handler(hub.authenticator))
    info = {
        "version": PROTOCOL_VERSION,
        "transports": [transport.name for transport in mounted],
        "codecs": list(CODECS),
        "max_message_size": hub.max_message_size,
        "ping_interval": hub.ping_interval,
        "poll_timeout": hub.poll_timeout,
        "max_subscriptions": hub.max_subscriptions,
        "publish_rate": hub.publish_limits.rate,
        "publish_burst": hub.publish_limits.burst,
    }

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(info, headers=NO_CACHE)

    guard.add_route("GET", base + INFO_PATH, discovery)
    if keys:
        # For servers, not pages: no CORS answers (origins are still checked).
        guard.add_route("POST", base + PUBLISH_PATH, publish_handler(hub, keys),
                        refuse=refuse_publish, cors=False)
        for name in API_OPERATIONS:
            guard.add_route("POST", f"{base}{API_PATH}/{name}",
                            api_operation_handler(hub, keys, name),
                            refuse=refuse_publish, cors=False)
    if metrics_path is not None:
        # For Prometheus, not pages: no CORS answers (origins are still checked).
        guard.add_route("GET", metrics_path, metrics_handler(hub), cors=False)
    if serve_client:
        for name in CLIENT_FILES:
            handler = _client_file_handler(name)
            if handler is None:
                logger.warning("static/%s is missing from the rtlink package (broken "
                               "install?): %s/%s is not served", name, base, name)
            else:
                app.router.add_get(f"{base}/{name}", handler)

    async def hub_lifetime(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.close()

    async def close_connections(app: web.Application) -> None:
        await hub.close_connections(CloseCode.GOING_AWAY, "server shutting down")

    app.cleanup_ctx.append(hub_lifetime)
    app.on_shutdown.append(close_connections)


def _client_file_handler(name: str) -> Callable[[web.Request], Awaitable[web.Response]] | None:
    """A handler answering with the package file ``static/{name}`` (JavaScript), or None
    if the package has no such file. The file is read and compressed once, now."""
    try:
        data = importlib.resources.files("rtlink").joinpath("static", name).read_bytes()
    except OSError:
        return None
    compressed = gzip.compress(data, 9)
    digest = hashlib.sha256(data).hexdigest()[:16]

    async def handler(request: web.Request) -> web.Response:
        gzipped = _accepts_gzip(request)
        # A strong ETag names one representation: the gzipped one has its own.
        etag = digest + "-gzip" if gzipped else digest
        headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if any(tag.value in (etag, "*") for tag in request.if_none_match or ()):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = "text/javascript; charset=utf-8"
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=compressed if gzipped else data, headers=headers)

    return handler


def _accepts_gzip(request: web.Request) -> bool:
    """Whether the request's Accept-Encoding accepts gzip (listed, and not with q=0)."""
    for item in request.headers.get("Accept-Encoding", "").lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() == "gzip":
            name, _, value = params.partition("=")
            try:
                return name.strip() != "q" or float(value) > 0
            except ValueError:
                return False
    return False

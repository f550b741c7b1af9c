"""The application of ``rtlink serve``: a hub built from the configuration, rtlink
mounted on it, and the demo chat page at ``/``."""

from __future__ import annotations

import html
import importlib.resources

from aiohttp import web

from ..auth import TokenAuth
from ..config import ServeConfig
from ..hub import Hub
from ..server import attach

__all__ = ["PATH_PLACEHOLDER", "build_app", "demo_page"]

#: Replaced with the mount path in the demo page's ``<meta name="rtlink-path">``.
PATH_PLACEHOLDER = "{{RTLINK_PATH}}"


def build_app(config: ServeConfig | None = None) -> tuple[web.Application, Hub]:
    """Build the application of ``rtlink serve``: a hub with ``config``'s backend, channel
    rules, authentication and limits, rtlink mounted at ``config.path`` (with the
    publish API and the metrics endpoint if configured) and the demo chat page at ``/``.

    Args:
        config: the configuration (default: :class:`~rtlink.config.ServeConfig`'s
            defaults: memory backend, every channel, no authentication).

    Raises:
        ValueError: options the hub, the backend or :func:`rtlink.attach` refuse.
        ImportError: the backend's optional dependency is not installed.
    """
    config = config or ServeConfig()
    authenticate = None
    if config.token_secret is not None:
        authenticate = TokenAuth(config.token_secret, anonymous=config.allow_anonymous)
    hub = Hub(
        backend=config.backend,
        channels=config.channel_rules(),
        authenticate=authenticate,
        publish_rate=config.publish_rate,
        publish_burst=config.publish_burst,
        max_connections_per_ip=config.max_connections_per_ip,
        websocket_compression=config.websocket_compression,
    )
    app = web.Application()
    attach(app, hub, path=config.path, transports=config.transports,
           allowed_origins=config.allowed_origins, api_keys=config.api_keys,
           metrics_path=config.metrics_path)
    body = demo_page(config.path)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    return app, hub


def demo_page(path: str) -> str:
    """The demo chat page, its ``<meta name="rtlink-path">`` pointing at ``path``."""
    page = importlib.resources.files("rtlink").joinpath("static/index.html")
    text = page.read_text(encoding="utf-8")
    return text.replace(PATH_PLACEHOLDER, html.escape(path, quote=True))

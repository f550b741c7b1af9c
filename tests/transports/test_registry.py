"""The transport registry (rtlink.transports.registry): what attach mounts is what it lists."""

from __future__ import annotations

import pytest
from aiohttp import web

import rtlink
import rtlink.server
from rtlink.config import ConfigError, load_serve_config
from rtlink.transports import registry
from rtlink.transports.registry import TRANSPORTS, root_routes

API_KEY = "k" * 32


def mounted(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route of ``app``, but CORS preflights and the HEAD
    routes aiohttp adds to GET ones."""
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.method not in ("OPTIONS", "HEAD") and route.resource is not None}


def test_the_older_names_are_views_of_the_registry() -> None:
    names = ("websocket", "sse", "longpoll")
    assert rtlink.server.TRANSPORT_NAMES == registry.TRANSPORT_NAMES == names
    endpoints = {name: (transport.path, transport.handler)
                 for name, transport in TRANSPORTS.items()}
    assert endpoints == rtlink.server.ENDPOINTS
    assert rtlink.server.CLIENT_FILES == registry.CLIENT_FILES


@pytest.mark.parametrize("route", sorted(root_routes()))
def test_the_config_keeps_metrics_clear_of_every_root_route(route: str) -> None:
    environ = {"RTLINK_PATH": "/", "RTLINK_METRICS_PATH": route}
    with pytest.raises(ConfigError, match="expected a path not used by rtlink"):
        load_serve_config({}, environ)
    assert load_serve_config({}, {**environ, "RTLINK_METRICS_PATH": "/metrics"})


def test_attach_mounts_at_the_root_exactly_the_routes_the_registry_lists() -> None:
    app = web.Application()
    rtlink.attach(app, rtlink.Hub(), path="/", api_keys=[API_KEY])
    assert {path for _, path in mounted(app)} == root_routes()


@pytest.mark.parametrize("enabled", [["websocket"], ["sse"], ["longpoll"], ["websocket", "sse"]])
def test_attach_mounts_the_enabled_transports_and_send_only_for_those_that_send(
    enabled: list[str],
) -> None:
    app = web.Application()
    rtlink.attach(app, rtlink.Hub(), path="/rt", transports=enabled, serve_client=False)
    expected = {("GET", "/rt" + TRANSPORTS[name].path) for name in enabled}
    if any(TRANSPORTS[name].sends for name in enabled):
        expected.add(("POST", "/rt/send"))
    expected |= {("POST", "/rt/ticket"), ("GET", "/rt/info")}
    assert mounted(app) == expected

"""Shared fixtures (both codecs, fast-reconnecting clients, a throw-away Redis) and the
markers that tests/README.md describes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rtlink
from rtlink.client import forget_transports
from tests.support import FAST_RECONNECT
from tests.support.redis_server import RedisServer, run_redis

_E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what the markers can tell from where a test is and what it asks for:
    everything under tests/e2e/ is ``slow`` (the fast lane leaves it out), a test with
    the ``chromium`` fixture is ``browser``, one with a Redis fixture is ``redis`` (and
    ``slow`` on the cluster).
    Tests that start Redis or a proxy themselves carry the marker in their module."""
    for item in items:
        if item.path.is_relative_to(_E2E):
            item.add_marker(pytest.mark.slow)
        fixtures = getattr(item, "fixturenames", ())
        if "chromium" in fixtures:
            item.add_marker(pytest.mark.browser)
        if {"redis_server", "redis_sentinel", "redis_cluster"} & set(fixtures):
            item.add_marker(pytest.mark.redis)
        if "redis_cluster" in fixtures:  # 2 s to start: Redis holds cluster_state:ok
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fresh_transport_memory() -> None:
    """Each test starts with no memory of which transport worked for which origin."""
    forget_transports()


@pytest.fixture(params=["json", "msgpack"])
def codec(request: pytest.FixtureRequest) -> str:
    """Run a test once per codec."""
    return str(request.param)


@pytest.fixture
def transport() -> str:
    """The transport clients use; test modules override it to run on every transport."""
    return "websocket"


@pytest.fixture
def make_client(codec: str, transport: str):  # type: ignore[no-untyped-def]
    """Build clients with the test's codec, transport and fast reconnects."""
    clients: list[rtlink.Client] = []

    def make(url: str, **options: Any) -> rtlink.Client:
        options = {**FAST_RECONNECT, "transports": [transport], **options}
        client = rtlink.Client(url, codec=codec, **options)
        clients.append(client)
        return client

    yield make
    # Clients are closed by the tests' ``async with``; this only catches leftovers.
    for client in clients:
        assert client.state in (
            rtlink.ConnectionState.CLOSED, rtlink.ConnectionState.DISCONNECTED
        ), f"client left open in state {client.state}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throw-away Redis for the session (tests that restart or kill it use their
    own :func:`tests.support.redis_server.run_redis`). Tests share it through unique names."""
    with run_redis() as server:
        yield server

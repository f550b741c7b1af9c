"""Shared fixtures: both codecs, and fast-reconnecting clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rtlink
from rtlink.client.client import forget_transports

from .redis_server import RedisServer, run_redis

#: Reconnect quickly in tests; the backoff itself is tested in tests/test_backoff.py.
FAST_RECONNECT: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.2}


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
    own :func:`tests.redis_server.run_redis`). Tests share it through unique names."""
    with run_redis() as server:
        yield server

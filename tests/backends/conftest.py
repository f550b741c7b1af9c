"""Redis topologies for the backend tests: a Sentinel setup and a Cluster, one per module.

A test that changes the topology (a failover, a killed node) starts its own with
:func:`tests.support.redis_server.run_sentinel` or
:func:`tests.support.redis_server.run_cluster` instead, so that the next test of the
module still finds the roles the fixture started with.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import ClusterSetup, SentinelSetup, run_cluster, run_sentinel


@pytest.fixture(scope="module")
def redis_sentinel() -> Iterator[SentinelSetup]:
    """A master, one replica and three sentinels for the module (about 0.3 s to
    start); tests share it through unique key and channel names."""
    with run_sentinel() as setup:
        yield setup


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[ClusterSetup]:
    """Three masters with one replica each for the module (about 2 s to start);
    tests share it through unique key and channel names."""
    with run_cluster() as cluster:
        yield cluster

"""Choosing a backend by URL: ``create_backend`` and the scheme registry."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import rtlink.backends as backends
from rtlink.backends import (
    Backend,
    MemoryBackend,
    backend_schemes,
    create_backend,
    register_backend,
)
from rtlink.backends.redis import RedisBackend


@pytest.fixture
def registry() -> Iterator[None]:
    """Undo registrations made by a test."""
    saved = dict(backends._registry), dict(backends._install_hints)
    yield
    backends._registry.clear()
    backends._registry.update(saved[0])
    backends._install_hints.clear()
    backends._install_hints.update(saved[1])


def test_memory_url_creates_a_memory_backend() -> None:
    backend = create_backend("memory://")
    assert type(backend) is MemoryBackend


@pytest.mark.parametrize("url", ["memory:", "memory:///", "MEMORY://"])
def test_memory_url_spellings(url: str) -> None:
    assert isinstance(create_backend(url), MemoryBackend)


def test_memory_url_options_become_keyword_arguments() -> None:
    backend = create_backend("memory://?sweep_interval=30&idle_ttl=1.5&max_keys_per_channel=7")
    assert isinstance(backend, MemoryBackend)
    assert backend._sweep_interval == 30
    assert backend._idle_ttl == 1.5
    assert backend._max_keys == 7


def test_none_option_value() -> None:
    backend = create_backend("memory://?sweep_interval=none")
    assert isinstance(backend, MemoryBackend)
    assert backend._sweep_interval is None


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("memory://?bogus=1", "invalid options"),
        ("memory://?idle_ttl=1&idle_ttl=2", "given twice"),
        ("memory://somehost", "no host or path"),
        ("memory://?sweep_interval=-1", "sweep_interval"),
    ],
)
def test_bad_memory_urls(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_backend(url)


def test_a_backend_instance_passes_through() -> None:
    backend = MemoryBackend()
    assert create_backend(backend) is backend


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown backend scheme 'kafka'") as info:
        create_backend("kafka://broker:9092")
    assert "memory://" in str(info.value)
    assert "redis://" in str(info.value)


def test_missing_scheme() -> None:
    with pytest.raises(ValueError, match="needs a scheme"):
        create_backend("just-a-name")


def test_not_a_url() -> None:
    with pytest.raises(TypeError):
        create_backend(42)  # type: ignore[arg-type]


def test_redis_urls_build_a_redis_backend_with_its_options() -> None:
    assert {"memory", "redis", "rediss", "unix", "redis+sentinel"} <= set(backend_schemes())
    backend = create_backend("redis://:secret@localhost:6379/2?prefix=app&meta_ttl=60"
                             "&socket_keepalive=true")
    assert isinstance(backend, RedisBackend)
    assert backend.prefix == "app"
    assert backend.meta_ttl == 60
    kwargs = backend._redis.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("localhost", 6379, 2)
    assert kwargs["socket_keepalive"] is True  # redis-py's own options pass through


@pytest.mark.parametrize(("url", "where"), [
    ("rediss://:secret@cache.internal:6380/1", "cache.internal:6380/1"),
    ("unix:///run/redis/redis.sock?db=3&prefix=app", "unix:/run/redis/redis.sock"),
    ("redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2/orders/2?sentinel_password=s3",
     "master 'orders' of Sentinels 10.0.0.1:26379,10.0.0.2:26379 (at not resolved yet, db 2)"),
])
def test_every_redis_deployment_has_a_url(url: str, where: str) -> None:
    # Nothing is connected until the backend is used: building it checks the URL.
    backend = create_backend(url)
    assert isinstance(backend, RedisBackend)
    assert backend.address() == where
    assert "secret" not in backend.address() and "s3" not in backend.address()


@pytest.mark.parametrize("url", [
    "redis+sentinel://10.0.0.1:26379",  # no master name
    "redis+sentinel://10.0.0.1:26379/orders/first",  # a database must be a number
    "redis+sentinel://10.0.0.1:port/orders",
])
def test_malformed_sentinel_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="Sentinel"):
        create_backend(url)


def test_a_cluster_url_needs_sharded_pub_sub_in_redis_py() -> None:
    # redis-py 8.0 brought SSUBSCRIBE to its asyncio client; the minimum-versions lane
    # runs this with an older one.
    from redis.asyncio.client import PubSub

    url = "rediss+cluster://:secret@10.0.0.1:7000,10.0.0.2?prefix=app&socket_keepalive=true"
    if not hasattr(PubSub, "ssubscribe"):
        with pytest.raises(RuntimeError, match="Redis Cluster needs redis-py 8.0"):
            create_backend(url)
        return
    backend = create_backend(url)
    assert isinstance(backend, RedisBackend)
    assert backend.prefix == "app"
    # Nothing is connected yet: the address names the startup nodes, no password.
    assert backend.address() == "cluster 10.0.0.1:7000, 10.0.0.2:6379"
    kwargs = backend._redis.get_connection_kwargs()
    assert kwargs["password"] == "secret"
    assert kwargs["socket_keepalive"] is True
    assert kwargs["connection_class"].__name__ == "SSLConnection"


def test_error_messages_do_not_echo_credentials() -> None:
    with pytest.raises(ValueError) as invalid:
        create_backend("redis://:hunter2@localhost:6379/0?meta_ttl=soon")
    assert "meta_ttl" in str(invalid.value)
    assert "hunter2" not in str(invalid.value)
    with pytest.raises(ValueError) as unknown:
        create_backend("nosuch://user:hunter2@host")
    assert "hunter2" not in str(unknown.value)


def test_register_a_factory(registry: None) -> None:
    made: list[Backend] = []

    def factory(**options: object) -> Backend:
        backend = MemoryBackend(**options)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    register_backend("custom", factory)
    assert create_backend("custom://?idle_ttl=5") is made[0]


def test_register_a_lazy_target(registry: None) -> None:
    register_backend("lazy", "rtlink.backends.memory:MemoryBackend")
    assert isinstance(create_backend("lazy://"), MemoryBackend)
    assert "lazy" in backend_schemes()


def test_from_url_receives_the_whole_url(registry: None) -> None:
    urls: list[str] = []

    class WithAddress(MemoryBackend):
        @classmethod
        def from_url(cls, url: str) -> WithAddress:
            urls.append(url)
            return cls()

    register_backend("addr", WithAddress)
    assert isinstance(create_backend("addr://host:1/db?x=1"), WithAddress)
    assert urls == ["addr://host:1/db?x=1"]


def test_missing_dependency_gives_the_install_hint(
    registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def import_module(name: str) -> object:
        assert name == "somewhere.engine"
        raise ModuleNotFoundError("No module named 'thing'", name="thing")

    monkeypatch.setattr("rtlink.backends.importlib", SimpleNamespace(import_module=import_module))
    register_backend("needsdep", "somewhere.engine:Engine", install_hint="pip install thing")
    with pytest.raises(ImportError, match=r"needs the 'thing' package.*pip install thing"):
        create_backend("needsdep://")


def test_missing_attribute(registry: None) -> None:
    register_backend("noattr", "rtlink.backends.memory:NoSuchBackend")
    with pytest.raises(ImportError, match="has no 'NoSuchBackend'"):
        create_backend("noattr://")


def test_factory_must_return_a_backend(registry: None) -> None:
    not_a_factory: Any = lambda: object()  # noqa: E731
    register_backend("wrong", not_a_factory)
    with pytest.raises(TypeError, match="not a Backend"):
        create_backend("wrong://")


@pytest.mark.parametrize(
    ("scheme", "target"),
    [("Bad Scheme", "a.b:C"), ("ok", "no-colon"), ("ok", "a.b:")],
)
def test_register_rejects_malformed_input(registry: None, scheme: str, target: str) -> None:
    with pytest.raises(ValueError):
        register_backend(scheme, target)

"""LocalClaims, the per-process claims behind the default ``Backend.claim``: expiry,
the bound on live claims, and pruning (a fake clock drives time)."""

from __future__ import annotations

import pytest

from rtlink.backends.base import LocalClaims
from rtlink.backends.memory import MemoryBackend
from rtlink.errors import BackendUnavailable

from .test_custom_backend import ListBackend
from .test_memory import FakeClock


def test_a_key_is_claimed_once_until_its_ttl_passed() -> None:
    clock = FakeClock()
    claims = LocalClaims(clock=clock)
    assert claims.claim("k", 10) is True
    clock.advance(9.9)
    assert claims.claim("k", 10) is False
    clock.advance(0.1)
    assert claims.claim("k", 10) is True
    clock.advance(5)
    assert claims.claim("k", 10) is False  # the second claim runs from its own start


def test_expired_claims_are_pruned() -> None:
    clock = FakeClock()
    claims = LocalClaims(clock=clock)
    for i in range(1000):
        assert claims.claim(f"k{i}", 1 + i % 3)
    assert len(claims) == 1000
    clock.advance(3)
    assert claims.claim("fresh", 1)
    assert len(claims) == 1


def test_at_the_bound_a_claim_fails_as_temporary_instead_of_forgetting_one() -> None:
    clock = FakeClock()
    claims = LocalClaims(max_claims=3, clock=clock)
    for key in "abc":
        assert claims.claim(key, 10)
    with pytest.raises(BackendUnavailable, match="max_claims=3") as info:
        claims.claim("d", 10)
    assert info.value.temporary
    assert claims.claim("a", 10) is False  # nothing was forgotten to make room
    clock.advance(10)
    assert claims.claim("d", 10) is True


def test_max_claims_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_claims"):
        LocalClaims(max_claims=0)


async def test_the_memory_backend_claims_on_its_own_clock() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock, sweep_interval=None)
    assert await backend.claim("ticket:1", 30) is True
    assert await backend.claim("ticket:1", 30) is False
    clock.advance(30)
    assert await backend.claim("ticket:1", 30) is True


async def test_a_backend_written_without_claim_inherits_one() -> None:
    # ListBackend (tests/backends/test_custom_backend.py) does not define claim.
    assert "claim" not in vars(ListBackend)
    first, second = ListBackend(), ListBackend()
    assert await first.claim("k", 30) is True
    assert await first.claim("k", 30) is False
    assert await second.claim("k", 30) is True  # per backend object, per process

"""Reconnect delays: exponential backoff with full jitter (pure, no event loop)."""

from __future__ import annotations

import random

import pytest

from rtlink.backoff import full_jitter

ALMOST_ONE = 0.999999


def bound(attempt: int, base: float, cap: float) -> float:
    return min(cap, base * 2**attempt)


@pytest.mark.parametrize("attempt", range(71))
def test_bounds_for_every_attempt(attempt: int) -> None:
    base, cap = 0.5, 30.0
    high = full_jitter(attempt, base, cap, rand=lambda: ALMOST_ONE)
    low = full_jitter(attempt, base, cap, rand=lambda: 0.0)
    assert low == 0.0
    assert 0.0 < high < bound(attempt, base, cap)
    assert high == pytest.approx(ALMOST_ONE * bound(attempt, base, cap))


def test_grows_as_base_times_two_to_the_attempt_until_the_cap() -> None:
    base, cap = 0.01, 1000.0
    highs = [full_jitter(n, base, cap, rand=lambda: 1.0) for n in range(17)]
    assert highs == pytest.approx([base * 2**n for n in range(17)])
    for earlier, later in zip(highs, highs[1:], strict=False):
        assert later == pytest.approx(2 * earlier)


@pytest.mark.parametrize("attempt", [5, 6, 10, 63, 64, 65, 70, 1000, 10**6])
def test_cap_is_respected(attempt: int) -> None:
    # 0.5 * 2**6 = 32 > 30: from attempt 6 on the cap is the bound.
    assert full_jitter(attempt, 0.5, 30.0, rand=lambda: 1.0) <= 30.0
    if attempt >= 6:
        assert full_jitter(attempt, 0.5, 30.0, rand=lambda: 1.0) == 30.0


def test_cap_below_base_bounds_even_the_first_attempt() -> None:
    assert full_jitter(0, base=5.0, cap=1.0, rand=lambda: 1.0) == 1.0
    assert full_jitter(0, base=5.0, cap=1.0, rand=lambda: 0.5) == 0.5


def test_defaults_are_half_a_second_and_thirty_seconds() -> None:
    assert full_jitter(0, rand=lambda: 1.0) == 0.5
    assert full_jitter(3, rand=lambda: 1.0) == 4.0
    assert full_jitter(100, rand=lambda: 1.0) == 30.0


@pytest.mark.parametrize("attempt", [-1, -2, -100])
def test_negative_attempt_is_refused(attempt: int) -> None:
    with pytest.raises(ValueError):
        full_jitter(attempt)


def test_default_rand_stays_in_the_half_open_window() -> None:
    random.seed(12345)
    for attempt in (0, 1, 3, 8, 70):
        top = bound(attempt, 0.5, 30.0)
        values = [full_jitter(attempt, 0.5, 30.0) for _ in range(500)]
        assert all(0.0 <= value < top for value in values)
        # Really jittered: spread over the window, not a constant.
        assert len(set(values)) > 400
        assert min(values) < top * 0.1 and max(values) > top * 0.9

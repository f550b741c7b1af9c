"""Reconnect delays: exponential backoff with full jitter. Pure, shared by every client.

Full jitter (a uniformly random delay between 0 and the exponential bound) spreads a
crowd of clients that lost the same server over the whole window instead of letting
them return in synchronized waves.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["full_jitter"]


def full_jitter(
    attempt: int,
    base: float = 0.5,
    cap: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Return the delay in seconds before reconnect attempt ``attempt`` (0-based).

    The delay is uniform in ``[0, min(cap, base * 2**attempt))``.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    bound = cap if attempt >= 64 else min(cap, base * (2**attempt))
    return rand() * bound

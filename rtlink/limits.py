"""Per-client limits of a hub: the publish rate, and connections per client address.

Pure bookkeeping (no asyncio, no aiohttp); the clock is injectable for tests.

**Publish rate.** A token bucket: a client may publish ``burst`` times at once, and
``rate`` times per second on average after that. A publish over the limit is refused
with ``error`` 429 (temporary: clients keep it in their outbox and send it again
later); the connection stays open. Each lasting connection (WebSocket, SSE) has a
bucket of its own. ``POST {path}/send`` makes a connection per request, so its
buckets are kept per client — the request's address and the subject of its identity
— in a bounded map.

A refused publish keeps its place: until it is sent again (recognised by its
idempotency key), later publishes of the same bucket are refused too, even if tokens
came back meanwhile — otherwise a publish sent after it (already in flight, or
published by the application while it waited) could overtake it, and the channel
would hold a client's publishes out of order. A client that resends its outbox oldest
first (as the reference clients do) thus gets every publish applied once, in order.
The hold ends after :data:`ORDER_HOLD` seconds even if the refused publish never comes
back (the application gave up on it), so a client is never blocked for good.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable

__all__ = [
    "ORDER_HOLD",
    "MAX_SHARED_BUCKETS",
    "TokenBucket",
    "PublishLimits",
    "AddressSlots",
]

#: Seconds a refused publish holds back the later publishes of its bucket, at most.
#: Well above the reference clients' first retry delays (full jitter from 0.5 s).
ORDER_HOLD = 5.0
#: Most per-client buckets kept for ``POST {path}/send``; the least recently used
#: bucket beyond it is forgotten (its client starts again with a full bucket).
MAX_SHARED_BUCKETS = 10_000

Clock = Callable[[], float]


class TokenBucket:
    """Allow ``burst`` events at once and ``rate`` per second on average.

    Starts full. Refills continuously at ``rate`` tokens per second up to ``burst``.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp", "_held_key", "_held_until")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now
        self._held_key: str | None = None
        self._held_until = 0.0

    def take(self, key: str | None, now: float) -> bool:
        """Take a token for the publish with idempotency ``key``; False if refused.

        Refused too while an earlier refused publish (another key) waits to be sent
        again, for at most :data:`ORDER_HOLD` seconds (see the module docstring).
        """
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        held = self._held_key is not None and now < self._held_until
        if held and key != self._held_key:
            return False
        if self._tokens >= 1:
            self._tokens -= 1
            self._held_key = None
            return True
        if key is not None:  # without a key a retry cannot be recognised: hold nothing
            self._held_key = key
            self._held_until = now + ORDER_HOLD
        return False


class PublishLimits:
    """The publish buckets of a hub.

    Args:
        rate: publishes per second allowed on average, or None for no limit.
        burst: publishes allowed at once (the bucket's size).
        max_shared: most per-client buckets kept for ``POST {path}/send``.
        clock: a monotonic clock in seconds.
    """

    def __init__(self, rate: float | None, burst: int, *, max_shared: int = MAX_SHARED_BUCKETS,
                 clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._max_shared = max_shared
        self._shared: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def bucket(self) -> TokenBucket | None:
        """A new bucket for one lasting connection (None: no limit)."""
        if self.rate is None:
            return None
        return TokenBucket(self.rate, self.burst, self.clock())

    def shared_bucket(self, address: str | None, subject: str | None) -> TokenBucket | None:
        """The bucket of the client at ``address`` whose identity is ``subject`` (None:
        no limit). Anonymous requests from one address share one bucket.
        """
        if self.rate is None:
            return None
        key = (address, subject)
        bucket = self._shared.get(key)
        if bucket is None:
            bucket = self._shared[key] = TokenBucket(self.rate, self.burst, self.clock())
            while len(self._shared) > self._max_shared:
                self._shared.popitem(last=False)
        else:
            self._shared.move_to_end(key)
        return bucket

    def __len__(self) -> int:
        """The number of per-client buckets kept."""
        return len(self._shared)


class AddressSlots:
    """Counts open connections per client address, up to ``limit`` each (None: no limit).

    Connections without an address (e.g. over a Unix socket) are not counted.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def claim(self, address: str | None) -> bool:
        """Count one more connection from ``address``; False (and nothing counted) if
        that would exceed the limit."""
        if self.limit is None or not address:
            return True
        if self._open[address] >= self.limit:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str | None) -> None:
        """A connection counted by :meth:`claim` ended."""
        if self.limit is None or not address:
            return
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def count(self, address: str) -> int:
        """Connections open from ``address`` (counted only with a limit)."""
        return self._open[address]

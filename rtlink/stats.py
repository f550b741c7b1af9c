"""What a hub counts about itself: plain numbers, cheap enough for the fan-out.

A :class:`HubStats` is a handful of integers and small dicts that the hub updates as
it works: once per connection, per subscribe, per publish, per backend call — and in
the fan-out once per *publication* (adding its number of recipients), never once per
frame or per delivery. Nothing here knows about Prometheus: :mod:`rtlink.metrics`
reads these numbers when it is scraped, together with gauges read from the hub's live
state at that moment (connections and subscriptions open).

Counters only grow, from zero when the hub is made; they are read without locking
(one event loop thread writes them).

Every label value that comes from a client is folded into a fixed set first (a close
code the protocol does not define counts as ``"other"``, and so does an unknown
fallback reason), so a client cannot make the metrics grow without bound.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TypeVar

from .codes import CloseCode

__all__ = [
    "HubStats",
    "LatencyHistogram",
    "FALLBACK_REASONS",
    "OTHER",
    "BACKEND_LATENCY_BUCKETS",
    "fallback_reason",
    "close_code_label",
]

#: Why a client fell back to a worse transport (protocol.md 8.7), as its first request
#: on that transport says in the ``fallback`` query parameter: the previous transport
#: failed its health check (no first frame in time, or it failed to open), or it went
#: silent after working (close 4000 on the client's side).
FALLBACK_REASONS: frozenset[str] = frozenset({"health_check", "silent"})
#: The label value of a close code or fallback reason outside the known set.
OTHER = "other"
#: Upper bounds (seconds) of the backend latency histogram's buckets: from an
#: in-process backend (microseconds) to a struggling network one (seconds).
BACKEND_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
)

_Key = TypeVar("_Key")
_CLOSE_CODES: frozenset[int] = frozenset(int(code) for code in CloseCode)


def fallback_reason(value: str | None) -> str | None:
    """The label of a ``fallback`` query parameter: None when absent or empty, the
    reason itself when known, else :data:`OTHER`."""
    if not value:
        return None
    return value if value in FALLBACK_REASONS else OTHER


def close_code_label(code: int | None) -> str:
    """The label of a close code: the number when the protocol defines it (7.2), else
    :data:`OTHER` (a peer may close a WebSocket with any code)."""
    return str(code) if code in _CLOSE_CODES else OTHER


class LatencyHistogram:
    """Durations counted in fixed buckets, as a Prometheus histogram shows them.

    ``observe`` costs a binary search and two additions: no lock, no allocation.

    Args:
        bounds: the buckets' upper bounds in seconds, increasing; a last bucket
            without bound (``+Inf``) is implied.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Iterable[float] = BACKEND_LATENCY_BUCKETS) -> None:
        self.bounds: tuple[float, ...] = tuple(bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"bucket bounds must increase: {self.bounds}")
        #: Observations per bucket (not cumulative); the last one is ``+Inf``.
        self.counts: list[int] = [0] * (len(self.bounds) + 1)
        #: Sum of every observed duration, in seconds.
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        # bisect_left: a duration equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations <= le)`` per bucket, ``+Inf`` last: Prometheus' form."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


class HubStats:
    """The counters of one hub, since it was made.

    Transports are the names connections carry (``"websocket"``, ``"sse"``,
    ``"longpoll"``, and ``"http"`` for a ``POST {path}/send``); a long poll and a
    send are each a connection of their own. Sources of publishes are ``"server"``
    (:meth:`rtlink.Hub.publish`, whoever calls it) and ``"client"`` (``publish``
    frames).

    Attributes:
        deliveries: publications handed to a subscriber's connection by the live
            fan-out, one per subscriber per publication.
        accepted: connections accepted, by transport.
        closed: connections closed, by ``(transport, close code label)``.
        fallbacks: connections that a client opened after falling back to their
            transport, by ``(transport, reason label)``.
        publishes: publications made, by source (de-duplicated resends excluded).
        duplicates: publishes de-duplicated by their idempotency key, by source.
        publish_errors: publishes the backend failed (nothing published), by source.
        recoveries: subscribes with a position whose gap history filled
            (``recovered: true``), by transport.
        failed_recoveries: subscribes with a position whose gap history could not
            fill (``recovered: false``: the client must re-sync), by transport.
        replayed: publications sent from history to fill resumed subscriptions.
        backend_latency: a histogram of backend call durations, by operation
            (``"publish"``, ``"history"``), failed calls included.
        presence_diffs_sent: ``presence_diff`` frames handed to connections.
    """

    __slots__ = ("deliveries", "accepted", "closed", "fallbacks", "publishes", "duplicates",
                 "publish_errors", "recoveries", "failed_recoveries", "replayed",
                 "backend_latency", "_publish_latency", "presence_diffs_sent")

    def __init__(self, latency_buckets: Sequence[float] = BACKEND_LATENCY_BUCKETS) -> None:
        self.deliveries = 0
        self.accepted: dict[str, int] = {}
        self.closed: dict[tuple[str, str], int] = {}
        self.fallbacks: dict[tuple[str, str], int] = {}
        self.publishes: dict[str, int] = {"server": 0, "client": 0}
        self.duplicates: dict[str, int] = {"server": 0, "client": 0}
        self.publish_errors: dict[str, int] = {"server": 0, "client": 0}
        self.recoveries: dict[str, int] = {}
        self.failed_recoveries: dict[str, int] = {}
        self.replayed = 0
        self.presence_diffs_sent = 0
        self.backend_latency: dict[str, LatencyHistogram] = {
            operation: LatencyHistogram(latency_buckets) for operation in ("publish", "history")
        }
        self._publish_latency = self.backend_latency["publish"]

    def connection_accepted(self, transport: str, fallback: str | None = None) -> None:
        """Count a new connection, and the fallback its client reported, if any (the
        raw ``fallback`` query parameter: it is folded into the known reasons here)."""
        _add(self.accepted, transport)
        reason = fallback_reason(fallback)
        if reason is not None:
            _add(self.fallbacks, (transport, reason))

    def connection_closed(self, transport: str, code: int | None) -> None:
        """Count a connection that ended with ``code``."""
        _add(self.closed, (transport, close_code_label(code)))

    def published(self, source: str, duplicate: bool, seconds: float) -> None:
        """Count a publish the backend took, and how long it took."""
        # _add() and observe(), written out: this runs once per publication.
        counts = self.duplicates if duplicate else self.publishes
        counts[source] = counts.get(source, 0) + 1
        latency = self._publish_latency
        latency.counts[bisect_left(latency.bounds, seconds)] += 1
        latency.total += seconds

    def publish_failed(self, source: str, seconds: float) -> None:
        """Count a publish the backend failed, and how long it took to fail."""
        _add(self.publish_errors, source)
        self.backend_latency["publish"].observe(seconds)

    def history_read(self, seconds: float) -> None:
        """Count the duration of one backend history read."""
        self.backend_latency["history"].observe(seconds)

    def resumed(self, transport: str, recovered: bool, replayed: int) -> None:
        """Count a subscribe that carried a position: recovered with ``replayed``
        publications from history, or not recovered."""
        _add(self.recoveries if recovered else self.failed_recoveries, transport)
        self.replayed += replayed


def _add(counts: dict[_Key, int], key: _Key) -> None:
    counts[key] = counts.get(key, 0) + 1

"""Prometheus metrics of a hub, served as a text endpoint (``GET /metrics``).

:func:`rtlink.attach` mounts the endpoint when given ``metrics_path``. Nothing is
counted through prometheus_client while the hub works: the hub keeps plain numbers
(:class:`~rtlink.stats.HubStats`, a few additions per publication, none per delivery),
and :class:`HubCollector`, a custom collector, turns them into metric families when
Prometheus scrapes — together with gauges read from the hub's live state right then
(connections, subscriptions, queued bytes). See docs/operations.md, "Metrics", for
what each metric means and what to alert on.

Each hub gets a registry of its own (:func:`hub_registry`), not prometheus_client's
global one, so several hubs in a process (or in a test run) never collide. An
application that already exposes metrics can register a :class:`HubCollector` in its
own registry instead, or mount :func:`metrics_handler` elsewhere (another port).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .codes import CloseCode
from .stats import close_code_label

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from .hub import Hub

__all__ = ["HubCollector", "hub_registry", "metrics_handler", "METRIC_NAMES"]

#: Transports shown by the connection gauges even while none of their connections is
#: open, so that dashboards and alerts see a 0 rather than no series.
_TRANSPORTS = ("websocket", "sse", "longpoll", "http")
_SLOW_CONSUMER = close_code_label(CloseCode.SLOW_CONSUMER)

#: Every metric a :class:`HubCollector` exposes (as named in the exposition: counters
#: with ``_total``, the histogram with its ``_bucket``/``_sum``/``_count`` samples).
METRIC_NAMES: tuple[str, ...] = (
    "rtlink_connections",
    "rtlink_connections_accepted_total",
    "rtlink_connections_closed_total",
    "rtlink_slow_consumer_disconnects_total",
    "rtlink_fallbacks_total",
    "rtlink_subscriptions",
    "rtlink_channels",
    "rtlink_outbound_queued_bytes",
    "rtlink_deliveries_total",
    "rtlink_publishes_total",
    "rtlink_duplicate_publishes_total",
    "rtlink_publish_errors_total",
    "rtlink_recoveries_total",
    "rtlink_failed_recoveries_total",
    "rtlink_replayed_publications_total",
    "rtlink_presence_diffs_total",
    "rtlink_backend_latency_seconds",
)


class HubCollector(Collector):
    """A prometheus_client collector reading one hub's counters and live state.

    Collecting costs a pass over the hub's open connections and channels (a few
    milliseconds for 100,000 connections), once per scrape.

    Args:
        hub: the hub to report on.
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        """The hub's metric families, as of now."""
        yield from self._connection_metrics()
        yield from self._traffic_metrics()
        yield self._backend_latency()

    def _connection_metrics(self) -> Iterator[Metric]:
        hub = self._hub
        stats = hub.stats
        open_now: Counter[str] = Counter({name: 0 for name in _TRANSPORTS})
        queued = 0
        for peer in hub.connections:
            open_now[peer.transport] += 1
            queued += peer.connection.queued_bytes
        yield _by_label(GaugeMetricFamily, "rtlink_connections",
                        "Connections open now, by transport (a long poll or a POST send "
                        "is a connection while its request lasts).",
                        "transport", open_now)
        yield _by_label(CounterMetricFamily, "rtlink_connections_accepted",
                        "Connections accepted, by transport (each long poll and each POST "
                        "send counts).", "transport",
                        {**dict.fromkeys(_TRANSPORTS, 0), **stats.accepted})
        closed = CounterMetricFamily(
            "rtlink_connections_closed",
            "Connections closed, by transport and close code (protocol.md 7.2; codes "
            "it does not define count as 'other').", labels=("transport", "code"))
        slow = Counter({name: 0 for name in _TRANSPORTS if name != "http"})
        for (transport, code), count in sorted(stats.closed.items()):
            closed.add_metric((transport, code), count)
            if code == _SLOW_CONSUMER:
                slow[transport] += count
        yield closed
        yield _by_label(CounterMetricFamily, "rtlink_slow_consumer_disconnects",
                        "Connections closed with 4001 (slow consumer: outbound buffer over "
                        "outbound_limit; the client resumes), by transport.",
                        "transport", slow)
        fallbacks = CounterMetricFamily(
            "rtlink_fallbacks",
            "Connections a client opened after falling back to their transport, by that "
            "transport and the reason the client gave (protocol.md 8.7).",
            labels=("transport", "reason"))
        for (transport, reason), count in sorted(stats.fallbacks.items()):
            fallbacks.add_metric((transport, reason), count)
        yield fallbacks
        yield GaugeMetricFamily("rtlink_subscriptions",
                                "Channel subscriptions of this node's connections, open now.",
                                value=sum(len(live.subscribers) for live in hub._live.values()))
        yield GaugeMetricFamily("rtlink_channels",
                                "Channels with at least one subscriber on this node, now.",
                                value=len(hub._live))
        yield GaugeMetricFamily("rtlink_outbound_queued_bytes",
                                "Bytes queued for clients and not yet handed to their "
                                "transports, all connections together, now.", value=queued)

    def _traffic_metrics(self) -> Iterator[Metric]:
        stats = self._hub.stats
        yield CounterMetricFamily("rtlink_deliveries",
                                  "Publications handed to subscribers by the live fan-out, "
                                  "one per subscriber per publication.",
                                  value=stats.deliveries)
        yield _by_label(CounterMetricFamily, "rtlink_publishes",
                        "Publications made through this hub, by source: 'server' "
                        "(Hub.publish, the HTTP publish API) or 'client' (publish frames).",
                        "source", stats.publishes)
        yield _by_label(CounterMetricFamily, "rtlink_duplicate_publishes",
                        "Publishes ignored as repeats of an idempotency key already "
                        "published (e.g. a client's outbox resent after a reconnect).",
                        "source", stats.duplicates)
        yield _by_label(CounterMetricFamily, "rtlink_publish_errors",
                        "Publishes the backend failed (nothing was published), by source.",
                        "source", stats.publish_errors)
        yield _by_label(CounterMetricFamily, "rtlink_recoveries",
                        "Subscribes with a position whose gap history filled (recovered: "
                        "true), by transport (long polling resumes on every poll).",
                        "transport", stats.recoveries)
        yield _by_label(CounterMetricFamily, "rtlink_failed_recoveries",
                        "Subscribes with a position whose gap history could not fill "
                        "(recovered: false: the client must re-sync), by transport.",
                        "transport", stats.failed_recoveries)
        yield CounterMetricFamily("rtlink_replayed_publications",
                                  "Publications sent from history to resumed "
                                  "subscriptions: their gap, or what the channel keeps "
                                  "when it cannot be filled.", value=stats.replayed)
        yield CounterMetricFamily("rtlink_presence_diffs",
                                  "presence_diff frames handed to connections (one per "
                                  "event subscriber per diff).",
                                  value=stats.presence_diffs_sent)

    def _backend_latency(self) -> Metric:
        latency = HistogramMetricFamily(
            "rtlink_backend_latency_seconds",
            "Duration of backend calls by operation: 'publish' (position, history, "
            "fan-out to the nodes) and 'history' (read on subscribe); failures included.",
            labels=("operation",), unit="seconds")
        for operation, histogram in sorted(self._hub.stats.backend_latency.items()):
            latency.add_metric((operation,), histogram.cumulative(), histogram.total)
        return latency


def _by_label(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str,
              documentation: str, label: str, values: Mapping[str, int]) -> Metric:
    """A metric family with one sample per value of one label, in label order."""
    family = kind(name, documentation, labels=(label,))
    for value, count in sorted(values.items()):
        family.add_metric((value,), count)
    return family


def hub_registry(hub: Hub, *, process: bool = True) -> CollectorRegistry:
    """A registry of its own holding ``hub``'s collector.

    Args:
        hub: the hub to report on.
        process: also expose prometheus_client's process (CPU, memory, open files;
            Linux only), platform and garbage-collector metrics, as exporters usually
            do (``process_*``, ``python_*``).
    """
    registry = CollectorRegistry()
    registry.register(HubCollector(hub))
    if process:
        # Stateless collectors: sharing prometheus_client's instances is safe.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def metrics_handler(hub: Hub, *, process: bool = True) -> Handler:
    """An aiohttp handler answering with ``hub``'s metrics (:func:`hub_registry`).

    It is prometheus_client's own aiohttp handler: the Prometheus text format, or
    OpenMetrics when the scraper asks for it (``Accept``), gzip when accepted, and
    ``?name[]=...`` to pick metrics.
    """
    return make_aiohttp_handler(hub_registry(hub, process=process))

"""The Prometheus endpoint: real servers on loopback, real clients, scraped over HTTP.

Each test scrapes ``GET /metrics`` before and after doing something real (connecting
clients on each transport, publishing, resuming across a cut, stalling a reader until
it is closed as a slow consumer, falling back behind a relay that breaks WebSockets)
and checks that the numbers moved by exactly what happened. The text is parsed with
prometheus_client's own parser, so the format is checked too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

import rtlink
from rtlink.backends.redis import RedisBackend
from rtlink.errors import BackendUnavailable
from rtlink.metrics import METRIC_NAMES
from rtlink.protocol import Position
from rtlink.stats import LatencyHistogram, close_code_label, fallback_reason
from tests.support import Server, collect, eventually, relay_to, run_server, take_offline
from tests.support.redis_server import run_redis

#: Reconnect at once in these tests (the backoff is tested elsewhere).
FAST: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.2}
HISTORY = {"*": rtlink.ChannelOptions(history_size=1000, client_publish=True)}


@contextlib.asynccontextmanager
async def metrics_server(metrics_path: str | None = "/metrics",
                         **hub_options: Any) -> AsyncIterator[Server]:
    """A server like :func:`tests.support.run_server`, with ``metrics_path`` mounted."""
    hub = rtlink.Hub(**hub_options)
    app = web.Application()
    rtlink.attach(app, hub, path="/rt", metrics_path=metrics_path)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = Server(hub, runner, runner.addresses[0][1], "/rt")
    try:
        yield server
    finally:
        await server.stop()


class Scrape:
    """One scrape of ``/metrics``: ``scrape(name, **labels)`` is a sample's value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families.values() for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        """The value of the sample ``name`` with exactly ``labels`` (0 if absent)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(value for (sample, sample_labels), value in self.samples.items()
                   if sample == name and wanted <= sample_labels)


async def scrape(server: Server) -> Scrape:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{server.port}/metrics") as response:
        assert response.status == 200, await response.text()
        return Scrape(await response.text())


async def wait_for_metric(server: Server, name: str, expected: float, **labels: str) -> Scrape:
    """Scrape until ``name{labels}`` equals ``expected``; fail (showing it) after a while."""
    latest: list[Scrape] = []

    async def reached() -> bool:
        latest[:] = [await scrape(server)]
        return latest[0](name, **labels) == expected

    try:
        await eventually(reached, message=f"{name}{labels} == {expected}")
    except AssertionError:
        raise AssertionError(f"{name}{labels} is {latest[0](name, **labels)}, "
                             f"not {expected}") from None
    return latest[0]


# --- the endpoint ----------------------------------------------------------------------


async def test_the_endpoint_answers_in_the_prometheus_text_format_with_every_metric() -> None:
    async with metrics_server() as server, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with session.get(url) as response:
            assert response.status == 200
            content_type = response.headers["Content-Type"]
            text = await response.text()
        assert content_type.startswith("text/plain; version="), content_type
        for name in METRIC_NAMES:
            family = name.removesuffix("_total")
            assert f"# HELP {family}" in text, name
            assert f"# TYPE {family}" in text, name
        # The platform and garbage-collector metrics come along (as exporters' do).
        assert "python_info{" in text
        assert "python_gc_objects_collected_total{" in text
        # Zeros rather than missing series for the transports, on a fresh hub.
        parsed = Scrape(text)
        assert ("rtlink_connections", frozenset({("transport", "sse")})) in parsed.samples
        assert parsed("rtlink_connections_accepted_total", transport="longpoll") == 0
        # A scraper asking for OpenMetrics gets it.
        async with session.get(url, headers={
                "Accept": "application/openmetrics-text; version=1.0.0"}) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await response.text()).rstrip().endswith("# EOF")


async def test_no_metrics_endpoint_unless_asked_for() -> None:
    async with run_server() as server, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.port}/metrics") as response:
            assert response.status == 404
    async with metrics_server(metrics_path=None) as server, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.port}/metrics") as response:
            assert response.status == 404


async def test_metrics_path_is_absolute_and_not_under_the_mount_path() -> None:
    with pytest.raises(ValueError, match="metrics_path must be an absolute path"):
        rtlink.attach(web.Application(), rtlink.Hub(), metrics_path="metrics")
    async with metrics_server(metrics_path="/ops/rtlink-metrics") as server, \
            aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{server.port}"
        async with session.get(base + "/ops/rtlink-metrics") as response:
            assert response.status == 200
            assert "rtlink_deliveries_total" in await response.text()
        async with session.get(base + "/rt/metrics") as response:
            assert response.status == 404


async def test_two_hubs_in_one_process_keep_their_own_numbers() -> None:
    async with metrics_server() as first, metrics_server() as second:
        await first.hub.publish("news", 1)
        await first.hub.publish("news", 2)
        assert (await scrape(first))("rtlink_publishes_total", source="server") == 2
        assert (await scrape(second))("rtlink_publishes_total", source="server") == 0


# --- connections -----------------------------------------------------------------------


@pytest.mark.slow
async def test_open_connections_by_transport_and_how_they_ended() -> None:
    # Short polls and pings: the server notices a stream or a poll whose client left
    # at its next write (without handler cancellation, as aiohttp's default).
    async with metrics_server(ping_interval=0.5, poll_timeout=0.5) as server:
        clients = {name: rtlink.Client(server.url, transports=[name], **FAST)
                   for name in ("websocket", "sse", "longpoll")}
        for client in clients.values():
            await client.connect()
        try:
            for name in clients:
                # A long poll is open while it is held (25 s here: nothing to send).
                await wait_for_metric(server, "rtlink_connections", 1, transport=name)
            metrics = await scrape(server)
            assert metrics("rtlink_connections_accepted_total", transport="websocket") == 1
            assert metrics("rtlink_connections_accepted_total", transport="sse") == 1
            assert metrics("rtlink_connections_accepted_total", transport="longpoll") >= 1
        finally:
            for client in clients.values():
                await client.close()
        for name in clients:
            await wait_for_metric(server, "rtlink_connections", 0, transport=name)
        metrics = await scrape(server)
        for name in clients:  # every connection accepted was counted as closed
            assert (metrics.total("rtlink_connections_closed_total", transport=name)
                    == metrics("rtlink_connections_accepted_total", transport=name))


async def test_subscriptions_and_channels_gauges() -> None:
    async with metrics_server() as server:
        async with rtlink.Client(server.url, **FAST) as a, rtlink.Client(server.url, **FAST) as b:
            for client, channels in ((a, ("x", "y")), (b, ("x",))):
                for channel in channels:
                    await client.subscribe(channel).wait_subscribed()
            metrics = await scrape(server)
            assert metrics("rtlink_subscriptions") == 3
            assert metrics("rtlink_channels") == 2
        await wait_for_metric(server, "rtlink_subscriptions", 0)
        assert (await scrape(server))("rtlink_channels") == 0


async def test_close_codes_are_counted_and_those_the_protocol_lacks_folded() -> None:
    async with metrics_server() as server, aiohttp.ClientSession() as session:
        for code in (1000, 1000, 3000, 4999):
            async with session.ws_connect(f"http://127.0.0.1:{server.port}/rt/ws") as ws:
                await ws.receive()  # welcome
                await ws.close(code=code)
        metrics = await wait_for_metric(server, "rtlink_connections", 0, transport="websocket")
    assert metrics("rtlink_connections_closed_total", transport="websocket", code="1000") == 2
    assert metrics("rtlink_connections_closed_total", transport="websocket", code="other") == 2
    assert metrics.total("rtlink_connections_closed_total") == 4


# --- publishing and fan-out ----------------------------------------------------------------


async def test_deliveries_count_each_subscriber_of_each_publication() -> None:
    publications, subscribers = 7, 3
    async with metrics_server(channels=HISTORY) as server:
        clients = [rtlink.Client(server.url, **FAST) for _ in range(subscribers)]
        try:
            subscriptions = []
            for client in clients:
                await client.connect()
                subscriptions.append(client.subscribe("room"))
                await subscriptions[-1].wait_subscribed()
            before = await scrape(server)
            for n in range(publications):
                await server.hub.publish("room", n)
            # Two from a client, and one resent with the same key (applied once).
            await clients[0].publish("room", "a", key="k-a")
            await clients[0].publish("room", "b", key="k-b")
            await clients[0].publish("room", "b", key="k-b")
            for subscription in subscriptions:
                await collect(subscription, publications + 2)
            after = await scrape(server)
        finally:
            for client in clients:
                await client.close()

    def delta(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert delta("rtlink_deliveries_total") == (publications + 2) * subscribers
    assert delta("rtlink_publishes_total", source="server") == publications
    assert delta("rtlink_publishes_total", source="client") == 2
    assert delta("rtlink_duplicate_publishes_total", source="client") == 1
    assert delta("rtlink_publish_errors_total", source="client") == 0
    assert (delta("rtlink_backend_latency_seconds_count", operation="publish")
            == publications + 3)
    latency = after.families["rtlink_backend_latency_seconds"]
    buckets = [s for s in latency.samples if s.name.endswith("_bucket")
               and s.labels["operation"] == "publish"]
    assert buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].value == after("rtlink_backend_latency_seconds_count",
                                      operation="publish")
    # History is read once per subscribe.
    assert after("rtlink_backend_latency_seconds_count", operation="history") == subscribers


@pytest.mark.redis
async def test_a_publish_the_backend_fails_is_counted_as_an_error() -> None:
    with run_redis() as redis:
        backend = RedisBackend(redis.url, prefix="metrics", socket_timeout=1)
        async with metrics_server(backend=backend) as server:
            await server.hub.publish("news", 1)
            redis.stop()
            with pytest.raises(BackendUnavailable):
                await server.hub.publish("news", 2)
            metrics = await scrape(server)
            assert metrics("rtlink_publishes_total", source="server") == 1
            assert metrics("rtlink_publish_errors_total", source="server") == 1
            assert metrics("rtlink_backend_latency_seconds_count", operation="publish") == 2


# --- resume ------------------------------------------------------------------------------


async def test_recoveries_and_failed_recoveries_on_resume() -> None:
    channels = {
        "kept": rtlink.ChannelOptions(history_size=100),
        "brief": rtlink.ChannelOptions(history_size=1),  # a gap of 3 cannot be filled
    }
    async with metrics_server(channels=channels) as server, relay_to(server) as relay:
        async with rtlink.Client(server.url_via(relay), **FAST) as client:
            kept, brief = client.subscribe("kept"), client.subscribe("brief")
            events: list[rtlink.SubscribedEvent] = []
            brief.on("subscribed", events.append)
            await kept.wait_subscribed()
            await brief.wait_subscribed()
            for channel in ("kept", "brief"):
                await server.hub.publish(channel, 0)
            await collect(kept, 1)
            await collect(brief, 1)
            before = await scrape(server)
            # Fresh subscriptions (no position) are not resumes.
            assert before.total("rtlink_recoveries_total") == 0
            assert before.total("rtlink_failed_recoveries_total") == 0

            await take_offline(relay, client)
            for n in (1, 2, 3):
                for channel in ("kept", "brief"):
                    await server.hub.publish(channel, n)
            relay.refuse = False
            assert [m.data for m in await collect(kept, 3)] == [1, 2, 3]
            await eventually(lambda: len(events) == 2, message="brief resubscribed")
            assert events[-1].resumed and not events[-1].recovered
            after = await scrape(server)

    assert after("rtlink_recoveries_total", transport="websocket") == 1
    assert after("rtlink_failed_recoveries_total", transport="websocket") == 1
    # The gap of kept (3), and what brief keeps after its lost gap (1: protocol.md 6.2).
    assert after("rtlink_replayed_publications_total") == 4
    # The cut: the server saw the connection end without a close (1006).
    assert after("rtlink_connections_closed_total", transport="websocket", code="1006") >= 1


async def test_subscribing_from_a_position_counts_as_a_resume_on_any_transport() -> None:
    async with metrics_server(channels=HISTORY) as server:
        start = await server.hub.publish("feed", "start")
        await server.hub.publish("feed", "next")
        async with rtlink.Client(server.url, transports=["sse"], **FAST) as client:
            sub = client.subscribe("feed", since=start)
            assert [m.data for m in await collect(sub, 1)] == ["next"]
            gone = Position("e" * 16, 1)  # an epoch this backend never had
            lost = client.subscribe("other", since=gone)
            await lost.wait_subscribed()
            metrics = await scrape(server)
    assert metrics("rtlink_recoveries_total", transport="sse") >= 1
    assert metrics("rtlink_failed_recoveries_total", transport="sse") >= 1
    assert metrics("rtlink_recoveries_total", transport="websocket") == 0


# --- slow consumers ----------------------------------------------------------------------


async def test_a_stalled_reader_is_counted_as_a_slow_consumer_disconnect() -> None:
    limit = 64 * 1024
    async with metrics_server(channels=HISTORY, outbound_limit=limit) as server, \
            relay_to(server) as relay:
        async with rtlink.Client(server.url_via(relay), **FAST) as client:
            await client.subscribe("flood").wait_subscribed()
            [peer] = [c for c in server.hub.connections if "flood" in c.session.subscriptions]
            connection = peer.connection
            relay.stall = True
            pad = "x" * 1000
            # Kernel buffers take a few MB first; then the outbound queue overflows.
            for n in range(30_000):
                await server.hub.publish("flood", {"n": n, "pad": pad})
                if connection.closing:
                    break
                if n % 50 == 0:
                    await asyncio.sleep(0)
            assert connection.close_code == rtlink.CloseCode.SLOW_CONSUMER
            metrics = await scrape(server)
            relay.stall = False
    assert metrics("rtlink_slow_consumer_disconnects_total", transport="websocket") == 1
    assert metrics("rtlink_connections_closed_total", transport="websocket", code="4001") == 1
    assert metrics("rtlink_slow_consumer_disconnects_total", transport="sse") == 0


# --- fallbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize("fallback_to", ["sse", "longpoll"])
@pytest.mark.slow
async def test_a_client_falling_back_says_why_once(fallback_to: str) -> None:
    async with metrics_server(channels=HISTORY, poll_timeout=0.2) as server, \
            relay_to(server) as relay:
        relay.silence_websockets = True  # the handshake passes, then nothing
        client = rtlink.Client(server.url_via(relay), transports=["websocket", fallback_to],
                               connect_timeout=0.5, **FAST)
        async with client:
            assert client.transport == fallback_to
            # More requests on the fallback transport: an SSE stream reopened for a
            # new subscription, further polls. None of them is a new fallback.
            sub = client.subscribe("news")
            await sub.wait_subscribed()
            await server.hub.publish("news", 1)
            await collect(sub, 1)
            await asyncio.sleep(0.5)  # a few more polls (held 0.2 s each)
            metrics = await scrape(server)
    assert metrics("rtlink_fallbacks_total", transport=fallback_to, reason="health_check") == 1
    assert metrics.total("rtlink_fallbacks_total") == 1
    # The silent WebSocket reached the server (and was accepted) before it failed.
    assert metrics("rtlink_connections_accepted_total", transport="websocket") >= 1


@pytest.mark.slow
async def test_a_transport_that_keeps_going_silent_falls_back_as_silent() -> None:
    # Pings every 0.3 s: a client hears nothing for 0.6 s and calls it silent (4000).
    async with metrics_server(ping_interval=0.3, pong_timeout=0.3) as server, \
            relay_to(server) as relay:
        client = rtlink.Client(server.url_via(relay), transports=["websocket", "sse"],
                               connect_timeout=2, **FAST)

        def each_connection_goes_silent(change: rtlink.StateChange) -> None:
            # Connected: the relay drops what the server sends from then on. Dropped:
            # the next connection gets through again, until it is connected.
            relay.blackhole = change.new_state is rtlink.ConnectionState.CONNECTED

        client.on("state", each_connection_goes_silent)
        async with client:
            # Strike one on the WebSocket (it worked: a second chance), strike two,
            # then SSE — which the relay silences too.
            await wait_for_metric(server, "rtlink_fallbacks_total", 1,
                                  transport="sse", reason="silent")
        metrics = await scrape(server)
    assert metrics.total("rtlink_fallbacks_total") == 1
    assert metrics("rtlink_connections_accepted_total", transport="websocket") == 2


async def test_fallback_reasons_from_the_query_are_folded_into_a_fixed_set() -> None:
    async with metrics_server() as server, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{server.port}/rt"
        for reason in ("silent", "health_check", "x" * 200, "rm -rf", ""):
            async with session.get(f"{base}/poll", params={"connect": "1",
                                                           "fallback": reason}) as response:
                assert response.status == 200
        async with session.ws_connect(f"{base}/ws?fallback=silent") as ws:
            await ws.receive()  # welcome
        metrics = await scrape(server)
    assert metrics("rtlink_fallbacks_total", transport="longpoll", reason="silent") == 1
    assert metrics("rtlink_fallbacks_total", transport="longpoll", reason="health_check") == 1
    assert metrics("rtlink_fallbacks_total", transport="longpoll", reason="other") == 2
    assert metrics("rtlink_fallbacks_total", transport="websocket", reason="silent") == 1
    assert metrics.total("rtlink_fallbacks_total") == 5


# --- the counters' building blocks -------------------------------------------------------------


def test_label_folding() -> None:
    assert fallback_reason(None) is None
    assert fallback_reason("") is None
    assert fallback_reason("silent") == "silent"
    assert fallback_reason("anything else") == "other"
    assert close_code_label(4001) == "4001"
    assert close_code_label(3999) == "other"  # a peer may close with any code
    assert close_code_label(None) == "other"


def test_latency_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.5):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.001", 2), ("0.01", 3), ("+Inf", 4)]
    assert histogram.count == 4
    assert histogram.total == pytest.approx(0.5035)
    with pytest.raises(ValueError, match="must increase"):
        LatencyHistogram((0.01, 0.001))

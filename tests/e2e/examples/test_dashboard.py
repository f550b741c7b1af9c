"""examples/dashboard: ``bash examples/run.sh dashboard``: samples every 100 ms, a
plot that moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import rtlink
from tests.support import eventually, seconds
from tests.support.browser import Chromium, expect

from .runner import Example, run_example

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dashboard() -> AsyncIterator[Example]:
    async with run_example("dashboard") as example:
        yield example


async def test_samples_tick_every_100ms_and_change(dashboard: Example) -> None:
    async with rtlink.Client(dashboard.url + "rt") as client:
        async with client.subscribe("metrics") as metrics:
            await metrics.wait_subscribed()
            messages: list[rtlink.Message] = []

            async def receive() -> None:
                async for message in metrics:
                    messages.append(message)

            receiver = asyncio.create_task(receive())
            try:
                await asyncio.sleep(seconds(1.0))
                # 10 a second; at least 5 even on a busy machine.
                assert len(messages) >= 5, messages
                offsets = [m.position.offset for m in messages]
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets
                samples = [m.data for m in messages]
                times = [s["time"] for s in samples]
                assert times == sorted(times) and len(set(times)) == len(times), times
                for sample in samples:
                    assert set(sample) == {"time", "cpu_percent", "rss_bytes", "connections"}
                    assert 0 <= sample["cpu_percent"] < 1000
                    assert sample["rss_bytes"] > 1 << 20  # a Python process: megabytes
                    assert sample["connections"] >= 1  # this client
                # The values follow the server: a second client shows up in them.
                before = messages[-1].data["connections"]
                async with rtlink.Client(dashboard.url + "rt") as second:
                    await second.connect()
                    await eventually(lambda: messages[-1].data["connections"] > before,
                                     timeout=3, message="a sample counting a new connection")
            finally:
                receiver.cancel()


async def test_clients_cannot_publish_metrics(dashboard: Example) -> None:
    async with rtlink.Client(dashboard.url + "rt") as client:
        with pytest.raises(rtlink.PublishError) as refused:
            await client.publish("metrics", {"cpu_percent": 0})
        assert refused.value.code == rtlink.ErrorCode.FORBIDDEN


async def test_page_plot_moves(dashboard: Example, chromium: Chromium) -> None:
    async with chromium.page(dashboard.url) as page:
        await expect(page.page.locator("#transport")).to_have_text("websocket")
        await expect(page.page.locator("#rate")).not_to_have_text("0")
        await page.until("samples.length >= 3", message="three samples")
        first = await page.eval("document.getElementById('plot').toDataURL()")
        await asyncio.sleep(0.3)  # three more samples
        second = await page.eval("document.getElementById('plot').toDataURL()")
        assert first != second, "the plot did not change in 300 ms"

"""examples/publisher.py and examples/publish.sh: publishing from a service through
Redis, and over HTTP with curl."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import rtlink
from examples.publisher import CHANNELS
from tests.support import collect, find_binary, missing_component, run_server, seconds
from tests.support.redis_server import RedisServer, require_redis

from .runner import ROOT, Example, run_example

pytestmark = [pytest.mark.redis, pytest.mark.asyncio(loop_scope="module")]

PUBLISH_SCRIPT = ROOT / "examples" / "publish.sh"


async def run(*command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command to its end; its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), seconds(30))
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{command} did not finish in 30 s") from None
    assert process.returncode is not None
    return process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")


async def test_service_events_reach_a_subscriber_of_a_server_on_the_same_redis(
    redis_server: RedisServer,
) -> None:
    # A prefix of its own: the session's Redis is shared by other tests.
    redis_url = f"{redis_server.url}?prefix=examples-{uuid.uuid4().hex}"
    async with run_server(backend=redis_url, channels=CHANNELS) as server:
        async with rtlink.Client(server.url) as client, client.subscribe("orders") as orders:
            status, output, errors = await run(sys.executable, "-m", "examples.publisher",
                                               "--redis", redis_url, "--count", "3",
                                               "--interval", "0.05")
            assert (status, errors) == (0, ""), output + errors
            messages = await collect(orders, 3)
            assert [m.data["order"] for m in messages] == [1, 2, 3]
            assert all(m.data["status"] == "shipped" and len(m.data["id"]) == 32
                       for m in messages)
            # The service printed each position the server delivered.
            assert [f"published {m.position} order {m.data['order']}" for m in messages] \
                == output.splitlines()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo() -> AsyncIterator[Example]:
    require_redis()  # skip when missing; fail under CI=true
    async with run_example("publisher", "--interval", "0.1") as example:
        yield example


async def test_demo_node_delivers_the_service_events(demo: Example) -> None:
    async with rtlink.Client(demo.url) as client, client.subscribe("orders") as orders:
        first, second = await collect(orders, 2)
        assert second.data["order"] == first.data["order"] + 1
        assert second.position.offset == first.position.offset + 1
        await demo.wait_for(f"node delivered {second.position} ")  # its own subscriber


async def test_http_publish_script(demo: Example) -> None:
    if find_binary("curl") is None:
        missing_component("curl (Debian package curl) is not installed")
    api_key = (await demo.wait_for(r"RTLINK_API_KEY=(\S+)"))[1]
    key = {"RTLINK_API_KEY": api_key}
    async with rtlink.Client(demo.url) as client, client.subscribe("orders") as orders:
        status, output, errors = await run("bash", str(PUBLISH_SCRIPT), demo.url, "orders",
                                           '{"status": "paid", "order": 7}', "order-7-paid",
                                           env=key)
        assert (status, errors) == (0, ""), output + errors
        answer = json.loads(output)
        assert answer["channel"] == "orders"
        position = rtlink.Position.from_wire(answer["position"])
        paid = [m async for m in _until(orders, position)]
        assert paid[-1].data == {"status": "paid", "order": 7}

        # The same idempotency key again: the first position, nothing published.
        status, output, errors = await run("bash", str(PUBLISH_SCRIPT), demo.url, "orders",
                                           '{"status": "paid", "order": 7}', "order-7-paid",
                                           env=key)
        assert (status, errors) == (0, ""), output + errors
        assert rtlink.Position.from_wire(json.loads(output)["position"]) == position
        later = await collect(orders, 5)  # the service's next events, no repeat
        assert all(m.data.get("status") == "shipped" for m in later), later

    # Refusals: a clear error from the server, exit status 1.
    status, output, errors = await run("bash", str(PUBLISH_SCRIPT), demo.url, "orders", "{}",
                                       env={"RTLINK_API_KEY": "not-the-key-of-this-server"})
    assert status == 1 and "401" in errors
    assert json.loads(output)["error"]["code"] == 401
    status, output, errors = await run("bash", str(PUBLISH_SCRIPT), demo.url,
                                       "no-such-channel", "1", env=key)
    assert status == 1
    assert json.loads(output)["error"]["code"] == rtlink.ErrorCode.UNKNOWN_CHANNEL
    status, output, errors = await run("bash", str(PUBLISH_SCRIPT), demo.url, "orders",
                                       env=key)
    assert status == 2 and errors.startswith("usage:")


async def _until(subscription: rtlink.Subscription,
                 position: rtlink.Position) -> AsyncIterator[rtlink.Message]:
    """The subscription's messages up to the one at ``position``."""
    async with asyncio.timeout(seconds(10)):
        async for message in subscription:
            yield message
            if message.position == position:
                return

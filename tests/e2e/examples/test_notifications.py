"""examples/notifications: ``bash examples/run.sh notifications``, through its nginx
(WebSocket upgrades not passed on, SSE streamed), checked with Python clients and
Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

import rtlink
from tests.support import collect, seconds
from tests.support.browser import Chromium, expect
from tests.support.proxy import require_nginx

from .runner import Example, run_example

pytestmark = [pytest.mark.proxy, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def notifications() -> AsyncIterator[Example]:
    require_nginx()  # skip when missing; fail under CI=true
    async with run_example("notifications") as example:
        yield example


async def post(url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    """POST JSON; the status and the JSON answer (or text, for errors)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers=headers) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


async def login(example: Example, user: str) -> str:
    status, body = await post(example.url + "login", {"user": user})
    assert status == 200, body
    assert body["user"] == user
    return str(body["token"])


async def notify(example: Example, sender: str, user: str, text: str) -> rtlink.Position:
    status, body = await post(example.url + "notify", {"user": user, "text": text},
                              await login(example, sender))
    assert status == 200, body
    return rtlink.Position.from_wire(body["position"])


def feed(user: str) -> str:
    return f"notifications:{user}"


async def test_python_client_ends_on_sse_through_the_nginx_config(
    notifications: Example,
) -> None:
    states: list[rtlink.StateChange] = []
    client = rtlink.Client(notifications.url + "rt", token=await login(notifications, "carol"))
    client.on("state", states.append)
    async with client:
        assert client.transport == "sse"
    tried = [change.transport for change in states
             if change.new_state == rtlink.ConnectionState.CONNECTING]
    assert tried[:2] == ["websocket", "sse"], states  # WebSocket refused by nginx


async def test_a_notification_reaches_its_user_only(notifications: Example) -> None:
    url = notifications.url + "rt"
    async with rtlink.Client(url, token=await login(notifications, "alice")) as alice, \
            rtlink.Client(url, token=await login(notifications, "bob")) as bob:
        async with alice.subscribe(feed("alice")) as alice_feed, \
                bob.subscribe(feed("bob")) as bob_feed:
            await alice_feed.wait_subscribed()
            await bob_feed.wait_subscribed()
            position = await notify(notifications, "bob", "alice", "lunch at noon?")
            (message,) = await collect(alice_feed, 1)
            assert message.position == position
            assert message.data["from"] == "bob"
            assert message.data["text"] == "lunch at noon?"
            # Bob got nothing of alice's: the next thing in his feed is his own.
            mine = await notify(notifications, "alice", "bob", "yes")
            (message,) = await collect(bob_feed, 1)
            assert (message.position, message.data["text"]) == (mine, "yes")

        # Nor may he subscribe to her feed.
        with pytest.raises(rtlink.SubscribeError) as refused:
            async with bob.subscribe(feed("alice")) as stolen:
                await stolen.wait_subscribed()
        assert refused.value.code == rtlink.ErrorCode.FORBIDDEN


async def test_what_was_missed_is_served_after_reconnecting(notifications: Example) -> None:
    url = notifications.url + "rt"
    async with rtlink.Client(url, token=await login(notifications, "dave")) as client:
        async with client.subscribe(feed("dave")) as dave:
            await dave.wait_subscribed()
            await notify(notifications, "erin", "dave", "seen")
            (seen,) = await collect(dave, 1)
    # Away: what arrives now waits in the channel's history.
    missed = [await notify(notifications, "erin", "dave", f"missed {n}") for n in range(3)]
    async with rtlink.Client(url, token=await login(notifications, "dave")) as client:
        async with client.subscribe(feed("dave"), since=seen.position) as dave:
            assert dave.recovered
            messages = await collect(dave, 3)
            assert [(m.position, m.data["text"]) for m in messages] == [
                (position, f"missed {n}") for n, position in enumerate(missed)
            ]
            assert client.transport == "sse"


async def test_bad_requests_are_refused(notifications: Example) -> None:
    assert (await post(notifications.url + "login", {"user": "a:b"}))[0] == 400
    assert (await post(notifications.url + "login", ["alice"]))[0] == 400
    status, text = await post(notifications.url + "notify", {"user": "alice", "text": "hi"})
    assert (status, text.strip()) == (401, "authentication required")
    status, _ = await post(notifications.url + "notify", {"user": "alice", "text": "hi"},
                           token="not-a-token")
    assert status == 401
    token = await login(notifications, "frank")
    status, _ = await post(notifications.url + "notify", {"user": "alice", "text": ""}, token)
    assert status == 400
    # A connection without a token is refused for good (4500), not retried.
    client = rtlink.Client(notifications.url + "rt")
    with pytest.raises(rtlink.ClientClosed) as closed:
        await asyncio.wait_for(client.connect(), seconds(10))
    assert closed.value.code == rtlink.CloseCode.UNAUTHORIZED
    await client.close()


async def test_page_through_nginx_uses_sse_and_catches_up(notifications: Example,
                                                          chromium: Chromium) -> None:
    async with chromium.page(notifications.url) as page:
        await page.page.fill("#name", "grace")
        await page.page.press("#name", "Enter")
        await expect(page.page.locator("#state")).to_have_text("connected")
        await expect(page.page.locator("#transport")).to_have_text("sse")
        await notify(notifications, "heidi", "grace", "first")
        items = page.page.locator("#items li")
        await expect(items).to_have_count(1)
        await expect(items.first).to_contain_text("heidi: first")

        # Grace leaves; two notifications arrive while she is away; she comes back.
        await page.page.goto("about:blank")
        await notify(notifications, "heidi", "grace", "second")
        await notify(notifications, "ivan", "grace", "third")
        await page.goto(notifications.url)
        await expect(page.page.locator("#user")).to_have_text("grace")
        await expect(items).to_have_count(3)
        texts = await items.all_inner_texts()
        assert [text.split("\n")[-1].split(": ", 1)[-1] for text in texts] == \
            ["third", "second", "first"], texts
        await expect(page.page.locator("#items li.new")).to_have_count(2)
        await expect(page.page.locator("#notice")).to_have_text("")


async def test_a_first_visit_shows_the_latest_notifications(notifications: Example,
                                                           chromium: Chromium) -> None:
    # Sent before judy ever opened the page: the first visit shows the last 20 kept.
    for n in range(22):
        await notify(notifications, "karl", "judy", f"early {n}")
    async with chromium.page(notifications.url) as page:
        await page.page.fill("#name", "judy")
        await page.page.press("#name", "Enter")
        await expect(page.page.locator("#state")).to_have_text("connected")
        items = page.page.locator("#items li")
        await expect(items).to_have_count(20)
        await expect(items.first).to_contain_text("karl: early 21")
        await expect(items.last).to_contain_text("karl: early 2")
        await expect(page.page.locator("#notice")).to_have_text("")

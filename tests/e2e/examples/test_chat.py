"""examples/chat: ``bash examples/run.sh chat``, checked with Python clients and Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import rtlink
from tests.support import FAST_RECONNECT, Relay, collect, seconds
from tests.support.browser import Chromium, expect

from .runner import Example, run_example, start_example

# One event loop for the module: the example and the browser are shared by its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOM = "chat:lobby"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chat() -> AsyncIterator[Example]:
    async with run_example("chat") as example:
        yield example


async def test_two_clients_exchange_messages(chat: Example) -> None:
    url = chat.url + "rt"
    async with rtlink.Client(url) as ann, rtlink.Client(url, codec="msgpack") as bob:
        async with ann.subscribe(ROOM) as ann_room, bob.subscribe(ROOM) as bob_room:
            await ann_room.wait_subscribed()
            await bob_room.wait_subscribed()
            first = await ann.publish(ROOM, {"from": "ann", "text": "hi bob"})
            second = await bob.publish(ROOM, {"from": "bob", "text": "hi ann"})
            for room in (ann_room, bob_room):
                messages = await collect(room, 2)
                assert [(m.data, m.position) for m in messages] == [
                    ({"from": "ann", "text": "hi bob"}, first),
                    ({"from": "bob", "text": "hi ann"}, second),
                ]


async def test_clients_publish_only_to_chat_channels(chat: Example) -> None:
    async with rtlink.Client(chat.url + "rt") as client:
        with pytest.raises(rtlink.PublishError) as refused:
            await client.publish("news", {"text": "not a chat channel"})
        assert refused.value.code == rtlink.ErrorCode.UNKNOWN_CHANNEL


async def test_page_shows_transport_and_chats_with_python(chat: Example,
                                                          chromium: Chromium) -> None:
    async with rtlink.Client(chat.url + "rt") as client, client.subscribe(ROOM) as room:
        await room.wait_subscribed()
        # Said before the page joins: it shows the room's recent messages first.
        await client.publish(ROOM, {"from": "python", "text": "before you came"})
        await collect(room, 1)
        async with chromium.page(chat.url) as page:
            await expect(page.page.locator("#state")).to_have_text("connected")
            await expect(page.page.locator("#transport")).to_have_text("websocket")
            await page.page.fill("#nick", "page")
            await page.page.fill("#text", "hello from the page")
            await page.page.press("#text", "Enter")
            (message,) = await collect(room, 1)
            assert message.data == {"from": "page", "text": "hello from the page"}
            await client.publish(ROOM, {"from": "python", "text": "hello page"})
            log = page.page.locator("#log li")
            await expect(log.last).to_have_text("pythonhello page")
            # The room's history (with what other tests of the module said), then live.
            texts = await log.all_inner_texts()
            assert [text.replace("\n", "") for text in texts[-3:]] == [
                "pythonbefore you came", "pagehello from the page", "pythonhello page"], texts
            await expect(page.page.locator("#pending li")).to_have_count(0)


async def test_messages_typed_while_offline_are_sent_once_on_reconnect(
    chat: Example, chromium: Chromium
) -> None:
    # Its own server, stopped and restarted on the same port while the page stays open
    # (the way the page tells users to try it).
    first = await start_example("chat")
    async with chromium.page(first.url) as page:
        try:
            await expect(page.page.locator("#state")).to_have_text("connected")
        finally:
            assert await first.stop() == 0, first.output
        await expect(page.page.locator("#state")).not_to_have_text("connected")
        await page.page.fill("#nick", "n")
        for text in ("typed offline", "and again"):
            await page.page.fill("#text", text)
            await page.page.press("#text", "Enter")
        pending = page.page.locator("#pending li")
        await expect(pending).to_have_text(["waiting to send: typed offline",
                                            "waiting to send: and again"])
        assert await page.eval("client.outboxSize") == 2

        async with run_example("chat", "--port", str(first.port)) as second:
            # What the browser does when the network comes back: reconnect now rather
            # than when its backoff timer says.
            await page.eval("window.dispatchEvent(new Event('online'))")
            log = page.page.locator("#log li")
            await expect(log).to_have_text(["ntyped offline", "nand again"],
                                           timeout=seconds(10) * 1000)
            await expect(pending).to_have_count(0)
            assert await page.eval("client.outboxSize") == 0
            # Once each: a marker published now arrives right after them.
            async with rtlink.Client(second.url + "rt") as client:
                await client.publish(ROOM, {"from": "python", "text": "marker"})
            await expect(log).to_have_text(["ntyped offline", "nand again", "pythonmarker"])


async def test_messages_sent_offline_reach_a_window_that_reconnects_after_them() -> None:
    # The walkthrough of issue 21: two windows; the server stops (its memory backend,
    # and with it the channel's history and epoch, is gone); window A keeps typing; the
    # server comes back; A reconnects first and sends what it typed; then B reconnects.
    # B resumes from a position of the lost epoch: the gap cannot be recovered, and the
    # server replays what the new epoch keeps, A's messages (protocol.md 6.2).
    first = await start_example("chat")
    relay = await Relay(first.port).start()  # B's way in, closed while A goes first
    try:
        async with rtlink.Client(first.url + "rt", **FAST_RECONNECT) as a, \
                rtlink.Client(f"http://127.0.0.1:{relay.port}/rt", **FAST_RECONNECT) as b:
            events: list[rtlink.SubscribedEvent] = []
            room = b.subscribe(ROOM)
            room.on("subscribed", events.append)
            await room.wait_subscribed()
            await a.publish(ROOM, {"from": "a", "text": "before"})
            assert [m.data["text"] for m in await collect(room, 1)] == ["before"]

            relay.refuse = True
            assert await first.stop() == 0, first.output
            await b.wait_for_state(rtlink.ConnectionState.DISCONNECTED)
            offline = [asyncio.ensure_future(a.publish(ROOM, {"from": "a", "text": text}))
                       for text in ("typed offline", "and again")]
            async with run_example("chat", "--port", str(first.port)):
                a.reconnect()
                async with asyncio.timeout(seconds(20)):
                    await asyncio.gather(*offline)  # applied by the new server
                relay.refuse = False
                b.reconnect()
                texts = [m.data["text"] for m in await collect(room, 2)]
                assert texts == ["typed offline", "and again"]
                assert events[-1].resumed and not events[-1].recovered
    finally:
        await relay.close()
        await first.stop()


# A known defect, open (see the issue note of 2026-12-07): after the page reconnects
# under a new name, its "Online" line shows the old name again a moment later. It
# passed in the runs of the day until 05:07 and fails every time since 05:10, with
# the same code; not found yet whether the old member comes back in the server's
# presence or only in the page's list.
@pytest.mark.xfail(reason="the chat page may show a member that left again (open defect)",
                   strict=False)
async def test_the_page_shows_who_is_online(chat: Example, chromium: Chromium) -> None:
    async with chromium.page(chat.url) as page:
        await expect(page.page.locator("#state")).to_have_text("connected")
        await page.page.fill("#nick", "pia")
        await page.page.press("#nick", "Tab")  # change: the page reconnects as pia
        who = page.page.locator("#who")
        await expect(who).to_have_text("pia")
        async with rtlink.Client(chat.url + "rt", token="quinn") as quinn:
            async with quinn.subscribe(ROOM, presence=True):
                await expect(who).to_have_text("pia, quinn")
                info = await quinn.presence(ROOM)
                assert {m.user for m in info.members} >= {"pia", "quinn"}
                assert {m.info["name"] for m in info.members if m.user == "quinn"} == {"quinn"}
        # Gone at once on a WebSocket.
        await expect(who).to_have_text("pia")

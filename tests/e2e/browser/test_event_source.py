"""A browser's own ``EventSource`` on rtlink's SSE endpoint, without the rtlink client:
what protocol.md 2.2 and 2.8 tell a page that uses it directly, in a real Chromium.

The page follows the document: it trades its token for a ticket, opens
``{path}/sse?subs=...&ticket=...``, and keeps the last event id (a cursor). A network
cut makes the browser reconnect by itself with the same URL, so with the same,
single-use ticket: the server refuses it with 4003 and HTTP 401, which stops the
EventSource (a 200 would make it repeat the refused URL every few seconds for ever);
the page then opens a new EventSource with a fresh ticket and the last event id as
its ``subs``, and gets what was published meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import rtlink
from tests.support import Server, relay_to, seconds
from tests.support.browser import Chromium, add_test_page, page_url, serve_app

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "s" * 32

#: The page's script: a ticketed EventSource, reopened as protocol.md 2.2 says.
_OPEN = """
async ({path, token, cursor}) => {
  const R = (window.R = {frames: [], errors: [], opened: 0});
  let last = cursor;
  const ticket = async () => {
    const answer = await fetch(path + '/ticket', {method: 'POST',
                                                  headers: {Authorization: 'Bearer ' + token}});
    return (await answer.json()).ticket;
  };
  const open = async () => {
    const url = `${path}/sse?subs=${encodeURIComponent(last)}&ticket=${await ticket()}`;
    const source = (R.source = new EventSource(url));
    R.opened++;
    source.onmessage = (event) => {
      if (event.lastEventId) last = event.lastEventId;
      for (const line of event.data.split('\\n')) R.frames.push(JSON.parse(line));
    };
    source.onerror = () => {
      R.errors.push(source.readyState);
      // CLOSED: the browser gave up (a refusal: its status was not 200). A stream that
      // merely ended or was cut is CONNECTING: the browser reconnects by itself.
      if (source.readyState == EventSource.CLOSED) open();
    };
  };
  await open();
}
"""


@contextlib.asynccontextmanager
async def recorded_server(hub: rtlink.Hub) -> AsyncIterator[tuple[Server, list[Any]]]:
    """A page server with rtlink on ``hub``, recording each SSE request: (status, its
    ``Last-Event-ID``)."""
    seen: list[tuple[int, str | None]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        # When the answer's head is sent: a stream is recorded while it is open.
        if request.path == "/rt/sse":
            seen.append((response.status, request.headers.get("Last-Event-ID")))

    app = web.Application()
    app.on_response_prepare.append(record)
    rtlink.attach(app, hub, path="/rt")
    add_test_page(app)
    async with serve_app(app, hub) as server:
        yield server, seen


async def test_a_ticketed_event_source_is_stopped_across_a_cut_and_reopened_by_the_page(
    chromium: Chromium,
) -> None:
    auth = rtlink.TokenAuth(SECRET)
    hub = rtlink.Hub(authenticate=auth)
    async with recorded_server(hub) as (server, seen), relay_to(server) as relay:
        async with chromium.page(page_url(relay.port)) as page:
            await page.eval(_OPEN, {"path": "/rt", "token": auth.mint("alice"),
                                    "cursor": '{"room":null}'})
            await page.until("R.frames.some((f) => f.type == 'subscribed')")
            await hub.publish("room", "before")
            await page.until("R.frames.some((f) => f.data == 'before')")

            relay.cut()  # the browser reconnects by itself, with the same URL
            await page.until("R.errors.length >= 1")
            await hub.publish("room", "during")
            # Its reconnect repeats the used ticket: refused with 401 (close 4003 in the
            # body, which an EventSource does not show), so it stops: CLOSED. The page
            # reopens with a new ticket and its last event id as subs.
            await page.until("R.frames.some((f) => f.data == 'during')", timeout=15,
                             message="the publication made during the cut")
            assert await page.eval("R.errors") == [0, 2]  # CONNECTING, then CLOSED
            assert [(frame["type"], frame.get("data")) for frame in await page.eval("R.frames")
                    if frame["type"] in ("publication", "close")] == [
                ("publication", "before"), ("publication", "during")]
            # The refused URL is not repeated: no request after the page's own reopen.
            await asyncio.sleep(seconds(4))
            assert await page.eval("R.opened") == 2
            assert [status for status, _ in seen] == [200, 401, 200]
            refused_id, reopened_id = seen[1][1], seen[2][1]
            assert refused_id is not None and "room" in refused_id  # the browser's own
            assert reopened_id is None  # the page's: the position is in subs

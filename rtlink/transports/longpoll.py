"""The long-polling transport: ``GET {path}/poll``, one batch of server frames per request.

Each poll is a short connection on its own: the request carries the codec and the
subscriptions with their positions (``subs``), the server replays what follows them
and answers at once if there is anything new (a refused channel, a fresh or
unrecovered subscription, publications) or if it is the first poll of a client's connection
(``connect=1``); otherwise it holds the request until a publication arrives or
``poll_timeout`` passes. Every answer starts with ``welcome`` and a
``subscribed`` frame per channel, then the publications, all in one response body.
The client polls again with the positions it reached. No state stays on the server
between polls, so consecutive polls may go to different nodes.

Publications between two polls are served from history: a channel's history must
hold what can be published to it between two polls of one client.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..hub import Hub
from ..session import POLL
from .http import (
    NO_CACHE,
    ResponseSink,
    authenticate_or_refuse,
    limit_unacknowledged_writes,
    request_codec,
    request_cursor,
    request_session,
)

__all__ = ["poll_handler"]


def poll_handler(hub: Hub) -> Any:
    """Return the aiohttp handler serving rtlink over long polling for ``hub``."""

    async def handle(request: web.Request) -> web.Response:
        codec = request_codec(request)
        presence: set[str] = set()
        cursor, last = request_cursor(request, hub.max_subscriptions, presence=presence)
        identity, refusal = await authenticate_or_refuse(hub, request, codec)
        if refusal is not None:
            return refusal
        # A poller that vanished without FIN/RST would otherwise keep its socket (and
        # the unacknowledged answer) until aiohttp's keep-alive timeout.
        limit_unacknowledged_writes(request, hub.ping_interval + hub.pong_timeout)
        peer = hub.accept(codec, identity, ResponseSink(request), "longpoll", POLL,
                          address=request.remote, fallback=request.query.get("fallback"),
                          session_id=request_session(request))
        connection = peer.connection
        try:
            # The first poll of a client's connection (connect=1) is its health check of
            # the transport: it is answered at once, news or not.
            connection.news = request.query.get("connect") == "1"
            for channel, since in cursor.items():
                # A refusal of the channel (an ``error`` frame) is news too: a poll
                # whose channels are all refused would otherwise be held for nothing.
                if await peer.subscribe(channel, since, last=last.get(channel),
                                        presence=channel in presence):
                    connection.news = True
            # ``news`` is also set by publications that reached a channel set up
            # earlier while a later one was being set up.
            if not connection.news and not connection.closing:
                # Never longer than the ping interval: to a polling client, an answer
                # is what a ping is on the other transports.
                await connection.wait_delivery(min(hub.poll_timeout, hub.ping_interval))
            body = connection.take_queued()
        finally:
            connection.finish()
        return web.Response(body=body, content_type=codec.content_type, headers=NO_CACHE)

    return handle

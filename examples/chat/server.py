"""A chat room: every browser on the page publishes to, and listens on, one channel,
and sees who is online.

The page (index.html, next to this file) uses the browser client that rtlink serves
at ``/rt/client.js`` and its presence module at ``/rt/presence.mjs``; the server
declares the channel, mounts rtlink, and takes each connection's nickname as its
identity (a demo: anyone may call themselves anything; a real app verifies a token,
see rtlink.TokenAuth).
"""

from pathlib import Path
from typing import Any

from aiohttp import web

import rtlink

PAGE = Path(__file__).with_name("index.html")


def nickname(request: web.Request) -> dict[str, Any] | None:
    """The nickname a page connects with (its client's ``token``: the Authorization
    header, or ``?token=`` on WebSocket and SSE) as the identity: who is online."""
    name = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    name = (name or request.query.get("token", "")).strip()[:30]
    return {"sub": name, "info": {"name": name}} if name else None


def make_app() -> web.Application:
    """The chat application: the page at ``/``, rtlink at ``/rt``."""
    hub = rtlink.Hub(channels={
        # Browsers may publish here; the last 200 messages of the last hour are kept
        # so that a page that was offline for a while gets what it missed.
        # presence: who is subscribed, with join/leave events (the "Online" line).
        "chat:*": rtlink.ChannelOptions(client_publish=True, history_size=200,
                                        history_ttl=3600, presence=True),
    }, authenticate=nickname)
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")  # /rt/ws, /rt/sse, /rt/poll, /rt/client.js ...

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app.router.add_get("/", index)
    return app

"""A chat room: every browser on the page publishes to, and listens on, one channel.

The page (index.html, next to this file) uses the browser client that rtlink serves
at ``/rt/client.js``; the server only declares the channel and mounts rtlink.
"""

from pathlib import Path

from aiohttp import web

import rtlink

PAGE = Path(__file__).with_name("index.html")


def make_app() -> web.Application:
    """The chat application: the page at ``/``, rtlink at ``/rt``."""
    hub = rtlink.Hub(channels={
        # Browsers may publish here; the last 200 messages of the last hour are kept
        # so that a page that was offline for a while gets what it missed.
        "chat:*": rtlink.ChannelOptions(client_publish=True, history_size=200,
                                        history_ttl=3600),
    })
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")  # /rt/ws, /rt/sse, /rt/poll, /rt/client.js ...

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app.router.add_get("/", index)
    return app

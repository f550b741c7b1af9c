"""Per-user notification feeds that catch up after time away.

Each user has a channel ``notifications:{user}``; the ``{user}`` pattern means only
the user named by the connection's token may subscribe to it. The channel keeps the
last 1,000 notifications for 6 hours, so a user who comes back after an hour gets
every one they missed: the page remembers the position of the last notification it
showed and resumes there (``subscribe(channel, {since})``); on a first visit it
shows the last 20 (``{last: 20}``).

DEMO ONLY: ``POST /login`` hands a token to anyone for any user name, without a
password. In your app, mint the token after your own login: ``auth.mint(user_id)``.
"""

import os
import re
import secrets
import time
from pathlib import Path

from aiohttp import web

import rtlink
from rtlink.auth import subject_of

PAGE = Path(__file__).with_name("index.html")
USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def make_app(secret: str | None = None) -> web.Application:
    """The notifications application: the page at ``/``, ``POST /login`` (demo),
    ``POST /notify``, rtlink at ``/rt``.

    Args:
        secret: signs the tokens (at least 32 bytes). Default: ``$RTLINK_SECRET``, or
            a random one (tokens then last until the server restarts).
    """
    auth = rtlink.TokenAuth(secret or os.environ.get("RTLINK_SECRET")
                            or secrets.token_urlsafe(32))
    hub = rtlink.Hub(authenticate=auth, channels={
        "notifications:{user}": rtlink.ChannelOptions(history_size=1000,
                                                      history_ttl=6 * 3600),
    })
    app = web.Application()
    rtlink.attach(app, hub, path="/rt")

    async def login(request: web.Request) -> web.Response:
        """DEMO ONLY: a token for whichever user name is asked for."""
        user = (await json_body(request)).get("user")
        if not isinstance(user, str) or not USER_NAME.fullmatch(user):
            raise web.HTTPBadRequest(text="user: 1-32 letters, digits, '_', '.' or '-'\n")
        return web.json_response({"user": user, "token": auth.mint(user, ttl=3600)})

    async def notify(request: web.Request) -> web.Response:
        """Send a notification to a user, from the user of the request's token."""
        try:
            sender = await auth(request)  # the hook that checks connections checks routes too
        except rtlink.AuthenticationError as exc:
            raise web.HTTPUnauthorized(text=f"{exc}\n") from None
        body = await json_body(request)
        user, text = body.get("user"), body.get("text")
        if not isinstance(user, str) or not USER_NAME.fullmatch(user):
            raise web.HTTPBadRequest(text="user: 1-32 letters, digits, '_', '.' or '-'\n")
        if not isinstance(text, str) or not 0 < len(text) <= 500:
            raise web.HTTPBadRequest(text="text: 1-500 characters\n")
        notification = {"from": subject_of(sender), "text": text,
                        "time": time.time()}
        position = await hub.publish(f"notifications:{user}", notification)
        return web.json_response({"position": position.to_wire()})

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/notify", notify)
    return app


async def json_body(request: web.Request) -> dict[str, object]:
    """The request's JSON object; 400 when it is not one."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object\n")
    return body

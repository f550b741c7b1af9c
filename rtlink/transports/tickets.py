"""``POST {path}/ticket``: browsers trade their token for a single-use ticket.

A browser cannot set headers on a WebSocket or an EventSource, so the browser client
first posts its token here (``Authorization: Bearer <token>``) and opens the stream
with the ticket in its URL (``?ticket=``): a ticket lives seconds and is accepted once,
which keeps long-lived tokens out of URLs and logs (:mod:`rtlink.auth`).

:func:`rtlink.attach` always mounts the route: with an authenticator that issues tickets
(:attr:`rtlink.auth.Authenticator.tickets`, e.g. a :class:`~rtlink.auth.TokenAuth`) it
answers them; else it answers 404, through the guard all the same, so that a page of
another origin can read it (with CORS headers) and fall back to a token in the URL.
"""

from __future__ import annotations

from aiohttp import web

from ..auth import Authenticator, TicketIssuer, bearer_token
from ..errors import AuthenticationError
from .guard import Handler
from .http import NO_CACHE

__all__ = ["ticket_handler", "issue_tickets", "no_tickets"]

_NO_STORE = {"Cache-Control": "no-store"}


def ticket_handler(authenticator: Authenticator | None) -> Handler:
    """The handler of ``POST {path}/ticket`` for a hub's authenticator (None: no hook):
    :func:`issue_tickets` with its :attr:`~rtlink.auth.Authenticator.tickets`, or
    :func:`no_tickets` when it issues none."""
    issuer = authenticator.tickets if authenticator is not None else None
    return no_tickets if issuer is None else issue_tickets(issuer)


def issue_tickets(issuer: TicketIssuer) -> Handler:
    """``POST {path}/ticket``: trade the ``Authorization: Bearer`` token for a ticket.

    200 with ``{"ticket": "<jwt>", "expires_in": <seconds>}``; 401 with
    ``{"error": "<reason>"}`` and ``WWW-Authenticate: Bearer`` when the header is
    missing or its token is refused. Both with ``Cache-Control: no-store``.
    """

    async def handle(request: web.Request) -> web.Response:
        try:
            header = request.headers.get("Authorization")
            if header is None:
                raise AuthenticationError(
                    "authentication required: send 'Authorization: Bearer <token>'")
            ticket, expires_in = issuer.issue_ticket(bearer_token(header))
        except AuthenticationError as exc:
            return web.json_response({"error": str(exc)}, status=401,
                                     headers={**_NO_STORE, "WWW-Authenticate": "Bearer"})
        return web.json_response({"ticket": ticket, "expires_in": expires_in},
                                 headers=_NO_STORE)

    return handle


async def no_tickets(request: web.Request) -> web.Response:
    """``POST {path}/ticket`` of a hub whose authenticator issues no tickets: 404."""
    return web.Response(status=404, text="rtlink: this server issues no tickets\n",
                        headers=NO_CACHE)

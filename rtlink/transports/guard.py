"""What every rtlink route runs before its handler: the origin check, with the CORS
answers browsers need, and the limit of connections per client address.

:func:`rtlink.attach` mounts each of its routes (except the browser client files)
through :meth:`Guard.add_route`, so a route added later gets the same checks.

* **Origin.** A request whose ``Origin`` the :class:`~rtlink.origins.OriginPolicy`
  refuses is answered by the route's own refusal, before authentication: on
  WebSocket a handshake and then close 4501, on SSE, long polling and send a
  ``close`` frame with 4501 in a 403 answer (clients stop on it; see
  :func:`~rtlink.transports.http.refusal_status`), elsewhere HTTP 403.
* **CORS.** Answers to an allowed ``Origin`` on the HTTP routes carry
  ``Access-Control-Allow-Origin: <that origin>``, ``Access-Control-Allow-Credentials:
  true`` and ``Vary: Origin`` — refusals included, so that a page can read why it was
  refused. A preflight (``OPTIONS``) is answered 204 with the methods, headers and
  max-age below, or 403 without CORS headers for a refused origin.
* **Connections per address.** On the connection routes (WebSocket, SSE, long poll)
  a client address with ``max_connections_per_ip`` requests open already is refused
  with 1013 (try again later: clients reconnect with backoff) the same ways, with
  status 200 on SSE and long polling (the same request may work later).

Hand-written rather than aiohttp-cors: that library answers CORS for HTTP routes
only, while browsers do not apply CORS to WebSockets at all (any page may open one
with the user's cookies, so the ``Origin`` must be checked here), and a refusal must
carry rtlink's close codes to be understood by rtlink clients, not a bare 403.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ..codes import CloseCode
from ..limits import AddressSlots
from ..origins import OriginPolicy
from .http import NO_CACHE

__all__ = [
    "Guard",
    "Handler",
    "Refuse",
    "refuse_with_status",
    "take_connection_slot",
    "CORS_ALLOW_METHODS",
    "CORS_ALLOW_HEADERS",
    "CORS_MAX_AGE",
]

logger = logging.getLogger("rtlink.transports.guard")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: ``refuse(request, close_code, reason)``: a route's answer to a refused request.
Refuse = Callable[[web.Request, int, str], Awaitable[web.StreamResponse]]

#: ``Access-Control-Allow-Methods`` of preflight answers.
CORS_ALLOW_METHODS = "GET, POST"
#: ``Access-Control-Allow-Headers`` of preflight answers: tokens (``/ticket``), the
#: codec's content type of a send, and what EventSource polyfills send on resume.
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
#: ``Access-Control-Max-Age`` of preflight answers, in seconds.
CORS_MAX_AGE = 600

#: Request key: the CORS headers to put on the request's answer, whatever it is. A
#: ``web.RequestKey`` where aiohttp has it (3.14+: a plain string key warns there).
_CORS_HEADERS: Any = getattr(web, "RequestKey", lambda name, kind: name)(
    "rtlink.cors_headers", dict)
#: Request key: what gives a counted request's connection slot back (see
#: :func:`take_connection_slot`).
_SLOT_RELEASE: Any = getattr(web, "RequestKey", lambda name, kind: name)(
    "rtlink.slot_release", object)
#: HTTP statuses of :func:`refuse_with_status` by close code.
_STATUSES: dict[int, int] = {CloseCode.FORBIDDEN: 403, CloseCode.TRY_AGAIN_LATER: 503}


class _SlotRelease:
    """Gives a connection's slot back (a partial, in the fewest bytes: it lives as long
    as the connection)."""

    __slots__ = ("_slots", "_address")

    def __init__(self, slots: AddressSlots, address: str | None) -> None:
        self._slots = slots
        self._address = address

    def __call__(self) -> None:
        self._slots.release(self._address)


def take_connection_slot(request: web.Request) -> Callable[[], None] | None:
    """Take the connection slot of a counted ``request`` out of its handler's lifetime:
    returns what gives it back (call it once, when the connection ends), or None if
    the request holds none. For a transport that serves its connection after its
    handler returned (the WebSocket, taken away from aiohttp)."""
    release: Callable[[], None] | None = request.pop(_SLOT_RELEASE, None)
    return release


async def refuse_with_status(request: web.Request, code: int, reason: str) -> web.Response:
    """The refusal of routes that are not transports (``/info``, ``/ticket``): HTTP 403
    for 4501, 503 for 1013, with a ``text/plain`` reason."""
    return web.Response(status=_STATUSES.get(code, 403), text=f"rtlink: {reason}\n",
                        headers=NO_CACHE)


def _cors_headers(origin: str) -> dict[str, str]:
    # Never "*": with credentials (cookies) browsers require the origin itself.
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin"}


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: put the CORS headers decided by the guard on the answer,
    whoever made it — the handler, a streamed response, or an HTTP error it raised."""
    headers: Mapping[str, str] | None = request.get(_CORS_HEADERS)
    if not headers:
        return
    for name, value in headers.items():
        if name == "Vary" and "Vary" in response.headers:
            if value.lower() not in response.headers["Vary"].lower():
                response.headers["Vary"] += f", {value}"
        else:
            response.headers[name] = value


class Guard:
    """Mounts routes behind the origin check, CORS, and the per-address limit.

    Args:
        app: the application the routes go on.
        policy: the origins allowed.
        slots: the hub's count of connections per address.
    """

    def __init__(self, app: web.Application, policy: OriginPolicy, slots: AddressSlots) -> None:
        self.policy = policy
        self._router = app.router
        self._slots = slots
        self._preflighted: set[str] = set()
        if _add_cors_headers not in app.on_response_prepare:
            app.on_response_prepare.append(_add_cors_headers)

    def add_route(self, method: str, path: str, handler: Handler, *,
                  refuse: Refuse = refuse_with_status, cors: bool = True,
                  counted: bool = False) -> None:
        """Mount ``handler`` for ``method`` (``GET`` also answers ``HEAD``) at ``path``.

        Args:
            refuse: how this route answers a refused request.
            cors: answer CORS: headers on answers to allowed origins, and ``OPTIONS``
                preflights (not for WebSocket, which CORS does not cover).
            counted: each request is a connection counted against
                ``max_connections_per_ip`` for as long as the handler runs, or, if
                the handler takes the slot (:func:`take_connection_slot`), until it
                gives it back.
        """
        policy, slots = self.policy, self._slots

        async def guarded(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            why = policy.refusal(origin, request.host)
            if why is not None:
                logger.info("refused %s %s: origin %r not allowed (Host %r): %s",
                            request.method, request.path, origin, request.host, why)
                return await refuse(request, CloseCode.FORBIDDEN, "origin not allowed")
            if cors and origin is not None:
                request[_CORS_HEADERS] = _cors_headers(origin)
            if not counted:
                return await handler(request)
            address = request.remote
            if not slots.claim(address):
                logger.info("refused %s %s: %d connections open from %s already",
                            request.method, request.path, slots.limit, address)
                return await refuse(request, CloseCode.TRY_AGAIN_LATER,
                                    "too many connections from this address")
            release = request[_SLOT_RELEASE] = _SlotRelease(slots, address)
            try:
                return await handler(request)
            finally:
                if request.get(_SLOT_RELEASE) is release:  # not taken by the handler
                    slots.release(address)

        if method == "GET":
            self._router.add_get(path, guarded)
        else:
            self._router.add_route(method, path, guarded)
        if cors and path not in self._preflighted:
            self._preflighted.add(path)
            self._router.add_route("OPTIONS", path, self._preflight)

    async def _preflight(self, request: web.Request) -> web.Response:
        """Answer a CORS preflight: 204 for an allowed origin, 403 otherwise."""
        origin = request.headers.get("Origin")
        if origin is None:  # not a preflight: say what the resource allows
            return web.Response(status=204, headers={"Allow": f"{CORS_ALLOW_METHODS}, OPTIONS"})
        why = self.policy.refusal(origin, request.host)
        if why is not None:
            logger.info("refused preflight of %s: origin %r not allowed (Host %r): %s",
                        request.path, origin, request.host, why)
            return web.Response(status=403, text="rtlink: origin not allowed\n",
                                headers=NO_CACHE)
        return web.Response(status=204, headers={
            **_cors_headers(origin),
            "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE),
        })

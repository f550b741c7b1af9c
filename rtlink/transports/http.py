"""What the HTTP transports share: request parsing, refusals, and the send endpoint.

Server-sent events and long polling carry the subscription set in their request (the
``subs`` query parameter, a cursor of :mod:`rtlink.positions`) so that any node can
serve any request, and send client
frames (publishes, pings) by ``POST {path}/send``, answered in the response. Nothing
is kept on the server between two requests of one client.

A request that is refused (authentication, origin, connections per address) is
answered with a ``close`` frame in place of ``welcome``, as on WebSocket, and with a
status that says whether the same request may work later (:func:`refusal_status`):
200 if so (1011, 1013), else 401 or 403, so that a browser's native ``EventSource``
stops instead of repeating it every few seconds and ``curl -f`` fails; 200 always for
a client that asks so (``refusal=200``) because it reads the frame itself.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from typing import Any, TypeAlias

from aiohttp import web

from ..auth import expires_at_of
from ..codecs import CODECS, Codec
from ..codes import CloseCode, should_reconnect
from ..errors import AuthenticationError, InvalidInput
from ..hub import Hub
from ..positions import Position, parse_subs
from ..presence import is_session_id
from ..protocol import Close, encode_frame
from ..session import REQUEST

__all__ = [
    "NO_CACHE",
    "EXPIRED_REASON",
    "Refusal",
    "REFUSAL_PARAMETER",
    "request_codec",
    "refusal_codec",
    "request_cursor",
    "identify",
    "request_session",
    "refusal_status",
    "refusal_headers",
    "authenticate_or_refuse",
    "close_response",
    "refuse_request",
    "BodyTooLarge",
    "read_body",
    "send_handler",
    "ResponseSink",
    "limit_unacknowledged_writes",
]

logger = logging.getLogger("rtlink.transports.http")

#: Responses of the HTTP transports must never be cached, transformed or buffered.
NO_CACHE: Mapping[str, str] = {
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",
}


#: The reason of a refusal (or close) for credentials that expired: get fresh ones.
EXPIRED_REASON = "credentials expired; reconnect with fresh ones"

#: Why a request is refused: a close code and its reason.
Refusal: TypeAlias = tuple[int, str]

#: The query parameter by which a client asks for refusals with status 200
#: (``refusal=200``, see :func:`refusal_status`).
REFUSAL_PARAMETER = "refusal"


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"rtlink: {message}\n", headers=NO_CACHE)


def request_codec(request: web.Request) -> Codec:
    """The codec named by the ``codec`` query parameter (JSON when absent)."""
    name = request.query.get("codec", "json")
    codec = CODECS.get(name)
    if codec is None:
        raise _bad_request(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    return codec


def refusal_codec(request: web.Request) -> Codec:
    """The codec of a refusal (origin, connections per address) of a stream, poll or
    send request: the request's, or JSON when its ``codec`` is unknown, since those
    checks come before every check of the request itself (protocol.md 2.9)."""
    return CODECS.get(request.query.get("codec", "json")) or CODECS["json"]


def request_cursor(request: web.Request, limit: int, header: str | None = None,
                   presence: set[str] | None = None
                   ) -> tuple[dict[str, Position | None], dict[str, int]]:
    """The cursor of a stream or poll request: its ``subs`` query parameter, or with
    ``header`` that request header (``Last-Event-ID``); the positions, and the ``last``
    of the entries that have one. Malformed: HTTP 400, whose text names the header if
    it came from one (protocol.md 4.2).

    Args:
        request: the request.
        limit: the most channels allowed (the hub's ``max_subscriptions``).
        header: the header to read instead of ``subs``.
        presence: if given, the channels whose presence events are asked for are
            added to it.
    """
    text = request.query.get("subs") if header is None else request.headers.get(header)
    try:
        return parse_subs(text, limit, presence)
    except InvalidInput as exc:
        raise _bad_request(str(exc) if header is None else f"{header}: {exc}") from None


async def identify(hub: Hub, request: web.Request) -> tuple[Any, Refusal | None]:
    """Run the ``authenticate`` hook for a new connection's request: its identity, or
    why it is refused.

    Refusals: the hook's :class:`~rtlink.errors.AuthenticationError` with its code
    (4500, or 4003 for a used or expired ticket); 1011 when the hook crashed (logged);
    4003 for an identity that has expired already, which the hub accepts within its
    authenticator's ``leeway`` so that the client comes back with fresh credentials
    instead of stopping. That is said instead of ``welcome``: a connection that would
    be closed at once is not opened, and its client backs off if its token source
    keeps giving the same stale token.
    """
    try:
        identity = await hub.authenticate(request)
    except AuthenticationError as exc:
        return None, (exc.code, str(exc) or "unauthorized")
    except Exception:
        logger.exception("authenticate hook failed")
        return None, (CloseCode.INTERNAL_ERROR, "authentication failed")
    expires_at = expires_at_of(identity)
    if expires_at is not None and expires_at <= time.time():
        return None, (CloseCode.TOKEN_EXPIRED, EXPIRED_REASON)
    return identity, None


def request_session(request: web.Request) -> str | None:
    """The session id a client carries over from its previous stream or poll (the
    ``session`` query parameter, protocol.md 6.8), if it is a valid one; otherwise
    the connection gets a new id."""
    session = request.query.get("session")
    return session if is_session_id(session) else None


def refusal_status(code: int, request: web.Request) -> int:
    """The HTTP status of a stream, poll or send ``request`` refused with close ``code``.

    200 when the same request may succeed later (1011, 1013: a native ``EventSource``
    repeats it by itself, as it should); 401 when credentials are missing, wrong or
    used up (4500, 4003: the same URL would be refused again, so the status stops an
    ``EventSource`` from repeating it forever); 403 for every other code (4501 and
    the stop codes). The body holds the ``close`` frame all the same, for the clients
    that read it.

    A request with the query parameter ``refusal=200`` gets 200 whatever the code: its
    client reads the ``close`` frame of a refused stream itself and closes its
    ``EventSource`` on it — the browser client, which could not read the frame of a
    401 (an ``EventSource`` shows nothing of an answer that is not a 200).
    """
    if request.query.get(REFUSAL_PARAMETER) == "200":
        return 200
    if code in (CloseCode.UNAUTHORIZED, CloseCode.TOKEN_EXPIRED):
        return 401
    return 200 if should_reconnect(code) else 403


def refusal_headers(code: int, request: web.Request) -> dict[str, str]:
    """The headers of a refusal of ``request`` with close ``code`` (a 401 names its
    scheme)."""
    if refusal_status(code, request) == 401:
        return {**NO_CACHE, "WWW-Authenticate": "Bearer"}
    return dict(NO_CACHE)


async def authenticate_or_refuse(hub: Hub, request: web.Request,
                                 codec: Codec) -> tuple[Any, web.Response | None]:
    """:func:`identify`; on refusal also return the poll or send answer that says so."""
    identity, refusal = await identify(hub, request)
    return identity, None if refusal is None else close_response(request, codec, *refusal)


def close_response(request: web.Request, codec: Codec, code: int,
                   reason: str) -> web.Response:
    """An answer holding only a ``close`` frame: how the HTTP transports refuse a poll or
    a send ``request``, with the status of :func:`refusal_status`."""
    body = encode_frame(codec, Close(code, reason))
    return web.Response(body=body, status=refusal_status(code, request),
                        content_type=codec.content_type,
                        headers=refusal_headers(code, request))


async def refuse_request(request: web.Request, code: int, reason: str) -> web.Response:
    """Refuse a poll or send request with a ``close`` frame in its ``codec`` (JSON if
    the ``codec`` is unknown: :func:`refusal_codec`)."""
    return close_response(request, refusal_codec(request), code, reason)


def limit_unacknowledged_writes(request: web.Request, seconds: float) -> None:
    """Make the kernel drop the request's TCP connection once data it sent has stayed
    unacknowledged for ``seconds`` (``TCP_USER_TIMEOUT``; Linux only, else nothing).

    Streams (WebSocket, SSE) call it with ``ping_interval + pong_timeout``. A peer that
    vanished without a FIN or RST (power loss, a dropped mobile link, a NAT that forgot
    the flow) acknowledges nothing, but a write still succeeds: it only fills the
    kernel's buffer, and TCP would retransmit for about 15 minutes before giving up.
    The server's pings are writes too, so with this bound the kernel ends such a
    connection ``seconds`` after the first ping it sent into the void; the transport
    sees the error and the connection is dropped. It matters most for SSE, where the
    client never writes and silence proves nothing; on WebSocket it frees the socket
    without waiting out the close timeout. A live peer whose receive window stays
    closed that long (it stopped reading) is dropped too: it could not have read the
    pings it must answer within the same time, and it resumes when it reconnects.
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    milliseconds = round(seconds * 1000)
    if (option is None or milliseconds < 1 or sock is None
            or sock.family not in (socket.AF_INET, socket.AF_INET6)):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, milliseconds)
    except OSError as exc:  # e.g. a kernel without the option: detection is slower
        logger.debug("TCP_USER_TIMEOUT not set: %s", exc)


class BodyTooLarge(Exception):
    """A request body is larger than allowed (answered with HTTP 413).

    Attributes:
        limit: the largest body allowed, in bytes.
        size: the body's size as far as known: its ``Content-Length``, or the bytes
            read before reading stopped (``limit + 1``).
    """

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit
        self.size = size


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body of ``request``, of at most ``limit`` bytes (exactly ``limit`` is
    fine), or None if the client left before sending all of it.

    Raises:
        BodyTooLarge: ``Content-Length`` announces more than ``limit`` bytes (then
            nothing is read), or more arrive (chunked, or a lying length): reading
            stops at ``limit + 1`` bytes, so a huge body is never held in memory.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit, request.content_length)
    # read(n) returns what has arrived so far: a body split over TCP segments
    # takes several reads (one would decode a truncated message).
    received = bytearray()
    try:
        while len(received) <= limit:
            chunk = await request.content.read(limit + 1 - len(received))
            if not chunk:
                break
            received += chunk
    except ConnectionError:
        # Nothing can be handled and nobody reads an answer. (Unhandled, aiohttp
        # would log it as a server error with a traceback.)
        return None
    if len(received) > limit:
        raise BodyTooLarge(limit, len(received))
    return bytes(received)


class ResponseSink:
    """Sink of connections answered by one HTTP response (pull mode): nothing is pushed."""

    def __init__(self, request: web.Request) -> None:
        self._request = request

    async def send(self, message: bytes) -> None:  # pragma: no cover - pull mode only
        raise RuntimeError("a request connection has no writer")

    async def close(self, code: int, reason: str) -> None:
        pass

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()


def send_handler(hub: Hub) -> Any:
    """``POST {path}/send``: client frames in the body, the answers in the response.

    The body is one transport message in the ``codec`` of the query. Publishes are
    acknowledged (or refused) in the response, as are pings. Subscriptions do not go
    here: they travel in the stream or poll request.
    """

    async def handle(request: web.Request) -> web.Response:
        codec = request_codec(request)
        limit = hub.max_message_size
        try:
            body = await read_body(request, limit)
        except BodyTooLarge as exc:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=exc.size,
                                                headers=NO_CACHE) from None
        if body is None:
            # The client left mid-body: nothing was handled and nobody reads an answer.
            return web.Response(status=400, headers=NO_CACHE)
        identity, refusal = await authenticate_or_refuse(hub, request, codec)
        if refusal is not None:
            return refusal
        peer = hub.accept(codec, identity, ResponseSink(request), "http", REQUEST,
                          address=request.remote)
        connection = peer.connection
        try:
            await peer.receive(body)
            answer = connection.take_queued()
        finally:
            connection.finish()
        # An undecodable body closed the request connection: say so in the status too.
        status = 400 if connection.close_code == CloseCode.INVALID_PAYLOAD else 200
        return web.Response(body=answer, status=status, content_type=codec.content_type,
                            headers=NO_CACHE)

    return handle

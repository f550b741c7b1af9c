"""``POST {path}/api/history``: a page of a channel's history over plain HTTP, for services.

A service holding an **API key** reads what a channel keeps with one request
(docs/http-api.md §5, "History pages")::

    curl -sS http://127.0.0.1:8080/rt/api/history \\
      -H "Authorization: Bearer $RTLINK_API_KEY" \\
      -H "Content-Type: application/json" \\
      -d '{"channel": "orders", "limit": 2, "reverse": true}'
    {"channel":"orders","publications":[{"data":...,"position":{...}},...],
     "position":{"epoch":"5a266a94","offset":7},"recovered":true}

The body has the fields of the ``history`` frame (protocol.md 5.11) without ``type``
and ``id``, validated by the same rules; the answer is the ``history`` frame's fields.
The read goes through :meth:`rtlink.Hub.history`, the server-side read: channel rules
apply (the name must be valid and match a pattern), the client ones do not (an API key
is a full-power credential, as for ``POST {path}/publish``). Refusals have the shape
and the checks of that route (API key, ``Content-Type``, body size).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..codes import ErrorCode
from ..errors import BackendError, ChannelError, FrameError
from ..hub import Hub
from ..protocol import History, parse_client_frame
from .guard import Handler
from .http import NO_CACHE, BodyTooLarge, read_body
from .publish_api import _DECODERS, ApiKeys, _body_codec, _check_api_key, _error_response, _Refusal

__all__ = ["history_handler"]

logger = logging.getLogger("rtlink.transports.history_api")


def _request(document: Any) -> History:
    """The read a body asks for: the ``history`` frame's fields (400, or 422 for an
    invalid channel name, with the frame's messages)."""
    if not isinstance(document, dict):
        raise _Refusal(400, ErrorCode.BAD_REQUEST,
                       'the body must be an object {"channel": ..., "limit": ...}')
    if "channel" not in document:
        raise _Refusal(400, ErrorCode.BAD_REQUEST, "the body has no 'channel' field")
    try:
        frame = parse_client_frame({**document, "type": "history", "id": 1})
    except FrameError as exc:
        raise _Refusal(422 if exc.error_code == ErrorCode.INVALID_CHANNEL else 400,
                       exc.error_code, str(exc)) from None
    assert isinstance(frame, History)
    return frame


async def _history(hub: Hub, request: web.Request, keys: ApiKeys) -> web.Response:
    """Check, read and answer one request; refusals are raised."""
    _check_api_key(keys, request)
    codec = _body_codec(request)
    try:
        body = await read_body(request, hub.max_message_size)
    except BodyTooLarge as exc:
        raise _Refusal(413, ErrorCode.TOO_LARGE,
                       f"the body is larger than {exc.limit} bytes") from None
    if body is None:  # the client left mid-body: nobody to answer
        return web.Response(status=400, headers=NO_CACHE)
    frame = _request(_DECODERS[codec.name](body))
    try:
        page = await hub.history(frame.channel, frame.since, limit=frame.limit,
                                 reverse=frame.reverse)
    except ChannelError as exc:
        # As for POST {path}/publish: an unknown channel is a 422 (code 404), so that
        # a caller tells it from a server without the API (a plain 404).
        raise _Refusal(422, exc.code, str(exc)) from None
    except BackendError as exc:
        if not exc.temporary:
            logger.error("history of %r failed in the backend: %s", frame.channel, exc)
            raise _Refusal(500, ErrorCode.INTERNAL_ERROR, f"backend: {exc}") from None
        raise _Refusal(503, ErrorCode.BACKEND_UNAVAILABLE, f"backend: {exc}") from None
    answer = page.to_wire()
    del answer["type"]
    return web.Response(body=codec.encode(answer), content_type=codec.content_type,
                        headers=NO_CACHE)


def history_handler(hub: Hub, keys: ApiKeys) -> Handler:
    """The handler of ``POST {path}/api/history``, accepting ``keys`` (docs/http-api.md
    §5, "History pages"). Checks, in order: the API key (401), the ``Content-Type`` (415), the body
    size against ``hub.max_message_size`` (413), the body (400; 422 for an invalid
    channel name), the channel's rule (422 with code 404); a backend failure answers
    503 or 500."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await _history(hub, request, keys)
        except _Refusal as refusal:
            return refusal.response()
        except Exception:
            logger.exception("history request failed")
            return _error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")

    return handle

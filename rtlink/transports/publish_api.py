"""``POST {path}/publish``: publishing over plain HTTP, for services not written in Python.

A service holding an **API key** publishes with one request (docs/http-api.md §5)::

    curl -sS http://127.0.0.1:8080/rt/publish \\
      -H "Authorization: Bearer $RTLINK_API_KEY" \\
      -H "Content-Type: application/json" \\
      -H "Idempotency-Key: order-1234-shipped" \\
      -d '{"channel": "orders", "data": {"id": 1234, "status": "shipped"}}'
    {"channel":"orders","position":{"epoch":"5a266a94","offset":7}}

The publish goes through :meth:`rtlink.Hub.publish`, the server-side publish: channel
rules apply (the name must be valid and match a pattern) but not the client ones
(``client_publish``, ``subscribe``, ``{user}`` owners, ``authorize_publish``, the
publish rate). An API key is therefore a **full-power credential**: whoever holds one
may publish anything to any channel the server knows. Keys are compared in constant
time and never logged; they do not replace the hub's ``authenticate`` hook, which is
not consulted here.

The route is for servers, not browsers: it answers no CORS (a page of another origin
can neither pass the preflight nor read an answer), and the guard still refuses a
browser ``Origin`` that is not allowed, as on every route.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NoReturn

from aiohttp import web

from ..auth import bearer_token
from ..codecs import CODECS, Codec
from ..codes import ErrorCode
from ..errors import AuthenticationError, BackendError, ChannelError, ProtocolError
from ..hub import Hub
from ..protocol import MAX_KEY_LENGTH
from .guard import Handler
from .http import NO_CACHE, BodyTooLarge, read_body

__all__ = [
    "ApiKeys",
    "ApiRefusal",
    "MIN_API_KEY_LENGTH",
    "BODY_CODECS",
    "api_handler",
    "backend_refusal",
    "channel_refusal",
    "idempotency_key",
    "publish_handler",
    "read_api_request",
    "refuse_publish",
]

logger = logging.getLogger("rtlink.transports.publish_api")

#: Shortest API key accepted: 16 random characters are beyond guessing; prefer
#: ``secrets.token_urlsafe(32)`` (43 characters).
MIN_API_KEY_LENGTH = 16

#: Request ``Content-Type`` → the codec of the body and of the success answer.
BODY_CODECS: Mapping[str, Codec] = {
    "application/json": CODECS["json"],
    "application/msgpack": CODECS["msgpack"],
    "application/x-msgpack": CODECS["msgpack"],
}

#: What an API key is made of: visible ASCII, so that it travels in a header as is.
_API_KEY_RE = re.compile(r"[\x21-\x7e]+")
#: An ``Idempotency-Key``: 1 to 128 printable ASCII characters (as the protocol's keys).
_IDEMPOTENCY_KEY_RE = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")
#: Error answers are JSON whatever the request's codec: readable with curl, and the
#: same for a request whose body could not be read at all (415, 413, 401).
_JSON = CODECS["json"]


class ApiKeys:
    """The API keys a server accepts on ``POST {path}/publish``.

    Only SHA-256 digests of the keys are kept. A presented key is hashed and compared
    with every digest by :func:`hmac.compare_digest`, without stopping at a match:
    the time taken says nothing about which key matched, how much of one did, or
    how long keys are (digests all have the same length, the keys need not).

    Args:
        keys: the accepted keys (duplicates are ignored; none: the API is off).

    Raises:
        ValueError: a key shorter than :data:`MIN_API_KEY_LENGTH` characters, or with
            characters other than visible ASCII (no spaces). The message names the
            key by its rank, never by its value.
        TypeError: ``keys`` is a single string rather than a collection of keys.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        if isinstance(keys, str | bytes):
            # Iterating a string would make one "key" of each character.
            raise TypeError("api_keys must be a collection of keys, not a single string")
        digests: list[bytes] = []
        for rank, key in enumerate(keys, 1):
            if not isinstance(key, str):
                raise ValueError(f"API key #{rank} must be a string, not "
                                 f"{type(key).__name__}")
            if len(key) < MIN_API_KEY_LENGTH:
                raise ValueError(f"API key #{rank} has {len(key)} characters; at least "
                                 f"{MIN_API_KEY_LENGTH} are required "
                                 "(make one with: python -c 'import secrets; "
                                 "print(secrets.token_urlsafe(32))')")
            if not _API_KEY_RE.fullmatch(key):
                raise ValueError(f"API key #{rank} must be made of visible ASCII "
                                 "characters (no spaces)")
            digest = _digest(key)
            if digest not in digests:
                digests.append(digest)
        self._digests = tuple(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"<ApiKeys: {len(self)} key{'s' if len(self) != 1 else ''}>"

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is one of the accepted keys (constant time, see the class)."""
        if not key.isascii():
            return False  # no accepted key is; nothing about them is learnt from this
        presented = _digest(key)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiRefusal(Exception):
    """Raised inside a handler of the HTTP API to answer with an error (caught by
    :func:`api_handler`)."""

    def __init__(self, status: int, code: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> web.Response:
        return _error_response(self.status, self.code, self.message, self.headers)


def _error_response(status: int, code: int, message: str,
                    headers: Mapping[str, str] | None = None) -> web.Response:
    """An error answer: ``{"error": {"code": <rtlink error code>, "message": ...}}``."""
    body = _JSON.encode({"error": {"code": int(code), "message": message}})
    return web.Response(status=status, body=body, content_type=_JSON.content_type,
                        headers={**NO_CACHE, **(headers or {})})


async def refuse_publish(request: web.Request, code: int, reason: str) -> web.Response:
    """How the guard refuses a publish request (a browser ``Origin`` not allowed):
    HTTP 403 with error code 403 and the reason, in the JSON error shape of this API."""
    return _error_response(403, ErrorCode.FORBIDDEN, reason)


def _check_api_key(keys: ApiKeys, request: web.Request) -> None:
    """Raise a 401 refusal unless the request carries ``Authorization: Bearer <key>``
    with an accepted key. Refusals are logged without the credentials."""
    challenge = {"WWW-Authenticate": "Bearer"}
    headers = request.headers.getall("Authorization", [])
    if len(headers) != 1:
        why = ("authentication required: send 'Authorization: Bearer <API key>'"
               if not headers else "send one Authorization header, not several")
        logger.info("refused %s from %s: %s", request.path, request.remote,
                    "no Authorization header" if not headers else "several Authorization headers")
        raise ApiRefusal(401, ErrorCode.UNAUTHORIZED, why, challenge)
    try:
        key = bearer_token(headers[0])
    except AuthenticationError:
        logger.info("refused %s from %s: Authorization is not 'Bearer <key>'",
                    request.path, request.remote)
        raise ApiRefusal(401, ErrorCode.UNAUTHORIZED,
                         "the Authorization header must be 'Bearer <API key>'",
                         challenge) from None
    if not keys.accepts(key):
        logger.info("refused %s from %s: API key not accepted", request.path,
                    request.remote)
        raise ApiRefusal(401, ErrorCode.UNAUTHORIZED, "API key not accepted", challenge)


def _body_codec(request: web.Request) -> Codec:
    """The codec named by the request's ``Content-Type`` (415 for any other type)."""
    codec = BODY_CODECS.get(request.content_type)
    if codec is not None:
        return codec
    given = (repr(request.content_type) if "Content-Type" in request.headers
             else "missing")
    raise ApiRefusal(415, ErrorCode.BAD_REQUEST,
                   f"Content-Type must be application/json or application/msgpack "
                   f"(or application/x-msgpack); it is {given}")


def idempotency_key(request: web.Request) -> str | None:
    """The ``Idempotency-Key`` header (None without), or a 400 refusal if invalid."""
    values = request.headers.getall("Idempotency-Key", [])
    if not values:
        return None
    if len(values) > 1:
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST, "send one Idempotency-Key header, not several")
    if not _IDEMPOTENCY_KEY_RE.fullmatch(values[0]):
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST,
                       f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters")
    return values[0]


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _decode_json(body: bytes) -> Any:
    # One JSON document, newlines allowed (unlike a transport message, which is one
    # frame per line): a pretty-printed file sent with curl -d @file.json works.
    try:
        return json.loads(body.decode(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 is a ValueError too
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST, f"invalid JSON body: {exc}") from None


def _decode_msgpack(body: bytes) -> Any:
    try:
        values = CODECS["msgpack"].decode(body)
    except ProtocolError as exc:
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST, f"invalid msgpack body: {exc}") from None
    if len(values) != 1:
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST,
                       f"the body must be one msgpack value, not {len(values)}")
    return values[0]


#: Body decoders by codec name.
_DECODERS: Mapping[str, Callable[[bytes], Any]] = {
    "json": _decode_json,
    "msgpack": _decode_msgpack,
}


def _publication(document: Any) -> tuple[str, Any]:
    """The channel and data of a request body ``{"channel": str, "data": any}``.

    Other fields are ignored, as unknown fields are everywhere in the protocol.
    The data is validated by the hub (400), the channel name too (422).
    """
    if not isinstance(document, dict):
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST,
                       'the body must be an object {"channel": ..., "data": ...}')
    for field in ("channel", "data"):
        if field not in document:
            raise ApiRefusal(400, ErrorCode.BAD_REQUEST, f"the body has no {field!r} field")
    channel = document["channel"]
    if not isinstance(channel, str):
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST, "'channel' must be a string")
    return channel, document["data"]


async def read_api_request(request: web.Request, keys: ApiKeys, limit: int) -> tuple[Codec, Any]:
    """Check and read one request of the HTTP API: the API key (401), the
    ``Content-Type`` (415), the ``Idempotency-Key`` if any (400), the body size (413,
    without reading more than ``limit``) and the body (400); its codec and the body's
    decoded value. Refusals are raised (:class:`ApiRefusal`)."""
    _check_api_key(keys, request)
    codec = _body_codec(request)
    idempotency_key(request)
    try:
        body = await read_body(request, limit)
    except BodyTooLarge as exc:
        raise ApiRefusal(413, ErrorCode.TOO_LARGE,
                         f"the body is larger than {exc.limit} bytes") from None
    if body is None:  # the client left mid-body: nothing done, nobody to answer
        raise ApiRefusal(400, ErrorCode.BAD_REQUEST, "the body ended early")
    return codec, _DECODERS[codec.name](body)


def channel_refusal(error: ChannelError) -> ApiRefusal:
    """The refusal of a request whose channel or data the hub refused: bad data is
    the body's fault (400); a bad or unknown channel name is a well-formed request
    naming something that cannot be used (422; not 404, which would read as "no such
    endpoint")."""
    status = 400 if error.code == ErrorCode.BAD_REQUEST else 422
    return ApiRefusal(status, error.code, str(error))


def backend_refusal(error: BackendError, what: str) -> ApiRefusal:
    """The refusal of a request the backend failed: 503 when temporary (send it
    again), else 500; logged with ``what`` was being done."""
    if not error.temporary:
        logger.error("%s failed in the backend: %s", what, error)
        return ApiRefusal(500, ErrorCode.INTERNAL_ERROR, f"backend: {error}")
    logger.warning("%s refused: backend unavailable: %s", what, error)
    return ApiRefusal(503, ErrorCode.BACKEND_UNAVAILABLE, f"backend: {error}")


async def _publish(hub: Hub, request: web.Request, keys: ApiKeys) -> web.Response:
    """Check, read, publish and answer one request; refusals are raised."""
    codec, document = await read_api_request(request, keys, hub.max_message_size)
    channel, data = _publication(document)
    try:
        position = await hub.publish(channel, data, key=idempotency_key(request))
    except ChannelError as exc:
        raise channel_refusal(exc) from None
    except BackendError as exc:
        raise backend_refusal(exc, f"publish to {channel!r}") from None
    answer = codec.encode({"channel": channel, "position": position.to_wire()})
    return web.Response(body=answer, content_type=codec.content_type, headers=NO_CACHE)


def api_handler(run: Callable[[web.Request], Awaitable[web.StreamResponse]],
                what: str) -> Handler:
    """A handler of the HTTP API around ``run``: a raised :class:`ApiRefusal` is
    answered with its error, anything unexpected with 500 (logged as ``what``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await run(request)
        except ApiRefusal as refusal:
            return refusal.response()
        except Exception:
            logger.exception("%s request failed", what)
            return _error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")

    return handle


def publish_handler(hub: Hub, keys: ApiKeys) -> Handler:
    """The handler of ``POST {path}/publish``, accepting ``keys`` (docs/http-api.md §5).

    Checks, in order: the API key (401), the ``Content-Type`` (415), the
    ``Idempotency-Key`` (400), the body size against ``hub.max_message_size`` (413,
    without reading more than that), the body (400), the channel (422); then
    publishes with :meth:`Hub.publish`. A backend failure answers 503 (temporary:
    send it again with the same ``Idempotency-Key``) or 500.
    """

    async def run(request: web.Request) -> web.StreamResponse:
        return await _publish(hub, request, keys)

    return api_handler(run, "publish")

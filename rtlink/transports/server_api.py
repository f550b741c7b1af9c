"""``POST {path}/api/<operation>``: the hub's server API over HTTP, for services
(docs/http-api.md §7).

Each operation takes one JSON (or msgpack) object and answers one, with the API keys,
checks and refusals of ``POST {path}/publish`` (:mod:`.publish_api`, whose machinery
this module uses): 401 without an accepted key, 415, 413, 400 for a malformed body,
422 for a bad or unknown channel, 503 when the backend is unavailable.

==================  ==============================================  =========================
operation           body                                            answer
==================  ==============================================  =========================
``publish_many``    ``{"channels": [str], "data": any}``            ``{"publications":
                                                                    [{"channel", "position"}]}``
``channels``        ``{}``                                          ``{"channels": {str: int}}``
``disconnect``      ``{"user": str, "reconnect"?: bool,             ``{"count": int}``
                    "reason"?: str}``
``unsubscribe``     ``{"user": str, "channel": str, "code"?: int,   ``{"count": int}``
                    "reason"?: str}``
``subscribe``       ``{"user": str, "channel": str}``               ``{"count": int}``
``history``         the ``history`` frame's fields (protocol.md     the ``history`` frame's
                    5.11) without ``type`` and ``id``               fields without ``type``
                                                                    and ``id``
``presence``        ``{"channel": str, "limit"?: int}``             ``{"channel", "count",
                                                                    "members"}``
==================  ==============================================  =========================

:data:`API_OPERATIONS` is the table :func:`rtlink.attach` mounts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from aiohttp import web

from ..codes import ErrorCode
from ..errors import BackendError, ChannelError, FrameError
from ..hub import Hub
from ..presence import MAX_MEMBERS
from ..protocol import History, parse_client_frame
from .guard import Handler
from .http import NO_CACHE
from .publish_api import (
    ApiKeys,
    ApiRefusal,
    api_handler,
    backend_refusal,
    channel_refusal,
    idempotency_key,
    read_api_request,
)

__all__ = ["API_PATH", "API_OPERATIONS", "api_operation_handler"]

#: Under ``{path}``: the operations are ``{path}/api/<name>``.
API_PATH = "/api"

#: One operation: the hub, the request and its decoded body in; the answer out.
Operation: TypeAlias = Callable[[Hub, web.Request, Mapping[str, Any]],
                                Awaitable[Mapping[str, Any]]]

_MISSING = object()


def _field(body: Mapping[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    """``body[name]`` if it is a ``kind`` (a boolean is no integer); ``default`` when
    absent or null (as in frames, and in the ``history`` operation's body) if there is
    one; else a 400 refusal."""
    value = body.get(name)
    if value is None:
        if default is _MISSING:
            raise _bad(f"the body has no {name!r} field")
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _bad(f"{name!r} must be {_TYPE_WORDS[kind]}")
    return value


def _bad(message: str) -> ApiRefusal:
    return ApiRefusal(400, ErrorCode.BAD_REQUEST, message)


_TYPE_WORDS = {str: "a string", int: "an integer", bool: "a boolean", list: "a list"}


async def _publish_many(hub: Hub, request: web.Request,
                        body: Mapping[str, Any]) -> Mapping[str, Any]:
    channels = _field(body, "channels", list)
    if not all(isinstance(channel, str) for channel in channels):
        raise _bad("'channels' must be a list of strings")
    if "data" not in body:
        raise _bad("the body has no 'data' field")
    positions = await hub.publish_many(channels, body["data"], key=idempotency_key(request))
    return {"publications": [{"channel": channel, "position": position.to_wire()}
                             for channel, position in zip(channels, positions, strict=True)]}


async def _channels(hub: Hub, request: web.Request,
                    body: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"channels": await hub.channels()}


async def _disconnect(hub: Hub, request: web.Request,
                      body: Mapping[str, Any]) -> Mapping[str, Any]:
    count = await hub.disconnect(
        _field(body, "user", str), reconnect=_field(body, "reconnect", bool, False),
        reason=_field(body, "reason", str, "disconnected by the server"))
    return {"count": count}


async def _unsubscribe(hub: Hub, request: web.Request,
                       body: Mapping[str, Any]) -> Mapping[str, Any]:
    count = await hub.unsubscribe(
        _field(body, "user", str), _field(body, "channel", str),
        code=_field(body, "code", int, ErrorCode.FORBIDDEN),
        reason=_field(body, "reason", str, "unsubscribed by the server"))
    return {"count": count}


async def _subscribe(hub: Hub, request: web.Request,
                     body: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"count": await hub.subscribe(_field(body, "user", str),
                                         _field(body, "channel", str))}


async def _history(hub: Hub, request: web.Request,
                   body: Mapping[str, Any]) -> Mapping[str, Any]:
    # The history frame's fields, checked by the frame's own rules (400; 422 for an
    # invalid channel name, as for the other operations).
    _field(body, "channel", str)
    try:
        frame = parse_client_frame({**body, "type": "history", "id": 1})
    except FrameError as exc:
        raise ApiRefusal(422 if exc.error_code == ErrorCode.INVALID_CHANNEL else 400,
                         exc.error_code, str(exc)) from None
    assert isinstance(frame, History)
    page = await hub.history(frame.channel, frame.since, limit=frame.limit,
                             reverse=frame.reverse)
    answer = page.to_wire()
    del answer["type"]
    return answer


async def _presence(hub: Hub, request: web.Request,
                    body: Mapping[str, Any]) -> Mapping[str, Any]:
    limit = _field(body, "limit", int, MAX_MEMBERS)
    if not 0 <= limit <= MAX_MEMBERS:
        raise _bad(f"'limit' must be from 0 to {MAX_MEMBERS}")
    info = await hub.presence(_field(body, "channel", str), limit=limit)
    return {"channel": info.channel, "count": info.count,
            "members": [member.to_wire() for member in info.members]}


#: The operations of ``POST {path}/api/<name>``, by name.
API_OPERATIONS: dict[str, Operation] = {
    "publish_many": _publish_many,
    "channels": _channels,
    "disconnect": _disconnect,
    "unsubscribe": _unsubscribe,
    "subscribe": _subscribe,
    "history": _history,
    "presence": _presence,
}


def api_operation_handler(hub: Hub, keys: ApiKeys, name: str) -> Handler:
    """The handler of ``POST {path}/api/<name>`` (see the module docstring)."""
    operation = API_OPERATIONS[name]

    async def run(request: web.Request) -> web.StreamResponse:
        codec, body = await read_api_request(request, keys, hub.max_message_size)
        if not isinstance(body, dict):
            raise _bad("the body must be an object")
        try:
            answer = await operation(hub, request, body)
        except ChannelError as exc:
            raise channel_refusal(exc) from None
        except BackendError as exc:
            raise backend_refusal(exc, name) from None
        return web.Response(body=codec.encode(dict(answer)), content_type=codec.content_type,
                            headers=NO_CACHE)

    return api_handler(run, name)

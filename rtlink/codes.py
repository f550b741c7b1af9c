"""Numeric codes shared by the server, the Python client and the JavaScript client.

Two families, documented in ``docs/protocol.md``:

* :class:`CloseCode` ends a connection. On WebSocket it is the close code of the
  WebSocket close frame; on the HTTP transports it travels in a ``close`` frame.
  The range tells the client what to do next: reconnect (and resume from its
  positions) or stop.
* :class:`ErrorCode` answers one request (``subscribe``, ``publish``, …) in an
  ``error`` frame; the connection stays open. The range tells the client whether
  the request may succeed if retried later (temporary) or never will (permanent).
"""

from __future__ import annotations

import enum

__all__ = ["CloseCode", "ErrorCode", "should_reconnect", "is_temporary"]


class CloseCode(enum.IntEnum):
    """Why a connection ended.

    1000–1999 are the standard WebSocket codes rtlink uses with their usual meaning.
    4000–4499 are rtlink codes after which the client reconnects and resumes.
    4500–4999 are rtlink codes after which the client stops.
    """

    NORMAL = 1000
    """The peer closed on purpose. The client does not reconnect."""
    GOING_AWAY = 1001
    """The server is shutting down or restarting. Reconnect (to another node)."""
    ABNORMAL = 1006
    """No close frame: the connection was lost. Never sent; observed by clients."""
    INVALID_PAYLOAD = 1007
    """A message could not be decoded by the connection's codec. Stop."""
    POLICY_VIOLATION = 1008
    """Generic policy violation. Stop."""
    MESSAGE_TOO_BIG = 1009
    """A message exceeded the server's size limit (``welcome.max_message_size``). Stop."""
    INTERNAL_ERROR = 1011
    """Unexpected server failure. Reconnect."""
    SERVICE_RESTART = 1012
    """The server is restarting. Reconnect."""
    TRY_AGAIN_LATER = 1013
    """The server is overloaded. Reconnect after backoff."""

    HEARTBEAT_TIMEOUT = 4000
    """Nothing was heard from the peer in time; the connection is presumed dead. Reconnect."""
    SLOW_CONSUMER = 4001
    """The connection's outbound buffer overflowed. Reconnect and resume: nothing is lost."""
    RECONNECT = 4002
    """The server asks the client to reconnect (e.g. rebalancing). Reconnect."""
    TOKEN_EXPIRED = 4003
    """The connection's credentials expired; reconnect with fresh ones."""

    UNAUTHORIZED = 4500
    """Authentication failed or is missing. Stop."""
    FORBIDDEN = 4501
    """The client is not allowed to connect (e.g. origin not allowed). Stop."""
    UNSUPPORTED_PROTOCOL = 4502
    """The requested protocol version or codec is not supported. Stop."""
    DISCONNECTED = 4503
    """The server disconnected this user on purpose (:meth:`rtlink.Hub.disconnect`). Stop."""


#: Standard WebSocket codes after which a client reconnects.
_RECONNECT_STANDARD = frozenset(
    {CloseCode.GOING_AWAY, CloseCode.ABNORMAL, CloseCode.INTERNAL_ERROR,
     CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER}
)


def should_reconnect(code: int) -> bool:
    """Tell whether a client reconnects after a connection closed with ``code``.

    Unknown codes below 4000 other than the listed WebSocket codes stop the client;
    unknown codes in 4000–4499 reconnect and in 4500–4999 stop, so a newer server
    can add codes that older clients already handle correctly.
    """
    if 4000 <= code <= 4499:
        return True
    if 4500 <= code <= 4999:
        return False
    return code in _RECONNECT_STANDARD


class ErrorCode(enum.IntEnum):
    """Why one request failed. Modelled on HTTP status codes.

    Codes 429 and 500–599 are temporary: the same request may succeed later (a
    client keeps such a publish in its outbox). All others are permanent.
    """

    BAD_REQUEST = 400
    """The frame is malformed: unknown type, missing or ill-typed field."""
    UNAUTHORIZED = 401
    """The connection is not authenticated for this request."""
    FORBIDDEN = 403
    """The identity may not subscribe or publish to this channel."""
    UNKNOWN_CHANNEL = 404
    """No channel rule on the server matches this channel."""
    ALREADY_SUBSCRIBED = 409
    """The connection is already subscribed to this channel."""
    TOO_LARGE = 413
    """A message or its data exceeds the server's limit."""
    INVALID_CHANNEL = 422
    """The channel name is empty, too long or uses characters outside the allowed set."""
    RATE_LIMITED = 429
    """Too many requests; retry later."""
    LIMIT_EXCEEDED = 430
    """A per-connection limit (such as the number of subscriptions) was reached."""
    INTERNAL_ERROR = 500
    """Unexpected server failure; retry later."""
    BACKEND_UNAVAILABLE = 503
    """The server's backend (e.g. Redis) is unavailable; retry later."""


def is_temporary(code: int) -> bool:
    """Tell whether a request that failed with ``code`` may succeed if retried."""
    return code == ErrorCode.RATE_LIMITED or 500 <= code <= 599

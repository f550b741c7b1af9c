"""Exceptions raised by rtlink.

The tree::

    RtlinkError
     ├── InvalidInput            an argument or text is malformed (also a ValueError)
     ├── ProtocolError           a message could not be decoded (carries a CloseCode)
     │    └── FrameError         one frame is invalid (carries an ErrorCode and request id)
     ├── RequestError            the server answered a request with an error frame
     │    ├── SubscribeError       ... for subscribe
     │    ├── PublishError         ... for publish
     │    └── ReadError            ... for a read (history, presence)
     ├── ChannelError            server side: a channel request is refused (ErrorCode)
     ├── AuthenticationError     server side: raised by an authenticate hook to refuse
     │                             (carries the CloseCode: 4500, or 4003 for fresh ones)
     ├── BackendError            the backend failed; ``temporary`` says if a retry may work
     │    └── BackendUnavailable   the backend cannot be reached
     ├── OutboxFull              the client's offline outbox is at its bound
     └── ClientClosed            the client stopped (carries the close code and reason)

Exceptions carry data (codes, request ids), not only text, so that callers can act
on them; messages are for people.
"""

from __future__ import annotations

from .codes import CloseCode, ErrorCode, is_temporary

__all__ = [
    "RtlinkError",
    "InvalidInput",
    "ProtocolError",
    "FrameError",
    "RequestError",
    "SubscribeError",
    "PublishError",
    "ReadError",
    "ChannelError",
    "AuthenticationError",
    "BackendError",
    "BackendUnavailable",
    "OutboxFull",
    "ClientClosed",
]


class RtlinkError(Exception):
    """Base class of every exception rtlink raises on purpose."""


class InvalidInput(RtlinkError, ValueError):
    """An argument or a text is malformed: an invalid channel name, data that a codec
    cannot carry, a bad idempotency key, a cursor or position text that does not parse,
    an unknown option. Refused locally, before anything is sent.

    It is a :class:`ValueError` too, so ``except ValueError`` catches it.
    """


class ProtocolError(RtlinkError):
    """A transport message could not be decoded; the connection must close.

    Attributes:
        code: the :class:`~rtlink.codes.CloseCode` to close the connection with.
    """

    def __init__(self, message: str, code: int = CloseCode.INVALID_PAYLOAD) -> None:
        super().__init__(message)
        self.code = code


class FrameError(ProtocolError):
    """One decoded frame is invalid; the connection stays usable.

    Attributes:
        error_code: the :class:`~rtlink.codes.ErrorCode` for the ``error`` frame.
        request_id: the ``id`` of the offending request frame if it could be read.
    """

    def __init__(
        self,
        message: str,
        error_code: int = ErrorCode.BAD_REQUEST,
        request_id: int | None = None,
    ) -> None:
        super().__init__(message, CloseCode.INVALID_PAYLOAD)
        self.error_code = error_code
        self.request_id = request_id


class RequestError(RtlinkError):
    """The server answered a request with an ``error`` frame.

    Attributes:
        code: the :class:`~rtlink.codes.ErrorCode` the server sent.
        temporary: whether retrying later may succeed.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.temporary = is_temporary(code)


class SubscribeError(RequestError):
    """A subscribe request was refused."""


class PublishError(RequestError):
    """A publish request was refused."""


class ReadError(RequestError):
    """A read request (``history``, ``presence``) was refused."""


class ChannelError(RtlinkError):
    """Server side: a request about a channel is refused.

    Raised by the hub (unknown channel, invalid name, not allowed) and turned into an
    ``error`` frame for client requests.

    Attributes:
        code: the :class:`~rtlink.codes.ErrorCode` to answer with.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class AuthenticationError(RtlinkError):
    """Raise it from a hub's ``authenticate`` hook to refuse a connection.

    The connection is refused with ``code`` and the message as the reason: by default
    :attr:`~rtlink.codes.CloseCode.UNAUTHORIZED` (4500), after which the client stops;
    :attr:`~rtlink.codes.CloseCode.TOKEN_EXPIRED` (4003) for credentials that were
    good but are used up (a single-use ticket used already, or expired), after which
    the client reconnects with fresh ones.

    Attributes:
        code: the close code of the refusal.
    """

    def __init__(self, message: str = "", code: int = CloseCode.UNAUTHORIZED) -> None:
        super().__init__(message)
        self.code = code


class BackendError(RtlinkError):
    """The backend failed to carry out an operation.

    Attributes:
        temporary: whether the same operation may succeed later.
    """

    temporary = False


class BackendUnavailable(BackendError):
    """The backend cannot be reached right now (e.g. Redis is down). Retry later."""

    temporary = True


class OutboxFull(RtlinkError):
    """The client's outbox of not-yet-acknowledged publishes is at its bound."""


class ClientClosed(RtlinkError):
    """The client stopped and will not reconnect.

    Attributes:
        code: the close code that stopped it.
        reason: the reason text sent with the close code, if any.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"client closed: {reason or 'no reason'} (code {code})")
        self.code = code
        self.reason = reason

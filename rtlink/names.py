"""The names the protocol carries as text, and their rules (docs/protocol.md 9).

Channel names, idempotency keys and epochs are strings with a bounded length; none
may hold a lone surrogate (a JSON ``\\ud800`` escape decodes to one, but no codec can
encode it). The rules are here, below :mod:`rtlink.protocol` (frames) and
:mod:`rtlink.positions` (cursors), which both check names. The JavaScript client
applies the same rules before sending (``js-client/src/names.js``).

Pure: plain functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from .codes import ErrorCode
from .errors import FrameError

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "MAX_KEY_LENGTH",
    "LONE_SURROGATE",
    "is_text",
    "validate_channel",
    "validate_key",
]

MAX_CHANNEL_LENGTH = 255
MAX_KEY_LENGTH = 128

_CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-.:@/=+,#]+")
#: Matches a lone surrogate: text holding one cannot be encoded by any codec.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def is_text(value: Any, max_length: int) -> TypeGuard[str]:
    """Whether ``value`` is a string of 1 to ``max_length`` characters (code points)
    without lone surrogates: the rule for keys and epochs."""
    return (isinstance(value, str) and 0 < len(value) <= max_length
            and not LONE_SURROGATE.search(value))


def validate_channel(channel: Any, request_id: int | None = None) -> str:
    """Return ``channel`` if it is a valid channel name, else raise :class:`FrameError`.

    A channel name is 1–255 characters from ``A-Z a-z 0-9 _ - . : @ / = + , #``.
    ``*`` and ``?`` are reserved for channel patterns on the server.

    Args:
        channel: the name to check.
        request_id: the id of the frame it came in, for the error.

    Raises:
        FrameError: 400 when it is not a string, 422 (``INVALID_CHANNEL``) when it
            breaks the rule.
    """
    if not isinstance(channel, str):
        raise FrameError("channel must be a string", ErrorCode.BAD_REQUEST, request_id)
    if not 0 < len(channel) <= MAX_CHANNEL_LENGTH or not _CHANNEL_RE.fullmatch(channel):
        raise FrameError(
            f"invalid channel name {channel[:64]!r}: 1-{MAX_CHANNEL_LENGTH} characters "
            "from A-Z a-z 0-9 _ - . : @ / = + , #",
            ErrorCode.INVALID_CHANNEL,
            request_id,
        )
    return channel


def validate_key(key: Any, request_id: int | None = None) -> str | None:
    """Return ``key`` if it is None or a valid idempotency key, else raise
    :class:`FrameError` (400).

    An idempotency key is a string of 1–128 characters, any except lone surrogates
    (which no codec can carry).

    Args:
        key: the key to check.
        request_id: the id of the frame it came in, for the error.
    """
    if key is None:
        return None
    if not isinstance(key, str) or LONE_SURROGATE.search(key):
        raise FrameError("key must be a string", request_id=request_id)
    if not is_text(key, MAX_KEY_LENGTH):
        raise FrameError(f"key must have 1-{MAX_KEY_LENGTH} characters", request_id=request_id)
    return key

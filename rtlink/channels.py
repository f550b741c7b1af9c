"""Channel rules: per-pattern options such as history bounds and client publishing."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import attrs

from .backends.base import HistoryPolicy
from .codes import ErrorCode
from .errors import ChannelError, FrameError
from .protocol import validate_channel, validate_data

__all__ = ["ChannelOptions", "ChannelRules"]


@attrs.frozen
class ChannelOptions:
    """Options for the channels matching one pattern.

    Attributes:
        history_size: publications kept per channel for resume (0 disables resume).
        history_ttl: seconds a publication stays in history.
        client_publish: whether clients may publish (server-side ``hub.publish`` is
            always allowed). Off by default: clients only listen unless a channel
            says otherwise.
        key_ttl: seconds an idempotency key is remembered, i.e. how long after a
            publish a retry with the same key is still recognised as a duplicate.
    """

    history_size: int = attrs.field(default=100, validator=attrs.validators.ge(0))
    history_ttl: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    client_publish: bool = False
    key_ttl: float = attrs.field(default=600.0, validator=attrs.validators.gt(0))

    @property
    def policy(self) -> HistoryPolicy:
        """The history policy handed to the backend."""
        return HistoryPolicy(size=self.history_size, ttl=self.history_ttl, key_ttl=self.key_ttl)


class ChannelRules:
    """Maps channel names to :class:`ChannelOptions` by glob patterns, first match wins.

    Patterns use :func:`fnmatch.fnmatchcase` syntax (``*``, ``?``, ``[…]``), so
    ``"chat:*"`` matches ``"chat:lobby"``. A channel that matches no pattern is unknown
    and refused with :attr:`~rtlink.codes.ErrorCode.UNKNOWN_CHANNEL`.
    """

    _CACHE_SIZE = 10_000

    def __init__(self, rules: Mapping[str, ChannelOptions] | None = None) -> None:
        self._rules: list[tuple[str, ChannelOptions]] = list(
            (rules if rules is not None else {"*": ChannelOptions()}).items()
        )
        self._cache: dict[str, ChannelOptions | None] = {}

    def match(self, channel: str) -> ChannelOptions | None:
        """Return the options of the first pattern matching ``channel``, or None."""
        try:
            return self._cache[channel]
        except KeyError:
            pass
        found = next(
            (options for pattern, options in self._rules if fnmatch.fnmatchcase(channel, pattern)),
            None,
        )
        if len(self._cache) >= self._CACHE_SIZE:
            self._cache.clear()  # crude but bounded; matching is cheap to redo
        self._cache[channel] = found
        return found

    def options(self, channel: str) -> ChannelOptions:
        """Like :meth:`match` but raise :class:`ChannelError` (404) for unknown channels."""
        options = self.match(channel)
        if options is None:
            raise ChannelError(ErrorCode.UNKNOWN_CHANNEL, f"unknown channel {channel!r}")
        return options

    def check_publication(self, channel: str, data: Any) -> ChannelOptions:
        """Validate a server-side publish and return the channel's options.

        Raises:
            ChannelError: invalid or unknown channel, or data no codec can carry.
        """
        try:
            validate_channel(channel)
            validate_data(data)
        except FrameError as exc:
            raise ChannelError(exc.error_code, str(exc)) from None
        return self.options(channel)

"""Channel rules: per-pattern options such as history bounds, client publishing and
who may subscribe.

Access to a channel, checked for every subscribe and client publish (server-side
``hub.publish`` is never restricted):

* no pattern matches → 404 ``UNKNOWN_CHANNEL``;
* ``subscribe="authenticated"`` and an anonymous connection (identity None) → 401
  ``UNAUTHORIZED``;
* a pattern with ``{user}`` is owned by the user it captures: an anonymous connection
  gets 401, one whose subject (:func:`rtlink.auth.subject_of`) is another user 403
  ``FORBIDDEN``.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .auth import subject_of
from .backends.base import HistoryPolicy
from .codes import ErrorCode
from .errors import ChannelError, FrameError
from .protocol import validate_channel, validate_data, validate_key

__all__ = ["ChannelOptions", "ChannelRules", "ChannelMatch", "USER_PLACEHOLDER"]

#: The placeholder of owned channel patterns: one run of channel characters without ``:``.
USER_PLACEHOLDER = "{user}"


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
        subscribe: who may subscribe (and, with ``client_publish``, publish):
            ``"anyone"``, or ``"authenticated"`` (anonymous connections get 401).
        presence: keep the channel's presence: who is subscribed (a ``presence``
            read), with join/leave events for subscribers that ask for them
            (docs/protocol.md 6.8). Off by default: it costs backend writes per
            subscriber.
    """

    history_size: int = attrs.field(default=100, validator=attrs.validators.ge(0))
    history_ttl: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    client_publish: bool = False
    key_ttl: float = attrs.field(default=600.0, validator=attrs.validators.gt(0))
    subscribe: Literal["anyone", "authenticated"] = attrs.field(
        default="anyone", validator=attrs.validators.in_(("anyone", "authenticated")))
    presence: bool = False

    # Made once: the policy is handed to the backend on every publish.
    _policy: HistoryPolicy = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_policy", HistoryPolicy(
            size=self.history_size, ttl=self.history_ttl, key_ttl=self.key_ttl))

    @property
    def policy(self) -> HistoryPolicy:
        """The history policy handed to the backend."""
        return self._policy


@attrs.frozen
class ChannelMatch:
    """The rule a channel name matched.

    Attributes:
        options: the options of the matching pattern.
        owner: for a pattern with ``{user}``, the user it captured (only that user
            may subscribe and publish); None for other patterns.
    """

    options: ChannelOptions
    owner: str | None = None


def _glob_regex(glob: str) -> str:
    """The body of :func:`fnmatch.translate`'s regex for ``glob`` (no anchors or flags)."""
    translated = fnmatch.translate(glob)
    if not (translated.startswith("(?s:") and translated.endswith(r")\Z")):
        raise RuntimeError(f"unexpected fnmatch.translate output {translated!r}")
    return translated[4:-3]


def _compile(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A pattern's regex, and whether it has the ``{user}`` placeholder (group ``user``).

    Raises:
        ValueError: more than one ``{user}``, braces that are not ``{user}``, or a
            ``*`` right next to ``{user}``.
    """
    parts = pattern.split(USER_PLACEHOLDER)
    if len(parts) > 2:
        raise ValueError(f"channel pattern {pattern!r}: {USER_PLACEHOLDER} may appear once")
    if any("{" in part or "}" in part for part in parts):
        raise ValueError(f"channel pattern {pattern!r}: the only placeholder is "
                         f"{USER_PLACEHOLDER} (channel names cannot contain braces)")
    if len(parts) == 1:
        return re.compile(fnmatch.translate(pattern)), False
    head, tail = parts
    if head.endswith("*") or tail.startswith("*"):
        # "*{user}" could split "xalice" anywhere: the owner would be a guess.
        raise ValueError(f"channel pattern {pattern!r}: {USER_PLACEHOLDER} must not touch "
                         "a '*' (put a ':' between them)")
    return re.compile(f"(?s:{_glob_regex(head)}(?P<user>[^:]+){_glob_regex(tail)})\\Z"), True


class ChannelRules:
    """Maps channel names to :class:`ChannelOptions` by glob patterns, first match wins.

    Patterns use :func:`fnmatch.fnmatchcase` syntax (``*``, ``?``, ``[…]``), so
    ``"chat:*"`` matches ``"chat:lobby"``, plus the placeholder ``{user}``: one run of
    channel characters without ``:``, whose value owns the channel (``"user:{user}:*"``
    matches ``"user:alice:notes"``, owned by ``alice``). A channel that matches no
    pattern is unknown and refused with :attr:`~rtlink.codes.ErrorCode.UNKNOWN_CHANNEL`.

    Raises:
        ValueError: a pattern with ``{user}`` twice, with other braces, or with a
            ``*`` right next to ``{user}``.
    """

    #: Channel names whose rule is remembered. Sized for per-user channels: a miss
    #: costs a regex match per pattern, a remembered name about 100 bytes.
    _CACHE_SIZE = 100_000

    def __init__(self, rules: Mapping[str, ChannelOptions] | None = None) -> None:
        self._rules: list[tuple[re.Pattern[str], bool, ChannelOptions]] = [
            (*_compile(pattern), options)
            for pattern, options in (rules if rules is not None
                                     else {"*": ChannelOptions()}).items()
        ]
        self._cache: dict[str, ChannelMatch | None] = {}

    def lookup(self, channel: str) -> ChannelMatch | None:
        """Return the rule of the first pattern matching ``channel``, or None."""
        try:
            return self._cache[channel]
        except KeyError:
            pass
        found = None
        for regex, owned, options in self._rules:
            matched = regex.match(channel)
            if matched is not None:
                found = ChannelMatch(options, matched.group("user") if owned else None)
                break
        cache = self._cache
        if len(cache) >= self._CACHE_SIZE:
            # Forget the oldest quarter (dicts keep insertion order): the names in use
            # now were mostly looked up recently, and stay.
            for name in list(itertools.islice(cache, self._CACHE_SIZE // 4)):
                del cache[name]
        self._cache[channel] = found
        return found

    def match(self, channel: str) -> ChannelOptions | None:
        """Return the options of the first pattern matching ``channel``, or None."""
        found = self.lookup(channel)
        return None if found is None else found.options

    def options(self, channel: str) -> ChannelOptions:
        """Like :meth:`match` but raise :class:`ChannelError` (404) for unknown channels."""
        options = self.match(channel)
        if options is None:
            raise ChannelError(ErrorCode.UNKNOWN_CHANNEL, f"unknown channel {channel!r}")
        return options

    def check_access(self, identity: Any, channel: str) -> ChannelOptions:
        """Check that ``identity`` may subscribe (or client-publish) to ``channel``.

        Returns the channel's options.

        Raises:
            ChannelError: 404 unknown channel; 401 an anonymous identity (None) on a
                channel that needs authentication or has an owner; 403 the channel
                is owned by another user.
        """
        found = self.lookup(channel)
        if found is None:
            raise ChannelError(ErrorCode.UNKNOWN_CHANNEL, f"unknown channel {channel!r}")
        if identity is None and (found.owner is not None
                                 or found.options.subscribe == "authenticated"):
            raise ChannelError(ErrorCode.UNAUTHORIZED,
                               f"authentication required for {channel!r}")
        if found.owner is not None and subject_of(identity) != found.owner:
            raise ChannelError(ErrorCode.FORBIDDEN, f"{channel!r} belongs to another user")
        return found.options

    def check_publication(self, channel: str, data: Any,
                          key: str | None = None) -> ChannelOptions:
        """Validate a server-side publish and return the channel's options.

        Raises:
            ChannelError: invalid or unknown channel, data no codec can carry, or an
                idempotency key that is not 1-128 characters.
        """
        try:
            validate_channel(channel)
            validate_data(data)
            validate_key(key)
        except FrameError as exc:
            raise ChannelError(exc.error_code, str(exc)) from None
        return self.options(channel)

"""The backend contract: what a hub needs from the engine that stores and routes publications.

A backend owns three things and nothing else (no HTTP, no connections):

* **positions** — :meth:`Backend.publish` gives each publication the next offset of its
  channel and the channel's epoch, atomically with storing it in history and with
  de-duplication by idempotency key;
* **history** — :meth:`Backend.history` returns what follows a position, or says the
  gap cannot be filled; :meth:`Backend.page` returns a window of what is kept (pages
  of history); :meth:`Backend.replay`, what a subscription replays (the gap, else the
  latest kept), has a default made of the two;
* **claims** — :meth:`Backend.claim` marks a key as used for a while (single-use
  authentication tickets); the base class keeps claims in this process, a shared
  engine overrides it so that every node sees them;
* **presence** (optional) — :meth:`Backend.presence_update`,
  :meth:`Backend.presence_remove` and :meth:`Backend.presence_read` keep the members
  of presence channels for every node, each entry expiring unless refreshed; every
  join and leave (an expiry included) is announced once, to every node, through the
  listener given to :meth:`Backend.set_presence_listener`. A backend without it
  raises :class:`~rtlink.errors.BackendError` there (the default);
* **node fan-in** — between :meth:`Backend.subscribe` and :meth:`Backend.unsubscribe`
  of a channel, every publication of that channel, from any node, is handed to the
  listener given to :meth:`Backend.start`, in offset order, exactly once. A backend
  that cannot keep that promise for a while (a network engine whose connection
  dropped, whose history was lost meanwhile) says so by calling the ``on_lost``
  listener with the channel before it hands over anything that follows the gap;
* **control messages** — :meth:`Backend.send_control` carries an opaque message to
  every node's hub (or to one node), and :meth:`Backend.start_control` receives
  them: how the server API (:meth:`rtlink.Hub.disconnect`, ...) reaches clients
  connected to other nodes. The base class delivers them within this process, which
  is right for a **single node only**; a backend shared by several nodes overrides
  both (see :mod:`rtlink.control` for what the messages say).

Epochs are per channel: a channel's stream gets a fresh random epoch whenever its
history is created anew (first publish, backend restart, expired stream), so a client
position from a lost history can never be mistaken for a position in the new one.
"""

from __future__ import annotations

import abc
import heapq
import time
from collections.abc import Callable, Sequence

import attrs

from ..errors import BackendError, BackendUnavailable
from ..presence import Member
from ..protocol import MAX_SAFE_INTEGER, Position, Publication

__all__ = [
    "Backend",
    "HistoryPolicy",
    "PublishResult",
    "HistoryResult",
    "page_bounds",
    "PublicationListener",
    "LostListener",
    "PresenceListener",
    "ControlListener",
    "LocalClaims",
]

#: Called by the backend for each publication of a subscribed channel.
PublicationListener = Callable[[Publication], None]
#: Called by the backend with a subscribed channel whose publications it could not all
#: deliver (they are gone from history); its subscribers must resubscribe.
LostListener = Callable[[str], None]
#: Called by the backend for presence changes of a channel: ``(channel, joins,
#: leaves, count)``, ``count`` being the channel's member count after them. Each
#: change is announced to every node's listener exactly once, in the order made.
PresenceListener = Callable[[str, Sequence[Member], Sequence[Member], int], None]
#: Called by the backend with each control message sent to this node (see
#: :meth:`Backend.send_control`); the message is the sender's bytes, unchanged.
ControlListener = Callable[[bytes], None]


@attrs.frozen
class HistoryPolicy:
    """How much history a channel keeps, and how long publish keys are remembered.

    Attributes:
        size: at most this many latest publications are kept (0 keeps none).
        ttl: seconds a publication stays in history.
        key_ttl: seconds an idempotency key is remembered for de-duplication.
    """

    size: int = 100
    ttl: float = 300.0
    key_ttl: float = 600.0


@attrs.frozen
class PublishResult:
    """What :meth:`Backend.publish` did.

    Attributes:
        position: the position of the publication (the original one for a duplicate).
        duplicate: True when the key was seen before and nothing was published.
    """

    position: Position
    duplicate: bool = False


@attrs.frozen
class HistoryResult:
    """The answer of :meth:`Backend.history`.

    Attributes:
        publications: the publications after ``since``, oldest first (empty unless
            ``recovered``).
        position: the channel's latest position (offset 0 if nothing was published in
            this epoch).
        recovered: True when every publication after ``since`` is in ``publications``.
    """

    publications: list[Publication]
    position: Position
    recovered: bool


def page_bounds(since: Position | None, epoch: str, top: int, oldest: int, newest: int,
                limit: int, reverse: bool) -> tuple[int, int, bool]:
    """The window of one history page (:meth:`Backend.page`), for backends whose kept
    offsets are consecutive: the first and last offset to return (none when the last
    is below the first) and ``recovered``.

    Args:
        since: the reader's position, or None.
        epoch: the channel's current epoch.
        top: its latest offset.
        oldest: the oldest offset kept (``top + 1`` when nothing is kept).
        newest: the newest offset kept (``top`` when nothing is kept).
        limit: publications at most.
        reverse: the window ends before ``since`` (or at the newest) instead of
            starting after it (or at the oldest).
    """
    known = since is not None and since.epoch == epoch and since.offset <= top
    if reverse:
        last = since.offset - 1 if known and since is not None else newest
        return max(oldest, last - limit + 1), min(last, newest), since is None or known
    # Forward: recovered when nothing between ``since`` and the window was trimmed.
    if known and since is not None and since.offset + 1 >= oldest:
        first, recovered = since.offset + 1, True
    else:
        first, recovered = oldest, since is None
    return first, min(newest, first + limit - 1), recovered


def _latest(last: int | None, policy: HistoryPolicy) -> int:
    """How many of the latest publications a replay reads: ``last``, or all (None),
    at most what the channel keeps."""
    return min(last or MAX_SAFE_INTEGER, max(policy.size, 1))


class LocalClaims:
    """Claimed keys of one process, each forgotten once its TTL has passed.

    What :meth:`Backend.claim` uses unless a backend overrides it: right for a single
    node only, since other processes cannot see these claims.

    Args:
        max_claims: live claims kept at most. When that many are live, :meth:`claim`
            raises :class:`~rtlink.errors.BackendUnavailable` rather than forget one
            early (forgetting would let a single-use ticket be used twice).
        clock: monotonic time in seconds; inject a fake one to drive TTLs in tests.
    """

    def __init__(self, max_claims: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_claims < 1:
            raise ValueError("max_claims must be >= 1")
        self.max_claims = max_claims
        self._clock = clock
        self._expiry: dict[str, float] = {}
        # Expiry order, for pruning without a scan; entries of re-claimed keys go stale
        # and are skipped.
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        """Claims held right now, expired ones not yet pruned included."""
        return len(self._expiry)

    def claim(self, key: str, ttl: float) -> bool:
        """True if ``key`` was not claimed within its TTL, and claim it for ``ttl`` seconds.

        Raises:
            BackendUnavailable: ``max_claims`` claims are live (retry later).
        """
        now = self._clock()
        self._prune(now)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.max_claims:
            raise BackendUnavailable(f"too many live claims (max_claims={self.max_claims})")
        expires = now + ttl
        self._expiry[key] = expires
        heapq.heappush(self._heap, (expires, key))
        return True

    def _prune(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            if self._expiry.get(key) == expires:
                del self._expiry[key]


class Backend(abc.ABC):
    """Base class of backends. Subclass it to plug in another engine.

    All methods are coroutines so that network backends fit; a backend is used from
    one event loop.
    """

    #: The claims of :meth:`claim`'s default implementation, created on first use (a
    #: subclass may set its own, e.g. one with the backend's clock).
    _local_claims: LocalClaims | None = None
    #: This node's name and listener, for the default control messages (in-process).
    _control: tuple[str, ControlListener] | None = None

    @abc.abstractmethod
    async def start(self, listener: PublicationListener, on_lost: LostListener) -> None:
        """Connect, and from now on hand publications of subscribed channels to ``listener``.

        ``on_lost(channel)`` is called when publications of a subscribed channel could
        not be delivered and cannot be recovered from history either (a backend that
        never loses any, like the memory backend, never calls it).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource. The backend is not used afterwards."""

    @abc.abstractmethod
    async def publish(
        self, channel: str, data: object, *, key: str | None, policy: HistoryPolicy
    ) -> PublishResult:
        """Assign the next position, store in history, and deliver to every node.

        When ``key`` was already used on this channel within ``policy.key_ttl``,
        nothing is published and the earlier position is returned with
        ``duplicate=True``.

        Raises:
            BackendUnavailable: the engine cannot be reached; nothing was published.
        """

    #: An in-process backend that publishes without waiting (the memory backend) sets
    #: this to a method ``(channel, data, key, policy) -> (position, duplicate)`` doing
    #: what :meth:`publish` does, synchronously; None (the default) means "await
    #: :meth:`publish`". The hub takes it when it is there: a publication then costs no
    #: coroutine and no :class:`PublishResult` (per-user channels, one publication each).
    publish_now: Callable[[str, object, str | None, HistoryPolicy],
                          tuple[Position, bool]] | None = None

    @abc.abstractmethod
    async def history(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy
    ) -> HistoryResult:
        """Return the publications after ``since`` and the channel's current position.

        ``since=None`` asks only for the current position (``recovered`` is True).
        The gap is filled (``recovered=True``) only when ``since`` is in the channel's
        current epoch, not past its latest offset, and every publication after it is
        still in history; otherwise ``recovered=False`` and no publications.

        Raises:
            BackendUnavailable: the engine cannot be reached.
        """

    async def page(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy, limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        """A window of the channel's kept history: at most ``limit`` publications of
        its current epoch, oldest first, and its current position.

        Forward (``reverse=False``): the first ``limit`` after ``since``; when ``since``
        is None, or not a position of the current epoch up to its top, or the
        publications right after it are gone, from the oldest kept instead.
        ``reverse=True``: the last ``limit`` before ``since``; when ``since`` is None or
        not a position of the current epoch up to its top, the latest ``limit``.
        ``recovered`` is True when ``since`` is None or was honoured (see
        :func:`page_bounds`, which backends with consecutive offsets can use).

        Serves history pages (:meth:`rtlink.Hub.history`) and the replay of a
        subscription with ``last`` or a ``since`` that cannot be recovered. The default
        implementation keeps the methods a backend had before pages existed working:
        it reads no publications (a subscription then replays nothing).

        Raises:
            BackendUnavailable: the engine cannot be reached.
        """
        result = await self.history(channel, None, policy=policy)
        return HistoryResult([], result.position, since is None)

    async def replay(
        self, channel: str, since: Position | None, *, policy: HistoryPolicy,
        last: int | None = None,
    ) -> HistoryResult:
        """What a subscription replays (protocol.md 6.2): the gap after ``since`` when
        it can be filled (:meth:`history`); otherwise, when ``since`` or ``last`` was
        given, the latest publications the channel's current epoch keeps, at most
        ``last`` (all of them without), oldest first, with ``recovered`` False when
        ``since`` was given; with neither, only the current position.

        The default is :meth:`history`, then :meth:`page` when the gap cannot be
        filled; a network backend may do both in one round trip.

        Raises:
            BackendUnavailable: the engine cannot be reached.
        """
        if since is not None or last is None:
            result = await self.history(channel, since, policy=policy)
            if since is None or result.recovered or policy.size <= 0 or policy.ttl <= 0:
                return result  # recovered, or nothing is kept to replay
        page = await self.page(channel, None, policy=policy,
                               limit=_latest(last, policy), reverse=True)
        return HistoryResult(page.publications, page.position, since is None)

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start handing this channel's publications to the listener (node level)."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop handing this channel's publications to the listener."""

    async def claim(self, key: str, ttl: float) -> bool:
        """Claim ``key`` for ``ttl`` seconds: True the first time, False while it is claimed.

        Used for single-use authentication tickets (:class:`rtlink.auth.TokenAuth`).
        After ``ttl`` seconds the key may be claimed again. The default keeps claims
        in this process (:class:`LocalClaims`), which is right for a **single node
        only**; a backend shared by several nodes overrides it so that a key claimed
        on one node is claimed for all.

        Raises:
            BackendUnavailable: the claim could not be recorded now; retry later.
        """
        claims = self._local_claims
        if claims is None:
            claims = self._local_claims = LocalClaims()
        return claims.claim(key, ttl)

    # --- presence (optional) ---------------------------------------------------------

    def set_presence_listener(self, listener: PresenceListener) -> None:  # noqa: B027
        """From now on, hand every announced presence change to ``listener`` (called by
        the hub before :meth:`start`). A backend without presence ignores it."""

    async def presence_update(self, channel: str, members: Sequence[Member],
                              ttl: float) -> None:
        """Add or refresh ``members`` of ``channel``, each to expire ``ttl`` seconds
        from now unless updated again; announce those that were not members as joins.
        Also remove the members whose time is up and announce them as leaves (so
        every node that updates a channel sweeps it; ``members`` may be empty).

        Raises:
            BackendUnavailable: the engine cannot be reached (try again later).
            BackendError: this backend keeps no presence.
        """
        raise BackendError(f"{type(self).__name__} keeps no presence")

    async def presence_remove(self, channel: str, members: Sequence[Member]) -> None:
        """Remove ``members`` from ``channel`` (those present announced as leaves).

        Raises:
            BackendUnavailable: the engine cannot be reached (they expire anyway).
            BackendError: this backend keeps no presence.
        """
        raise BackendError(f"{type(self).__name__} keeps no presence")

    async def presence_read(self, channel: str, limit: int) -> tuple[int, list[Member]]:
        """The members of ``channel`` (expired ones removed and announced first): how
        many there are, and at most ``limit`` of them.

        Raises:
            BackendUnavailable: the engine cannot be reached.
            BackendError: this backend keeps no presence.
        """
        raise BackendError(f"{type(self).__name__} keeps no presence")

    async def start_control(self, node: str, listener: ControlListener) -> None:
        """From now on, hand ``listener`` every control message sent to all nodes or to
        ``node`` (this node's name, unique among the nodes sharing the backend), until
        :meth:`close`.

        The default is for a single node: messages stay in this process. A backend
        shared by several nodes overrides it, and :meth:`send_control`, together.
        Returns once messages are received (or, for a network engine that cannot be
        reached now, once it keeps trying in the background).
        """
        self._control = (node, listener)

    async def send_control(self, message: bytes, node: str | None = None) -> int | None:
        """Send ``message`` to every node's control listener (``node`` None), this one
        included, or to the node named ``node`` only; at most once each. This node's
        listener may be called before this returns (the default calls it at once).

        Returns:
            How many nodes it reached (0: none listens), or None when the backend
            cannot tell.

        Raises:
            BackendUnavailable: the engine cannot be reached; nobody got it.
        """
        control = self._control
        if control is None or (node is not None and node != control[0]):
            return 0
        control[1](message)
        return 1

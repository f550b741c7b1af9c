"""Negotiation: which transport to try next, when, and what to remember (protocol.md 8.7).

A client walks down its list of transports (WebSocket, SSE, long polling) when one
fails its health check or goes silent, backs off when the whole list failed, and moves
back up when a background probe finds a better one working again. What worked is
remembered per origin for a while (:data:`REMEMBER_TRANSPORT_FOR`), so that the next
client of the page or process starts there.

Pure: no asyncio, no I/O; the time comes from a clock that tests replace. The asyncio
client (:mod:`rtlink.client.client`) asks a :class:`Negotiation` what to do after each
connection; the JavaScript client has the same class in ``js-client/src/negotiation.js``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..backoff import full_jitter
from ..codes import CloseCode, should_reconnect

__all__ = [
    "REMEMBER_TRANSPORT_FOR",
    "Negotiation",
    "remember_transport",
    "remembered_transport",
    "forget_transports",
]

#: Seconds a transport that worked for an origin is tried first by new clients.
REMEMBER_TRANSPORT_FOR = 600.0
#: origin -> (transport name, until), for every client of the process.
_working_transports: dict[str, tuple[str, float]] = {}


def remember_transport(origin: str, name: str, now: float) -> None:
    """Remember that transport ``name`` worked for ``origin`` at time ``now``."""
    _working_transports[origin] = (name, now + REMEMBER_TRANSPORT_FOR)


def remembered_transport(origin: str, now: float) -> str | None:
    """The transport that worked for ``origin`` within :data:`REMEMBER_TRANSPORT_FOR`
    before ``now``, if any."""
    name, until = _working_transports.get(origin, ("", 0.0))
    return name if until > now else None


def forget_transports() -> None:
    """Forget which transports worked for which origins (new clients start at the top)."""
    _working_transports.clear()


class Negotiation:
    """One client's way along its transports, and its reconnect backoff.

    Args:
        transports: transport names, best first.
        origin: the server's origin, under which working transports are remembered.
        backoff_base: first reconnect delay bound in seconds (doubles per attempt).
        backoff_cap: largest reconnect delay bound in seconds.
        clock: the time in seconds (monotonic).

    Attributes:
        transports: the transport names, best first.
        index: the index of the transport to try next (or in use).
        fallback: why the client fell back to that transport (``"health_check"`` or
            ``"silent"``), for the first request of the next attempt only; else None.
        worked: the transports that got a ``welcome`` in this client.
    """

    def __init__(self, transports: Sequence[str], origin: str, *, backoff_base: float = 0.5,
                 backoff_cap: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.transports = tuple(transports)
        self.origin = origin
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self.index = 0
        self.fallback: str | None = None
        self.worked: set[str] = set()
        self._strikes = 0  # consecutive failures of the current transport
        self._attempt = 0  # backoff attempts since the last working connection
        self._switch_to: int | None = None

    @property
    def transport(self) -> str:
        """The name of the transport to try next (or in use)."""
        return self.transports[self.index]

    @property
    def switching(self) -> bool:
        """Whether a probe found a better transport: the connection ends to go there."""
        return self._switch_to is not None

    def restart(self) -> str:
        """Start again from the best transport known to work: one that worked in this
        client, else the one remembered for the origin, else the first. Returns it."""
        self.index = self._initial()
        self._strikes = 0
        return self.transport

    def _initial(self) -> int:
        for index, name in enumerate(self.transports):
            if name in self.worked:
                return index
        remembered = remembered_transport(self.origin, self.clock())
        if remembered in self.transports:
            return self.transports.index(remembered)
        return 0

    def connected(self) -> None:
        """The current transport passed its health check (a ``welcome`` arrived)."""
        self.worked.add(self.transport)
        remember_transport(self.origin, self.transport, self.clock())

    def better(self) -> tuple[str, ...]:
        """The transports better than the current one, best first: what to probe."""
        return self.transports[: self.index]

    def probe_passed(self, index: int) -> None:
        """A probe found the transport at ``index`` working: the next attempt goes there
        at once (the caller ends the current connection)."""
        self._switch_to = index

    def ended(self, code: int, connected: bool, requested: bool = False) -> float | None:
        """A connection attempt ended with close ``code``: decide the next one.

        A transport that never answered (no ``welcome``), or that went silent, gets a
        strike. One that never worked in this client falls back at its first strike,
        one that worked at its second in a row (a single drop is usually the network,
        not the proxy); falling back means the next transport at once. When the last
        one fails too, the client backs off and starts again from :meth:`restart`.

        Args:
            code: the close code seen (1006 when none).
            connected: whether the connection had received ``welcome``.
            requested: whether the application asked for the reconnection (never a
                strike).

        Returns:
            None when the code says stop; else the delay in seconds before the next
            attempt (0: at once), whose transport is :attr:`transport`.
        """
        self.fallback = None  # said by the attempt it explains, not by later ones
        if not should_reconnect(code):
            return None
        if self._switch_to is not None:
            self.index, self._switch_to = self._switch_to, None
            self._strikes = self._attempt = 0
            return 0.0
        failed = not requested and (not connected or code == CloseCode.HEARTBEAT_TIMEOUT)
        self._strikes = self._strikes + 1 if failed else 0
        if connected:
            self._attempt = 0
        if failed and (self.transport not in self.worked or self._strikes >= 2):
            self._strikes = 0
            if self.index + 1 < len(self.transports):
                self.index += 1
                # The next transport's first request says why (8.7): servers count it.
                self.fallback = "silent" if connected else "health_check"
                return 0.0  # the next transport at once: no backoff
            self.index = self._initial()  # all failed: start over after backoff
        delay = full_jitter(self._attempt, self.backoff_base, self.backoff_cap)
        self._attempt += 1
        return delay

"""Negotiation (protocol.md 8.2, 8.7): which transport next, when, and what is
remembered. Plain calls, no event loop; the clock is a number the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import rtlink.client.negotiation as negotiation_module
from rtlink.client.negotiation import (
    REMEMBER_TRANSPORT_FOR,
    Negotiation,
    forget_transports,
    remember_transport,
    remembered_transport,
)
from rtlink.codes import CloseCode

ALL = ("websocket", "sse", "longpoll")
ORIGIN = "http://example.test"
ABNORMAL, SILENT = CloseCode.ABNORMAL, CloseCode.HEARTBEAT_TIMEOUT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    forget_transports()
    yield
    forget_transports()


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The backoff attempts asked for; each delay is 1 + the attempt (never 0)."""
    asked: list[int] = []

    def delay(attempt: int, base: float, cap: float) -> float:
        asked.append(attempt)
        return 1.0 + attempt

    monkeypatch.setattr(negotiation_module, "full_jitter", delay)
    return asked


def negotiation(transports: tuple[str, ...] = ALL, clock: Clock | None = None) -> Negotiation:
    chosen = Negotiation(transports, ORIGIN, clock=clock or Clock())
    chosen.restart()
    return chosen


def test_starts_with_the_first_transport() -> None:
    assert negotiation().transport == "websocket"
    assert negotiation(("longpoll", "sse")).transport == "longpoll"


def test_a_transport_that_never_worked_falls_back_at_its_first_failure(attempts) -> None:
    chosen = negotiation()
    assert chosen.ended(ABNORMAL, connected=False) == 0  # at once, no backoff
    assert (chosen.transport, chosen.fallback) == ("sse", "health_check")
    assert chosen.ended(ABNORMAL, connected=False) == 0
    assert (chosen.transport, chosen.fallback) == ("longpoll", "health_check")
    # The last one failed too: back off, and start again from the top.
    assert chosen.ended(ABNORMAL, connected=False) == 1.0
    assert (chosen.transport, chosen.fallback) == ("websocket", None)
    assert chosen.ended(ABNORMAL, connected=False) == 0
    assert attempts == [0]


def test_a_transport_that_worked_falls_back_at_its_second_failure_in_a_row(attempts) -> None:
    chosen = negotiation()
    chosen.connected()
    # Went silent once: the same transport again after backoff (a drop is usually
    # the network, not the proxy).
    assert chosen.ended(SILENT, connected=True) == 1.0
    assert chosen.transport == "websocket"
    # ... and then no welcome: the second strike in a row.
    assert chosen.ended(ABNORMAL, connected=False) == 0
    assert (chosen.transport, chosen.fallback) == ("sse", "health_check")


def test_a_transport_that_went_silent_twice_falls_back_saying_silent(attempts) -> None:
    chosen = negotiation()
    chosen.connected()
    chosen.ended(SILENT, connected=True)
    chosen.connected()
    assert chosen.ended(SILENT, connected=True) == 0
    assert (chosen.transport, chosen.fallback) == ("sse", "silent")
    # The fallback reason is said by the next attempt only.
    chosen.connected()
    chosen.ended(ABNORMAL, connected=True)
    assert (chosen.transport, chosen.fallback) == ("sse", None)


def test_an_ordinary_drop_clears_the_strikes(attempts) -> None:
    chosen = negotiation()
    chosen.connected()
    chosen.ended(SILENT, connected=True)  # strike 1
    chosen.connected()
    chosen.ended(CloseCode.GOING_AWAY, connected=True)  # a working connection ended: 0
    chosen.ended(ABNORMAL, connected=False)  # strike 1 again, not 2
    assert chosen.transport == "websocket"


def test_backoff_grows_until_a_connection_works(attempts) -> None:
    chosen = negotiation(("websocket",))
    chosen.connected()
    for _ in range(3):
        chosen.ended(ABNORMAL, connected=False)
    chosen.connected()
    chosen.ended(ABNORMAL, connected=True)
    assert attempts == [0, 1, 2, 0]


def test_a_requested_reconnect_is_never_a_strike(attempts) -> None:
    chosen = negotiation()
    assert chosen.ended(ABNORMAL, connected=False, requested=True) == 1.0
    assert chosen.transport == "websocket"


@pytest.mark.parametrize("code", [1000, 1007, 1008, 4500, 4501, 4502])
def test_a_stop_code_stops(code: int) -> None:
    assert negotiation().ended(code, connected=True) is None


def test_a_probe_that_passed_switches_at_once_and_resets_the_backoff(attempts) -> None:
    chosen = negotiation()
    chosen.ended(ABNORMAL, connected=False)
    chosen.ended(ABNORMAL, connected=False)
    chosen.connected()
    assert chosen.transport == "longpoll"
    assert chosen.better() == ("websocket", "sse")
    chosen.probe_passed(1)
    assert chosen.switching
    assert chosen.ended(ABNORMAL, connected=True) == 0
    assert (chosen.transport, chosen.switching, chosen.fallback) == ("sse", False, None)
    assert chosen.better() == ("websocket",)
    forget_transports()
    assert negotiation().better() == ()


def test_restart_prefers_what_worked_in_this_client() -> None:
    chosen = negotiation()
    chosen.ended(ABNORMAL, connected=False)
    chosen.connected()  # sse worked
    chosen.index = 2
    assert chosen.restart() == "sse"


def test_what_worked_is_remembered_per_origin_for_a_while() -> None:
    clock = Clock()
    first = negotiation(clock=clock)
    first.ended(ABNORMAL, connected=False)
    first.connected()  # sse
    assert remembered_transport(ORIGIN, clock.now) == "sse"
    assert negotiation(clock=clock).transport == "sse"  # a new client starts there
    assert Negotiation(ALL, "http://other.test", clock=clock).restart() == "websocket"
    # A remembered transport the client does not use is ignored.
    assert negotiation(("websocket", "longpoll"), clock=clock).transport == "websocket"
    clock.now += REMEMBER_TRANSPORT_FOR
    assert negotiation(clock=clock).transport == "websocket"  # forgotten in time
    remember_transport(ORIGIN, "longpoll", clock.now)
    forget_transports()
    assert negotiation(clock=clock).transport == "websocket"

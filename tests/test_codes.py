"""Close codes and error codes: what a client does after each one."""

from __future__ import annotations

import pytest

from rtlink.codes import CloseCode, ErrorCode, is_temporary, should_reconnect

# Every CloseCode member and whether a client reconnects after it. Listing them all
# (instead of deriving the answer from the range) makes adding a member without
# deciding its behaviour fail test_every_close_code_is_listed.
RECONNECT = {
    CloseCode.NORMAL: False,
    CloseCode.GOING_AWAY: True,
    CloseCode.ABNORMAL: True,
    CloseCode.INVALID_PAYLOAD: False,
    CloseCode.POLICY_VIOLATION: False,
    CloseCode.MESSAGE_TOO_BIG: False,
    CloseCode.INTERNAL_ERROR: True,
    CloseCode.SERVICE_RESTART: True,
    CloseCode.TRY_AGAIN_LATER: True,
    CloseCode.HEARTBEAT_TIMEOUT: True,
    CloseCode.SLOW_CONSUMER: True,
    CloseCode.RECONNECT: True,
    CloseCode.UNAUTHORIZED: False,
    CloseCode.FORBIDDEN: False,
    CloseCode.UNSUPPORTED_PROTOCOL: False,
}

TEMPORARY = {
    ErrorCode.BAD_REQUEST: False,
    ErrorCode.UNAUTHORIZED: False,
    ErrorCode.FORBIDDEN: False,
    ErrorCode.UNKNOWN_CHANNEL: False,
    ErrorCode.ALREADY_SUBSCRIBED: False,
    ErrorCode.TOO_LARGE: False,
    ErrorCode.INVALID_CHANNEL: False,
    ErrorCode.RATE_LIMITED: True,
    ErrorCode.LIMIT_EXCEEDED: False,
    ErrorCode.INTERNAL_ERROR: True,
    ErrorCode.BACKEND_UNAVAILABLE: True,
}


def test_every_close_code_is_listed() -> None:
    assert set(RECONNECT) == set(CloseCode)


def test_every_error_code_is_listed() -> None:
    assert set(TEMPORARY) == set(ErrorCode)


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name)
def test_should_reconnect_for_each_close_code(code: CloseCode) -> None:
    assert should_reconnect(code) is RECONNECT[code]
    # The plain int (as read from a WebSocket close frame) behaves the same.
    assert should_reconnect(int(code)) is RECONNECT[code]


@pytest.mark.parametrize("code", [4003, 4100, 4321, 4498, 4499])
def test_unknown_codes_4000_4499_reconnect(code: int) -> None:
    assert code not in set(CloseCode)
    assert should_reconnect(code) is True


@pytest.mark.parametrize("code", [4503, 4600, 4998, 4999])
def test_unknown_codes_4500_4999_stop(code: int) -> None:
    assert code not in set(CloseCode)
    assert should_reconnect(code) is False


@pytest.mark.parametrize(
    "code",
    # Unknown standard/reserved WebSocket codes, registered-library codes, out-of-range.
    [0, 1, 999, 1002, 1003, 1004, 1005, 1010, 1014, 1015, 2000, 2999, 3000, 3999, 5000, 65535,
     -1],
)
def test_other_unknown_codes_stop(code: int) -> None:
    assert code not in set(CloseCode)
    assert should_reconnect(code) is False


def test_service_restart_1012_reconnects() -> None:
    assert int(CloseCode.SERVICE_RESTART) == 1012
    assert should_reconnect(1012) is True


def test_range_boundaries() -> None:
    assert should_reconnect(3999) is False
    assert should_reconnect(4000) is True
    assert should_reconnect(4499) is True
    assert should_reconnect(4500) is False
    assert should_reconnect(4999) is False
    assert should_reconnect(5000) is False


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_is_temporary_for_each_error_code(code: ErrorCode) -> None:
    assert is_temporary(code) is TEMPORARY[code]
    assert is_temporary(int(code)) is TEMPORARY[code]


@pytest.mark.parametrize(
    ("code", "temporary"),
    [(428, False), (429, True), (430, False), (499, False), (500, True), (502, True),
     (504, True), (599, True), (600, False), (200, False)],
)
def test_is_temporary_unknown_codes(code: int, temporary: bool) -> None:
    assert is_temporary(code) is temporary

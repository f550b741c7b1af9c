"""Close codes and error codes: what a client does after each one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rtlink.codes import CloseCode, ErrorCode, is_temporary, should_reconnect
from tests.support import find_binary, missing_component

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
    CloseCode.TOKEN_EXPIRED: True,
    CloseCode.UNAUTHORIZED: False,
    CloseCode.FORBIDDEN: False,
    CloseCode.UNSUPPORTED_PROTOCOL: False,
    CloseCode.DISCONNECTED: False,
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


@pytest.mark.parametrize("code", [4004, 4100, 4321, 4498, 4499])
def test_unknown_codes_4000_4499_reconnect(code: int) -> None:
    assert code not in set(CloseCode)
    assert should_reconnect(code) is True


@pytest.mark.parametrize("code", [4504, 4600, 4998, 4999])
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


def test_token_expired_4003_reconnects() -> None:
    # The client reconnects and asks its token function for a fresh token.
    assert int(CloseCode.TOKEN_EXPIRED) == 4003
    assert should_reconnect(4003) is True


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


def test_the_javascript_client_uses_the_same_names_and_rules() -> None:
    """js-client/src/codes.js has exactly these members, values and decisions."""
    node = find_binary("node")
    if node is None:
        missing_component("node (Node.js) is not installed")
    codes_js = Path(__file__).resolve().parents[1] / "js-client" / "src" / "codes.js"
    probe = [int(code) for code in RECONNECT] + [1005, 3000, 4004, 4498, 4777, 5000]
    errors = [int(code) for code in TEMPORARY] + [428, 499, 502, 599, 600]
    script = (
        f"import * as codes from {json.dumps(codes_js.as_uri())};"
        "const [probe, errors] = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify({close: codes.CloseCode, error: codes.ErrorCode,"
        " reconnect: probe.map(codes.shouldReconnect),"
        " temporary: errors.map(codes.isTemporary)}));"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script, json.dumps([probe, errors])],
        capture_output=True, text=True, timeout=30, check=True,
    )
    js = json.loads(result.stdout)
    assert js["close"] == {code.name: int(code) for code in CloseCode}
    assert js["error"] == {code.name: int(code) for code in ErrorCode}
    assert js["reconnect"] == [should_reconnect(code) for code in probe]
    assert js["temporary"] == [is_temporary(code) for code in errors]

"""Log filters (rtlink/logs.py) on plain log records: credentials redacted, malformed
requests one rate-bounded INFO line. ``rtlink serve`` with real requests:
tests/e2e/test_cli.py."""

from __future__ import annotations

import logging
import sys

import aiohttp
import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

import rtlink
from rtlink.logs import QuietBadRequests, RedactCredentials, redact, redact_aiohttp_logs
from tests.support import run_server
from tests.test_limits import Clock


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ('request="GET /rt/sse?subs=%7B%7D&token=eyJh.eyJz.sig HTTP/1.1"',
         'request="GET /rt/sse?subs=%7B%7D&token=[redacted] HTTP/1.1"'),
        ("GET /rt/ws?ticket=eyJ.x.y&codec=json", "GET /rt/ws?ticket=[redacted]&codec=json"),
        ("POST /rt/publish?key=rk_live_123", "POST /rt/publish?key=[redacted]"),
        # The name in any case, percent-encoded, after ; too; the value up to a quote.
        ("/p?TOKEN=a;Ticket=b&%74oken=c&api_key=d", "/p?TOKEN=[redacted];Ticket=[redacted]"
                                                    "&%74oken=[redacted]&api_key=[redacted]"),
        ("bytearray(b'/rt/sse?token=abc')", "bytearray(b'/rt/sse?token=[redacted]')"),
        ("b'Authorization: Bearer sec\\x01ret'", "b'Authorization: Bearer [redacted]'"),
        ("authorization: basic dXNlcjpwdw==", "authorization: basic [redacted]"),
        # Not credentials: left alone.
        ("/rt/poll?subs=%7B%22a%22%3Anull%7D&connect=1&keyboard=1",
         "/rt/poll?subs=%7B%22a%22%3Anull%7D&connect=1&keyboard=1"),
        ("token expired", "token expired"),
    ],
)
def test_redact(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def record(name: str, message: str, *args: object, level: int = logging.INFO,
           error: BaseException | None = None) -> logging.LogRecord:
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, message, args, exc_info)


def test_redact_credentials_in_message_arguments_traceback_and_access_fields() -> None:
    line = record("aiohttp.access", 'request="%s" status=%s', "GET /rt/sse?token=abc HTTP/1.1",
                  401)
    line.first_request_line = "GET /rt/sse?token=abc HTTP/1.1"
    line.request_header = {"Authorization": "Bearer abc"}
    assert RedactCredentials().filter(line)
    assert line.getMessage() == 'request="GET /rt/sse?token=[redacted] HTTP/1.1" status=401'
    assert line.first_request_line == "GET /rt/sse?token=[redacted] HTTP/1.1"
    assert line.request_header == {"Authorization": "Bearer [redacted]"}
    failed = record("aiohttp.server", "Error handling request from %s", "127.0.0.1",
                    level=logging.ERROR, error=ValueError("GET /x?ticket=abc"))
    assert RedactCredentials().filter(failed)
    assert failed.exc_text is not None and "ticket=[redacted]" in failed.exc_text
    assert "abc" not in logging.Formatter().format(failed)


def test_malformed_requests_are_one_info_line_each_and_rate_bounded() -> None:
    clock = Clock()
    quiet = QuietBadRequests(rate=0.1, burst=3, clock=clock)
    logging.getLogger("aiohttp.server").setLevel(logging.INFO)
    try:
        lines = []
        for _ in range(5):
            bad = record("aiohttp.server", "Error handling request from %s", "10.0.0.7",
                         level=logging.ERROR,
                         error=BadHttpMessage("Invalid header value char:\n\n  b'X: a\\x01'"))
            if quiet.filter(bad):
                lines.append(bad)
        assert len(lines) == 3 and quiet.dropped == 2
        assert [(line.levelname, line.exc_info, line.getMessage()) for line in lines] == [(
            "INFO", None, "malformed HTTP request from 10.0.0.7 refused with 400: Invalid "
                          "header value char")] * 3
        clock.now += 10.0  # one more line after 1 / rate seconds, counting the others
        late = record("aiohttp.server", "Error handling request from %s", "10.0.0.8",
                      level=logging.ERROR, error=LineTooLong("Status line is too long", 8190))
        assert quiet.filter(late)
        assert late.getMessage().startswith("malformed HTTP request from 10.0.0.8 refused with "
                                            "400: Got more than 8190 bytes")
        assert late.getMessage().endswith("(2 more since the last such line not logged)")
        # Errors of handlers keep their level and traceback; other loggers are untouched.
        crash = record("aiohttp.server", "Error handling request from %s", "10.0.0.7",
                       level=logging.ERROR, error=RuntimeError("a bug"))
        other = record("rtlink.hub", "fine")
        assert quiet.filter(crash) and quiet.filter(other)
        assert (crash.levelname, crash.exc_info is not None) == ("ERROR", True)
        # Where INFO is not logged, neither is the line that replaces the ERROR.
        logging.getLogger("aiohttp.server").setLevel(logging.WARNING)
        clock.now += 100.0
        assert not quiet.filter(record("aiohttp.server", "Error handling request from %s",
                                       "10.0.0.9", level=logging.ERROR,
                                       error=BadHttpMessage("Bad")))
    finally:
        logging.getLogger("aiohttp.server").setLevel(logging.NOTSET)


def test_aiohttp_loggers_get_one_redaction_filter() -> None:
    redact_aiohttp_logs()
    redact_aiohttp_logs()
    for name in ("aiohttp.access", "aiohttp.server"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactCredentials) for f in filters) == 1


async def test_an_application_with_rtlink_attached_logs_no_credentials(
        caplog: pytest.LogCaptureFixture) -> None:
    # rtlink.attach puts the filter on aiohttp's access log, whatever the application's
    # handlers: its URL of a refused token holds no token.
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with run_server(authenticate=rtlink.TokenAuth("s" * 32)) as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/poll", params={"connect": "1",
                                                              "token": "TOKEN-SECRET"}) as answer:
                assert answer.status == 401
    lines = [line.getMessage() for line in caplog.records if line.name == "aiohttp.access"]
    assert any("token=[redacted]" in line for line in lines), lines
    assert "TOKEN-SECRET" not in caplog.text

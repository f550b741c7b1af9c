"""Log lines that are safe to keep: credentials redacted, malformed requests quiet.

Two ``logging`` filters:

* :class:`RedactCredentials` replaces credentials in a log record with
  ``[redacted]``: the values of query parameters that carry them
  (:data:`CREDENTIAL_PARAMETERS`: ``token``, ``ticket``, ``key``, ...) and the value of
  ``Bearer``/``Basic`` authorizations, wherever they appear — the message, its
  arguments, an exception's text, aiohttp's access-log fields. A token refused because
  it came in a URL would otherwise sit in full in the access log that recorded the
  URL. :func:`redact_aiohttp_logs` puts it on aiohttp's access and server loggers;
  :func:`rtlink.attach` calls it, so an application's logs are redacted whatever
  handlers it has.
* :class:`QuietBadRequests` turns aiohttp's record of a malformed HTTP request (logger
  ``aiohttp.server``: ERROR and a full traceback for each, which anyone can send) into
  one INFO line, ``malformed HTTP request from ADDRESS refused with 400: REASON``, at
  most ``burst`` at once and ``rate`` per second; the lines left out are counted in
  the next one. Errors of request handlers keep their level and traceback.
  ``rtlink serve`` puts it on its log handler (an application may, on its own).

Pure logging: no I/O of its own, no aiohttp import but its exception class.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from aiohttp.http_exceptions import HttpProcessingError

from .limits import TokenBucket

__all__ = [
    "CREDENTIAL_PARAMETERS",
    "REDACTED",
    "redact",
    "RedactCredentials",
    "QuietBadRequests",
    "redact_aiohttp_logs",
]

#: Query parameters whose values are credentials, by lowercase name: rtlink's own
#: (``token``, ``ticket``; ``key``, which a caller of the publish API might put in a
#: URL by mistake) and common ones of other software behind the same logs.
CREDENTIAL_PARAMETERS = frozenset({
    "token", "ticket", "key", "access_token", "api_key", "apikey", "password", "secret",
})
#: What a credential is replaced with.
REDACTED = "[redacted]"

#: A query parameter in any text: a URL, a request line, the repr of a URL's bytes.
_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s\"'<>]+)=(?P<value>[^&;#\s\"'<>]*)")
#: The value of an authorization (an ``Authorization`` header, or its repr in an error).
_AUTHORIZATION = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<gap>\s+)[^\s\"',;]+")
#: The access log's structured fields (aiohttp's ``extra``) that may hold credentials.
_ACCESS_FIELDS = ("first_request_line",)


def _redact_parameter(match: re.Match[str]) -> str:
    if unquote_plus(match["name"]).lower() not in CREDENTIAL_PARAMETERS:
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"


def redact(text: str) -> str:
    """``text`` with the values of credential query parameters
    (:data:`CREDENTIAL_PARAMETERS`, names compared percent-decoded and in any case) and
    of ``Bearer``/``Basic`` authorizations replaced with :data:`REDACTED`."""
    if "=" in text:
        text = _PARAMETER.sub(_redact_parameter, text)
    return _AUTHORIZATION.sub(lambda m: f"{m['scheme']}{m['gap']}{REDACTED}", text)


class RedactCredentials(logging.Filter):
    """A filter that redacts credentials (:func:`redact`) in every record it sees.

    On a logger, it sees the records logged on that logger (not those of its
    children); on a handler, every record the handler writes. It never drops one.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatted now, redacted, and kept: handlers use exc_text when it is set.
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for field in _ACCESS_FIELDS:
            value = getattr(record, field, None)
            if isinstance(value, str):
                setattr(record, field, redact(value))
        headers = getattr(record, "request_header", None)  # aiohttp's %{Name}i fields
        if isinstance(headers, dict):
            record.request_header = {name: redact(value) if isinstance(value, str) else value
                                     for name, value in headers.items()}
        return True


class QuietBadRequests(logging.Filter):
    """A filter that makes aiohttp's records of malformed HTTP requests one short INFO
    line each, rate-bounded (see the module docstring).

    Args:
        rate: lines per second on average, beyond ``burst``.
        burst: lines at once.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, rate: float = 0.1, burst: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._bucket = TokenBucket(rate, burst, clock())
        self.dropped = 0  # lines left out since the last one written

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.name != "aiohttp.server" or not isinstance(error, HttpProcessingError):
            return True  # not a malformed request: as it is
        if not self._bucket.take(None, self._clock()):
            self.dropped += 1
            return False
        args: Any = record.args
        remote = args[0] if isinstance(args, tuple) and args else "an unknown address"
        # The first line only: the rest repeats the request's bytes.
        reason = (error.message or type(error).__name__).strip().splitlines()[0]
        record.msg = "malformed HTTP request from %s refused with %s: %s"
        record.args = (remote, error.code, redact(reason.rstrip(":")))
        if self.dropped:
            record.msg += " (%d more since the last such line not logged)"
            record.args += (self.dropped,)
            self.dropped = 0
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info = record.exc_text = None
        # An INFO line now: written only where INFO is (aiohttp logged it at ERROR).
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def redact_aiohttp_logs() -> None:
    """Put a :class:`RedactCredentials` on aiohttp's access logger (``aiohttp.access``:
    request lines with their query strings) and server logger (``aiohttp.server``:
    errors quoting a request's bytes), once. :func:`rtlink.attach` calls it."""
    for name in ("aiohttp.access", "aiohttp.server"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())

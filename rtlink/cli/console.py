"""What the commands write besides their results: error lines on stderr and log
lines (UTC time, level, logger, message with ``key=value`` details), with credentials
redacted and malformed requests logged briefly (:mod:`rtlink.logs`)."""

from __future__ import annotations

import json
import logging
import sys
import time

from ..logs import QuietBadRequests, RedactCredentials

__all__ = ["err", "setup_logging", "fields"]

#: One line per event: UTC time, level, logger, message (details as key=value).
_LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
_LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def err(message: str) -> None:
    """Print ``message`` on stderr at once (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


def setup_logging(level: str) -> None:
    """Send log records of ``level`` (``"info"``, ...) and above to stderr, one line each.

    No line holds a credential (a token or ticket in a URL, an ``Authorization``
    value): they are redacted. A malformed HTTP request, which anyone can send, is one
    INFO line (at most 10 at once and one every 10 s; the rest are counted), not an
    ERROR with a traceback.
    """
    formatter = logging.Formatter(_LOG_FORMAT, _LOG_DATE_FORMAT)
    formatter.converter = time.gmtime  # UTC: comparable across machines
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(QuietBadRequests())  # first: it drops the traceback
    handler.addFilter(RedactCredentials())
    logging.basicConfig(level=level.upper(), handlers=[handler])


def fields(**details: object) -> str:
    """``key=value`` pairs for a log line; values with spaces or quotes are quoted."""
    parts = []
    for key, value in details.items():
        text = str(value)
        if not text or any(c.isspace() or c in "\"=" for c in text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)

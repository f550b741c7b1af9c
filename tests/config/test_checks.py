"""The checks of single strings (rtlink.config.checks); most are tested through the
loader's error messages (test_loading.py), redact_url here."""

from __future__ import annotations

import pytest

from rtlink.config import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("memory://", "memory://"),
        ("redis://:pw@h:port/0", "redis://:***@h:port/0"),
        ("redis://:pw@[::1/0", "redis://***"),  # unparsable: nothing but the scheme
        ("redis+sentinel://:pw@h1:26379,h2:26379/m/0?sentinel_password=s&db=1",
         "redis+sentinel://:***@h1:26379,h2:26379/m/0?sentinel_password=***&db=1"),
        ("redis+sharded://u:pw@h1:1,h2:2/0", "redis+sharded://u:***@h1:1,h2:2/0"),
        ("unix:///run/redis.sock?password=pw&db=1", "unix:///run/redis.sock?password=***&db=1"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown

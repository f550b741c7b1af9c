"""The fixture every test of rtlink.config uses."""

from __future__ import annotations

import pytest

from rtlink.config import SERVE_OPTIONS


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads os.environ: start each test without RTLINK_* variables."""
    for option in SERVE_OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
        if option.file_env:
            monkeypatch.delenv(option.file_env, raising=False)
    monkeypatch.delenv("RTLINK_CONFIG", raising=False)

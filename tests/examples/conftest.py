"""Fixtures of the examples' smoke tests: the browser tests' shared Chromium."""

from tests.browser.conftest import chromium

__all__ = ["chromium"]  # a fixture: pytest finds it here, one Chromium per test module

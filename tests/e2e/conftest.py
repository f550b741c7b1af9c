"""Fixtures of the end-to-end tests: one headless Chromium per test module
(tests/support/browser.py), for the browser tests and the examples' smoke tests.

Playwright's objects belong to the event loop that made them, so the browser tests run
in one event loop per module (``pytestmark = pytest.mark.asyncio(loop_scope="module")``
in each test module, and ``loop_scope="module"`` on their async fixtures). That saves
starting Playwright and Chromium for every test (about a second each); every page
still gets a fresh browser context (its own storage, cache and connections).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support.browser import Chromium, launch_chromium


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Chromium]:
    """A headless Chromium for the tests of a module (skipped when not installed,
    failed under ``CI=true``)."""
    async with launch_chromium() as browser:
        yield browser

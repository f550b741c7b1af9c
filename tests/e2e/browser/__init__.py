"""The browser client (js-client) in a real Chromium against real servers."""

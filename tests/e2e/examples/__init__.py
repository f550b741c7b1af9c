"""Smoke tests of examples/: each example run with its README command, checked over the wire."""

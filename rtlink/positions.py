"""Positions in channels (placeholder until the positions module lands)."""

from __future__ import annotations

from .protocol import Position

__all__ = ["is_after"]


def is_after(position: Position, last: Position | None) -> bool:
    """Whether ``position`` comes after ``last``: another epoch, or a higher offset."""
    return last is None or position.epoch != last.epoch or position.offset > last.offset

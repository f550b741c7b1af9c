"""``python -m rtlink.cli``: the ``rtlink`` command."""

from __future__ import annotations

import sys

from .command import main

__all__: list[str] = []

sys.exit(main())

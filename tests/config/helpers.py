"""What the tests of rtlink.config share: secrets and keys long enough to pass, a file
writer, and the command's view (the flags it parses, --print-config's output)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from rtlink.cli import build_parser, main
from rtlink.cli.serve_options import serve_flags as flags_given

SECRET = "s" * 40
API_KEY = "k" * 20
OTHER_KEY = "q" * 24


def write(path: Path, text: str) -> str:
    """Write ``text`` to ``path``; return the path as the loader takes it."""
    path.write_text(text, encoding="utf-8")
    return str(path)


def serve_flags(*argv: str) -> dict[str, Any]:
    """The flags ``rtlink serve ARGV`` hands to the loader (as the command does)."""
    return flags_given(build_parser().parse_args(["serve", *argv]))


def print_config(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, Any], str]:
    """Run ``rtlink serve --print-config ARGV``: the parsed TOML and the text."""
    assert main(["serve", "--print-config", *argv]) == 0
    out = capsys.readouterr().out
    return tomllib.loads(out), out


def source_of(text: str, key: str) -> str:
    """The source comment of ``key = ...`` in --print-config output (first match)."""
    for line in text.splitlines():
        if line.startswith(f"{key} = "):
            return line.partition("  # ")[2]
    raise AssertionError(f"no {key} in {text}")

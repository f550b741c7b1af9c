"""Reading the documents: their fenced code blocks, for tests that run what the
documents show (tests/e2e/test_docs.py: configurations; tests/transports: exchanges
shown in protocol.md and http-api.md, compared with what a live server answers)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import ROOT

__all__ = ["DOCS", "PROTOCOL", "HTTP_API", "OPERATIONS", "MIGRATION", "code_blocks",
           "the_block", "replaced", "assert_documented_answer"]

DOCS = ROOT / "docs"
PROTOCOL = DOCS / "protocol.md"
HTTP_API = DOCS / "http-api.md"
OPERATIONS = DOCS / "operations.md"
MIGRATION = DOCS / "migrating-from-socketio.md"

#: Headers of an answer that differ between runs, so documents leave them out.
_VARYING = frozenset({"date", "server", "connection"})


def code_blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of ``path`` whose info string is ``language``, dedented
    (blocks inside list items are indented)."""
    blocks: list[str] = []
    opened: tuple[str, str] | None = None  # (indent, info string) of the open fence
    body: list[str] = []
    for line in path.read_text().splitlines():
        fence = re.fullmatch(r"( *)```(\S*)\s*", line)
        if opened is None:
            if fence:
                opened, body = (fence[1], fence[2]), []
        elif fence and fence[1] == opened[0] and not fence[2]:
            if opened[1] == language:
                blocks.append("".join(text[len(opened[0]):] + "\n" for text in body))
            opened = None
        else:
            body.append(line)
    return blocks


def the_block(path: Path, language: str, containing: str = "") -> str:
    """The one ``language`` block of ``path`` that contains ``containing``."""
    found = [block for block in code_blocks(path, language) if containing in block]
    assert len(found) == 1, (f"expected one {language} block containing {containing!r} "
                             f"in {path.name}, found {len(found)}")
    return found[0]


def replaced(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each key replaced by its value; every key must occur."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the documented configuration"
        text = text.replace(old, new)
    return text


def assert_documented_answer(documented: str, raw: bytes) -> None:
    """Check a raw HTTP answer against the one a document shows (a status line, header
    lines, an empty line, the body): the same status line, every header shown with
    its value and no other (but ``Date``, ``Server`` and ``Connection``), the same
    body."""
    head, _, body = raw.decode().partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    shown_head, _, shown_body = documented.partition("\n\n")
    shown_status, *shown_lines = shown_head.split("\n")
    assert status == shown_status, (status, shown_status)
    headers = [line for line in lines if line.split(":")[0].lower() not in _VARYING]
    assert headers == shown_lines, (headers, shown_lines)
    assert body == shown_body, (body, shown_body)

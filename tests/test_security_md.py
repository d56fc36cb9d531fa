"""SECURITY.md names, for every guarantee, the tests that show it: each named test exists.

A row cites ``tests/path.py::test_name`` and then ``::other_test`` in the same file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"`(tests/[\w/.-]+\.py)?::(test_\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_test_security_md_cites_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    missing, cited = [], 0
    for line in text.splitlines():
        current: str | None = None
        for m in CITATION.finditer(line):
            current = m.group(1) or current
            assert current is not None, f"a bare ::{m.group(2)} before any file in: {line[:80]}"
            path = ROOT / current
            cited += 1
            if not path.is_file() or m.group(2) not in _tests_in(path):
                missing.append(f"{current}::{m.group(2)}")
    assert cited > 50  # the table is there and the pattern reads it
    assert not missing, missing

"""The code blocks of the docs site and the README, as ``tests/test_docs.py`` runs them.

A plain module (not conftest) so the test file and the terminal summary share it.

Every fenced block has a language. ``python``, ``bash``, ``yaml``, ``toml`` and ``json`` blocks
are code and are executed (see ``tests/test_docs.py``); ``text`` blocks are program output and
are not. A code block may opt out only with a visible reason on the line before its fence:
``<!-- not-run: needs a Slack workspace -->``; opt-outs are counted and listed after the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CODE_LANGS = frozenset({"python", "bash", "yaml", "toml", "json"})
OUTPUT_LANGS = frozenset({"text"})

_FENCE = re.compile(r"^(\s*)```\s*([\w-]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->\s*$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: str | None  # the visible reason, when the block opts out

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site (hooks excluded) and the README."""
    found = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)
    return [REPO / "README.md", *found]


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{page.relative_to(REPO)}:{start + 1}: unclosed code fence")
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_RUN.match(prev)
        out.append(
            Block(
                page=page,
                line=start + 1,
                lang=lang,
                text="\n".join(body) + "\n",
                not_run=marker.group("reason") if marker else None,
            )
        )
        i += 1
    return out


def inventory() -> tuple[int, list[Block]]:
    """(code blocks that run, code blocks that opt out)."""
    ran, skipped = 0, []
    for page in pages():
        for block in blocks(page):
            if block.lang not in CODE_LANGS:
                continue
            if block.not_run:
                skipped.append(block)
            else:
                ran += 1
    return ran, skipped

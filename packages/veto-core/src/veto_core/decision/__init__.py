"""Deciding one call against a compiled policy (pure; DESIGN.md 2.2 and 3).

`decide` is the entry point: per-tool compiled deciders (`compiled.py`), tested
against the plain reference evaluator (`reference.py`).
"""

from __future__ import annotations

from .compiled import ToolDecider, decide_compiled
from .reference import decide_reference

decide = decide_compiled

__all__ = ["ToolDecider", "decide", "decide_compiled", "decide_reference"]

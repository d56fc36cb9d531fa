"""Runs and data flow (DESIGN.md 2.7): run state, observation, taint."""

from __future__ import annotations

from .memory import MemoryRunStore
from .state import MAX_TEXT_BYTES, RunState, TaintMatch, TaintUnknown
from .store import RunEvent, RunStore, RunStoreUnavailable
from .text import extract_text, normalize
from .tracker import USER, ObservationError, RunTracker

__all__ = [
    "MAX_TEXT_BYTES",
    "USER",
    "MemoryRunStore",
    "ObservationError",
    "RunEvent",
    "RunState",
    "RunStore",
    "RunStoreUnavailable",
    "RunTracker",
    "TaintMatch",
    "TaintUnknown",
    "extract_text",
    "normalize",
]

"""Durations in policies ('30m', '2h', 90): parsed the same by the schema and the compiler.

Kept apart from the pydantic schema so compiling an already validated policy needs
no pydantic (DESIGN.md 8: `veto check` starts fast).
"""

from __future__ import annotations

import math
import re

__all__ = ["DEFAULT_RUN_TTL", "parse_duration"]

#: How long a run's state is kept after its last event when the policy says nothing.
DEFAULT_RUN_TTL = "24h"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | int | float) -> float:
    """'30m' -> 1800.0 seconds. Plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '15m', '2h' or '1d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"expected a duration like '30s', '15m', '2h' or '1d', got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds):  # "999...9d" overflows to Infinity: a window that never ends
        raise ValueError("a duration must be a finite number of seconds")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds

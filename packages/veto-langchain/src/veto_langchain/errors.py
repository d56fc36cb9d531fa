"""The exception adapters raise when a tool call must not run.

The class is the one every adapter shares (:mod:`veto_core.adapters`), so
``except ToolCallDenied`` catches refusals from any Veto adapter.
"""

from __future__ import annotations

from veto_core.adapters import ToolCallDenied

__all__ = ["ToolCallDenied"]

"""The exception a guarded tool raises (with ``on_deny="raise"``) when a call must not run.

The class is the one every adapter shares (:mod:`veto_core.adapters`), so
``except ToolCallDenied`` catches refusals from any Veto adapter.
"""

from __future__ import annotations

from veto_core.adapters import ToolCallDenied

__all__ = ["ToolCallDenied"]

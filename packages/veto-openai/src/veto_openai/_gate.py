"""Framework-neutral gate: a ``ToolCall`` becomes "run it" or "don't, because ...".

The gate is shared with the other adapters (:mod:`veto_core.adapters`); this module
keeps the names the OpenAI adapter calls it by. Every function fails closed: any
exception (store down, a plugin bug, a monkeypatched engine) becomes a refusal with a
reason, never a run. Only a :class:`Verdict` with ``run=True`` lets a tool body execute.
"""

from __future__ import annotations

from veto_core.adapters import (
    Verdict,
    authorize,
    authorize_and_wait,
    decision_text,
    from_authorization,
    not_released,
    refusal,
    state_name,
)
from veto_core.adapters import error_verdict as error

__all__ = [
    "Verdict",
    "authorize",
    "authorize_and_wait",
    "decision_text",
    "error",
    "from_authorization",
    "not_released",
    "refusal",
    "state_name",
]

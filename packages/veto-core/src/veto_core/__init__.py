"""Veto: decide, before an AI agent's tool call runs, whether it may (allow / deny /
require approval), and record why. See DESIGN.md section 9 for the stable API.

Names are imported on first use (``_lazy``) so that the ``veto`` command starts fast."""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from .engine import Explanation, RuleTrace, TaintTrace, Veto
    from .model import (
        ApprovalRequirement,
        ApprovalSpec,
        Authorization,
        Decision,
        Effect,
        Principal,
        ToolCall,
    )
    from .policy.errors import PolicyError, Problem
    from .policy.operators import EvalError, OperandError, Operator, Predicate
    from .runs import (
        MemoryRunStore,
        ObservationError,
        RunEvent,
        RunState,
        RunStore,
        RunStoreUnavailable,
        TaintMatch,
    )

__all__ = [
    "ApprovalRequirement",
    "ApprovalSpec",
    "Authorization",
    "Decision",
    "Effect",
    "EvalError",
    "Explanation",
    "MemoryRunStore",
    "ObservationError",
    "OperandError",
    "Operator",
    "PolicyError",
    "Predicate",
    "Principal",
    "Problem",
    "RuleTrace",
    "RunEvent",
    "RunState",
    "RunStore",
    "RunStoreUnavailable",
    "TaintMatch",
    "TaintTrace",
    "ToolCall",
    "Veto",
]

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        **dict.fromkeys(("Explanation", "RuleTrace", "TaintTrace", "Veto"), ".engine"),
        **dict.fromkeys(
            (
                "MemoryRunStore",
                "ObservationError",
                "RunEvent",
                "RunState",
                "RunStore",
                "RunStoreUnavailable",
                "TaintMatch",
            ),
            ".runs",
        ),
        **dict.fromkeys(
            (
                "ApprovalRequirement",
                "ApprovalSpec",
                "Authorization",
                "Decision",
                "Effect",
                "Principal",
                "ToolCall",
            ),
            ".model",
        ),
        **dict.fromkeys(("PolicyError", "Problem"), ".policy.errors"),
        **dict.fromkeys(
            ("EvalError", "OperandError", "Operator", "Predicate"), ".policy.operators"
        ),
    },
)

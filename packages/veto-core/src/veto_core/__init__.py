"""Veto: decide, before an AI agent's tool call runs, whether it may (allow / deny /
require approval), and record why. See DESIGN.md section 9 for the stable API."""

from .engine import Explanation, RuleTrace, Veto
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

__all__ = [
    "ApprovalRequirement",
    "ApprovalSpec",
    "Authorization",
    "Decision",
    "Effect",
    "EvalError",
    "Explanation",
    "OperandError",
    "Operator",
    "PolicyError",
    "Predicate",
    "Principal",
    "Problem",
    "RuleTrace",
    "ToolCall",
    "Veto",
]

__version__ = "0.1.0"

"""The exception a guarded tool raises (with ``on_deny="raise"``) when a call must not run."""

from __future__ import annotations

from veto_core import Decision

__all__ = ["ToolCallDenied"]


class ToolCallDenied(PermissionError):
    """A tool call was not run: denied by policy, not approved, or the check failed.

    ``outcome`` is ``denied``, ``rejected``, ``expired``, ``pending``, ``cancelled``,
    ``error``...; ``reason`` is the text (with rule ids) a model or a person can read.
    """

    def __init__(
        self,
        reason: str,
        *,
        tool: str,
        outcome: str,
        tool_call_id: str | None = None,
        decision: Decision | None = None,
        approval_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tool = tool
        self.outcome = outcome
        self.tool_call_id = tool_call_id
        self.decision = decision
        self.approval_id = approval_id

"""Framework-neutral gate: a ``ToolCall`` becomes "run it" or "don't, because ...".

Every function here fails closed: any exception (store down, a plugin bug, a
monkeypatched engine) becomes a refusal with a reason, never a run. Only a
:class:`Verdict` with ``run=True`` lets a tool body execute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from veto_core import Authorization, Decision, Effect, ToolCall, Veto

__all__ = ["Verdict", "authorize", "authorize_and_wait", "error", "from_authorization", "refusal"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The gate's answer for one call.

    ``run`` is the only thing that lets the tool body execute. ``reason`` is the text
    the model sees when it does not run; it names the deciding rule ids. ``outcome``:
    ``allowed``, ``approved``, ``denied``, ``rejected``, ``expired``, ``cancelled``,
    ``pending``, ``not released``, ``error``.
    """

    run: bool
    outcome: str
    reason: str
    decision: Decision | None = None
    approval_id: str | None = None

    def info(self) -> dict[str, Any]:
        """JSON-safe summary (stored by the SDK with guardrail results and RunState)."""
        d = self.decision
        return {
            "veto": {
                "outcome": self.outcome,
                "reason": self.reason,
                "approval_id": self.approval_id,
                "rule_ids": list(d.deciding_rule_ids) if d is not None else [],
                "policy_revision": d.policy_revision if d is not None else None,
            }
        }


def refusal(tool: str, outcome: str, why: str, **kw: Any) -> Verdict:
    """A ``Verdict`` that does not run the tool, with a reason the model can read."""
    text = f"Veto: tool call '{tool}' was not run ({outcome}): {why}"
    return Verdict(run=False, outcome=outcome, reason=text, **kw)


def error(tool: str, exc: BaseException) -> Verdict:
    return refusal(
        tool,
        "error",
        "the policy check failed, so the call is blocked (fail closed): "
        f"{type(exc).__name__}: {exc}",
    )


def decision_text(decision: Decision) -> str:
    reasons = decision.reason or "no reason given"
    ids = [r for r in decision.deciding_rule_ids if f"[{r}]" not in reasons]
    if ids:
        reasons += " [" + ", ".join(ids) + "]"
    return reasons


def state_name(approval: Any) -> str | None:
    state = getattr(approval, "state", None)
    if state is None:
        return None
    return str(getattr(state, "value", state)).lower()


def approval_id(approval: Any) -> str | None:
    ident = getattr(approval, "id", None) if approval is not None else None
    return None if ident is None else str(ident)


_OUTCOME = {"denied": "rejected", "expired": "expired", "cancelled": "cancelled"}


def not_released(call: ToolCall, decision: Decision, approval: Any, note: str = "") -> Verdict:
    """A require_approval call whose request does not (or no longer) release it."""
    state = state_name(approval) or "pending"
    ident = approval_id(approval)
    outcome = _OUTCOME.get(state, state)
    if outcome == "approved":  # approved but already used by an earlier run of this call
        outcome = "not released"
        state = "approved but already used (an approval releases one call once)"
    final = getattr(approval, "final_reason", None)
    what = f"approval request {ident}" if ident else "the approval request"
    detail = f" ({final})" if final and state in ("denied", "expired", "cancelled") else ""
    return refusal(
        call.tool,
        outcome,
        f"{what} is {state}{detail}{note}. Approval was required: {decision_text(decision)}",
        decision=decision,
        approval_id=ident,
    )


def from_authorization(call: ToolCall, auth: Authorization) -> Verdict:
    """Map an ``Authorization`` (after any waiting) to a ``Verdict``."""
    decision = auth.decision
    ident = approval_id(auth.approval)
    if auth.run_tool:
        outcome = "approved" if decision.effect is Effect.REQUIRE_APPROVAL else "allowed"
        return Verdict(run=True, outcome=outcome, reason="", decision=decision, approval_id=ident)
    if decision.effect is Effect.REQUIRE_APPROVAL:
        if auth.approval_error:
            return refusal(
                call.tool,
                "error",
                f"the approval could not be handled (fail closed): {auth.approval_error}. "
                f"Approval was required: {decision_text(decision)}",
                decision=decision,
                approval_id=ident,
            )
        return not_released(call, decision, auth.approval)
    return refusal(call.tool, "denied", decision_text(decision), decision=decision)


def authorize(veto: Veto, call: ToolCall) -> tuple[Verdict, Authorization | None]:
    """Decide and durably record once (creates the approval request when required).

    A require_approval decision is a refusal here (the caller pauses or waits)."""
    try:
        auth = veto.authorize(call)
        return from_authorization(call, auth), auth
    except Exception as exc:
        return error(call.tool, exc), None


def authorize_and_wait(veto: Veto, call: ToolCall, timeout: float | None) -> Verdict:
    """Decide, record, and when approval is required block until it is decided or
    times out. Runs only if APPROVED (consumed on release)."""
    try:
        auth = veto.authorize_and_wait(call, timeout=timeout)
        return from_authorization(call, auth)
    except Exception as exc:
        return error(call.tool, exc)

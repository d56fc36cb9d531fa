"""Framework-neutral gate: turn a ``ToolCall`` into "run it" or "don't, because ...".

Every function here fails closed: any exception (store down, a bug in a plugin,
an approval API that is missing or raises) becomes a refusal with a reason, never
a run. Only :class:`Verdict` with ``run=True`` lets a tool body execute.

The approval calls go through the adapter contract that ``veto_core`` provides
on ``Veto`` (``authorize``, ``authorize_and_wait``, ``check_approval``,
``approvals.get``). This module is the one place that knows their names. The
``Verdict`` and the ``Authorization`` → verdict mapping are the ones all adapters
share (:mod:`veto_core.adapters`); what stays here is LangChain's: the wording of an
approval that must be decided again, and the ``interrupt()`` pause/resume helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from veto_core import Authorization, Decision, Effect, ToolCall, Veto
from veto_core import adapters as _shared
from veto_core.adapters import Verdict, approval_id, decision_text, state_name

__all__ = [
    "PendingApproval",
    "Verdict",
    "authorize",
    "authorize_and_wait",
    "check_approval",
    "decide",
    "decision_text",
    "find_pending",
    "refusal",
    "withheld",
]

_DEFAULT_TENANT = "default"


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingApproval:
    """A require_approval decision that is already recorded, with its request."""

    decision: Decision
    approval: Any  # ApprovalRequest (veto_core.approvals) or None when unknown
    approval_id: str | None


def refusal(call: ToolCall, outcome: str, why: str, **kw: Any) -> Verdict:
    """A ``Verdict`` that does not run the tool, with a reason the model can read."""
    return _shared.refusal(call.tool, outcome, why, **kw)


def withheld(call: ToolCall, text: str) -> Verdict:
    """The call ran but its output could not be recorded in the run (``text``, from
    ``observe_output``): the model gets this ``error`` answer instead of the output."""
    return Verdict(run=False, outcome="error", reason=text, call=call)


def _error(call: ToolCall, exc: BaseException) -> Verdict:
    return _shared.error_verdict(call.tool, exc)


def _explain_approval(auth: Authorization, outcome: str) -> str:
    """LangChain's wording for a require_approval call that was not released: the
    request must be decided again (a new call, or a resume after ``interrupt()``)."""
    if auth.approval_error:
        return _shared.approval_text(auth, outcome)
    state = state_name(auth.approval) or "pending"
    ident = approval_id(auth.approval)
    what = f"approval request {ident}" if ident else "the approval request"
    return (
        f"{what} is {state}, so the call needs a new decision. "
        f"Approval was required: {decision_text(auth.decision)}"
    )


def from_authorization(call: ToolCall, auth: Authorization) -> Verdict:
    """Map an ``Authorization`` (after any waiting) to a ``Verdict``."""
    return _shared.from_authorization(call, auth, explain_approval=_explain_approval)


# --- the calls into veto_core (each fails closed) ------------------------------------------


def decide(veto: Veto, call: ToolCall) -> Decision | Verdict:
    """``veto.decide`` (pure, no record); a ``Verdict`` refusal when it raises."""
    try:
        return veto.decide(call)
    except Exception as exc:
        return _error(call, exc)


def authorize(veto: Veto, call: ToolCall) -> tuple[Verdict, Authorization | None]:
    """Decide and durably record once; creates the approval request when required.

    Returns the verdict as of now (a require_approval decision is a refusal here:
    the caller waits or interrupts) and the ``Authorization`` when there is one.
    """
    return _shared.authorize(veto, call, explain_approval=_explain_approval)


def authorize_and_wait(veto: Veto, call: ToolCall, timeout: float | None = None) -> Verdict:
    """Decide, record and, when approval is required, block until it is decided or
    times out (``Veto.authorize_and_wait``). Runs only if APPROVED (consumed on release)."""
    if getattr(veto, "authorize_and_wait", None) is not None:
        return _shared.authorize_and_wait(veto, call, timeout, explain_approval=_explain_approval)
    try:
        verdict, auth = authorize(veto, call)
        if auth is not None and auth.decision.effect is Effect.REQUIRE_APPROVAL:
            return refusal(
                call,
                "error",
                "approval is required but this veto-core has no approval service "
                "(Veto.authorize_and_wait); failing closed. " + decision_text(auth.decision),
                decision=auth.decision,
            )
        return verdict
    except Exception as exc:
        return _error(call, exc)


def check_approval(veto: Veto, call: ToolCall) -> bool:
    """True only if the request bound to this call is APPROVED and was unconsumed
    (it is consumed now). Any failure is False."""
    fn = getattr(veto, "check_approval", None)
    if fn is None:
        return False
    try:
        return fn(call) is True
    except Exception:
        return False


def approval_state(veto: Veto, approval_id: str | None) -> str | None:
    """The request's current state name (lower case), or None if unknown."""
    if approval_id is None:
        return None
    try:
        return state_name(veto.approvals.get(approval_id))
    except Exception:
        return None


def _tenant_of(veto: Veto, call: ToolCall) -> str:
    return call.tenant or call.principal.tenant or veto.tenant or _DEFAULT_TENANT


def find_pending(veto: Veto, call: ToolCall) -> PendingApproval | None:
    """The approval request already open for exactly this call, if any.

    Looks it up by the binding ``(tenant, run_id, tool_call_id, tool,
    args_digest)`` (``veto.approvals.find``). Used when a LangGraph node re-runs
    after ``interrupt()``: the call was decided and recorded (with its request) on
    the first run, so it must not be decided and recorded again. Edited arguments
    have another digest, find nothing, and are decided afresh. Raises on a store
    failure (callers fail closed).
    """
    if call.tool_call_id is None:
        return None
    finder = getattr(veto, "find_approval", None)
    if finder is None:
        return None
    request = finder(call)
    if request is None:
        return None
    return PendingApproval(
        decision=veto.decide(call), approval=request, approval_id=approval_id(request)
    )


def approval_payload(
    veto: Veto, call: ToolCall, decision: Decision, approval: Any, approval_id: str | None
) -> dict[str, Any]:
    """What ``interrupt()`` shows the application: enough to render an approval prompt."""
    from veto_core.audit import redact_args

    spec = decision.approval
    args: Mapping[str, Any] | Any
    try:
        args = redact_args(call.args, veto.redact)
    except Exception:
        args = {}
    return {
        "type": "veto.approval_required",
        "request_id": approval_id,
        "tool": call.tool,
        "tool_call_id": call.tool_call_id,
        "run_id": call.run_id,
        "tenant": _tenant_of(veto, call),
        "args": args,
        "rule_ids": list(decision.deciding_rule_ids),
        "reasons": list(decision.reasons),
        "requirements": [r.to_dict() for r in spec.requirements] if spec else [],
        "approvers": list(spec.approvers) if spec else [],
        "quorum": spec.quorum if spec else 1,
        "timeout_s": spec.timeout_s if spec else None,
        "expires_at": _iso(getattr(approval, "expires_at", None)),
        "how_to_resume": (
            "decide the request in the approval store (veto approvals approve ID, the "
            "dashboard, Slack, ...) then resume the graph with Command(resume=...); the "
            "resume value is not trusted: only an APPROVED request in the store runs the tool"
        ),
    }


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    iso = getattr(value, "isoformat", None)
    return iso() if callable(iso) else str(value)

"""Turn a ``ToolCall`` into "run it" or "don't, because ...", failing closed.

Every path here ends in a :class:`Verdict`; any exception (store down, a bug, a plugin
that raises, an approval service that fails) becomes a refusal with a reason, never a
run. Only ``Verdict.run`` lets a tool body execute.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from veto_core import Authorization, Decision, Effect, ToolCall, Veto

__all__ = ["Verdict", "check", "failure"]

_STATE_OUTCOME = {"denied": "rejected", "expired": "expired", "cancelled": "cancelled"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The answer for one call. ``reason`` is what the model sees when ``run`` is False;
    it names the deciding rule ids. ``outcome``: ``allowed``, ``approved``, ``denied``,
    ``rejected``, ``expired``, ``pending``, ``cancelled``, ``error``..."""

    run: bool
    outcome: str
    reason: str
    call: ToolCall | None = None
    authorization: Authorization | None = None

    @property
    def decision(self) -> Decision | None:
        return self.authorization.decision if self.authorization else None

    @property
    def approval_id(self) -> str | None:
        approval = self.authorization.approval if self.authorization else None
        ident = getattr(approval, "id", None)
        return None if ident is None else str(ident)


def _label(tool: str) -> str:
    return f"Veto: tool call '{tool}' was not run"


def failure(tool: str, exc: BaseException, call: ToolCall | None = None) -> Verdict:
    """A refusal for an exception anywhere in the check (fail closed)."""
    return Verdict(
        run=False,
        outcome="error",
        reason=f"{_label(tool)} (error): the policy check failed, so the call is blocked "
        f"(fail closed): {type(exc).__name__}: {exc}",
        call=call,
    )


def _with_rule_ids(text: str, decision: Decision) -> str:
    text = text or "no reason given"
    missing = [r for r in decision.deciding_rule_ids if f"[{r}]" not in text]
    return text + (" [" + ", ".join(missing) + "]" if missing else "")


def _state(approval: Any) -> str:
    state = getattr(approval, "state", None)
    return str(getattr(state, "value", state) or "pending").lower()


def from_authorization(call: ToolCall, auth: Authorization) -> Verdict:
    decision = auth.decision
    if auth.run_tool:
        outcome = "approved" if decision.effect is Effect.REQUIRE_APPROVAL else "allowed"
        return Verdict(run=True, outcome=outcome, reason="", call=call, authorization=auth)
    if decision.effect is Effect.REQUIRE_APPROVAL:
        if auth.approval_error:
            outcome = "error"
        elif auth.approval is None:
            outcome = "pending"
        else:
            state = _state(auth.approval)
            outcome = _STATE_OUTCOME.get(state, state)
            if outcome == "approved":  # approved, but this call did not get to use it
                outcome = "not released"
        text = _with_rule_ids(auth.reason, decision)
    else:
        outcome = "denied"
        text = _with_rule_ids(decision.reason, decision)
    return Verdict(
        run=False,
        outcome=outcome,
        reason=f"{_label(call.tool)} ({outcome}): {text}",
        call=call,
        authorization=auth,
    )


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def check(veto: Veto, call: ToolCall, *, approval_timeout: float | None = None) -> Verdict:
    """Decide, durably record and, when approval is required, block until the request is
    decided or expires (``Veto.authorize_and_wait``; ``approval_timeout`` caps the rule's
    timeout). Runs only if allowed, or APPROVED and consumed by this very call.

    Called on a thread that runs an event loop, it never blocks: an approval that is not
    already granted is refused (with that reason) instead of waited for.
    """
    try:
        timeout = approval_timeout
        if _on_event_loop_thread():
            timeout = 0.0
        auth = veto.authorize_and_wait(call, timeout=timeout)
        return from_authorization(call, auth)
    except Exception as exc:
        return failure(call.tool, exc, call)

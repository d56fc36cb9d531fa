"""Turn a ``ToolCall`` into "run it" or "don't, because ...", failing closed.

Every path here ends in a :class:`Verdict`; any exception (store down, a bug, a plugin
that raises, an approval service that fails) becomes a refusal with a reason, never a
run. Only ``Verdict.run`` lets a tool body execute. The ``Verdict`` and the mapping
are the ones all adapters share (:mod:`veto_core.adapters`); CrewAI words a held
approval with the ``Authorization``'s own reason.

After a call ran, :func:`observe` / :func:`aobserve` record its output in the run
(DESIGN.md 2.7) with the shared toolkit; a failure gives the text to show the model
instead of the output. Before the first call of a kickoff is decided, :func:`check`
records the kickoff's inputs as ``"@user"`` (:mod:`veto_crewai._runs`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from veto_core import Authorization, Effect, ToolCall, Veto
from veto_core import adapters as _shared
from veto_core.adapters import Verdict, decision_text
from veto_core.adapters import error_verdict as failure

from ._runs import observe_kickoff_inputs

__all__ = ["Verdict", "aobserve", "check", "failure", "observe"]


def _explain_approval(auth: Authorization, outcome: str) -> str:
    """CrewAI's wording: the ``Authorization``'s own one-line reason (the decision's
    reasons and the approval's state), with the rule ids."""
    return decision_text(auth.decision, auth.reason)


def from_authorization(call: ToolCall, auth: Authorization) -> Verdict:
    """Map an ``Authorization`` (after any waiting) to a ``Verdict``."""
    return _shared.from_authorization(call, auth, explain_approval=_explain_approval)


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

    The kickoff's inputs are recorded as ``"@user"`` first (once per kickoff); when
    that fails the call is still decided and recorded, but refused (no approval wait).

    Called on a thread that runs an event loop, it never blocks: an approval that is not
    already granted is refused (with that reason) instead of waited for.
    """

    def decide() -> Verdict:
        unrecorded = observe_kickoff_inputs(veto, call)
        waits = unrecorded is None and not _on_event_loop_thread()
        timeout = approval_timeout if waits else 0.0
        verdict = from_authorization(call, veto.authorize_and_wait(call, timeout=timeout))
        if unrecorded is None or not verdict.run:
            return verdict
        # Decided and recorded as usual, but the run's input is not in its history, so
        # the decision may have missed what the person named: the call does not run
        # (a call refused anyway keeps its own reason).
        return _shared.refusal(
            call.tool,
            "error",
            unrecorded.removeprefix("Veto: "),
            decision=verdict.decision,
            approval_id=verdict.approval_id,
            call=call,
        )

    return _shared.fail_closed(call.tool, decide, call=call)


def _effect(verdict: Verdict) -> Effect:
    decision = verdict.decision
    return decision.effect if decision is not None else Effect.ALLOW


def _unobservable(verdict: Verdict) -> str:
    return (
        f"Veto: the output of tool call '{verdict.call.tool if verdict.call else '?'}' was "
        "withheld: the call that ran is unknown, so its output cannot be recorded (fail closed)"
    )


def _outside_runs(verdict: Verdict) -> bool:
    # A call made outside any run (a direct ``tool.run`` with no kickoff and no run id
    # configured) has no history to join: no later decision can read one, and a flow
    # rule on such a call is itself an error (2.7). Its output is shown as is.
    return verdict.call is not None and not verdict.call.run_id


def observe(veto: Veto, verdict: Verdict, output: Any) -> str | None:
    """Record the output of a call that ran (``verdict.run``) with the decision's effect
    (``require_approval`` for an approved one). None when recorded (or the call belongs
    to no run), else the text the model gets instead of the output."""
    if verdict.call is None:
        return _unobservable(verdict)
    if _outside_runs(verdict) or not veto.observes_runs:
        return None
    return _shared.observe_output(veto, verdict.call, output, effect=_effect(verdict))


async def aobserve(veto: Veto, verdict: Verdict, output: Any) -> str | None:
    """:func:`observe` for async code paths."""
    if verdict.call is None:
        return _unobservable(verdict)
    if _outside_runs(verdict) or not veto.observes_runs:
        return None
    return await _shared.aobserve_output(veto, verdict.call, output, effect=_effect(verdict))

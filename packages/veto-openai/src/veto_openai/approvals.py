"""Native approvals: a ``require_approval`` call pauses the run in ``result.interruptions``;
a person decides the Veto request (CLI, dashboard, Slack, ...); the run resumes with the
store's decision — from the same process or, through ``RunState.to_json()``, another one.

>>> result = await Runner.run(agent, "refund 500", run_config=veto_openai.run_config())  # doctest: +SKIP
>>> for p in approvals.sync(result, veto):                  # the Veto request of each pause
...     print(p.tool, p.request.id, p.state)                # doctest: +SKIP
>>> # ... later, after `veto approvals approve ID --as alice`:
>>> result = await approvals.resume(result, veto)            # doctest: +SKIP

Only the store decides: :func:`resume` calls ``state.approve`` for a request that is
APPROVED (and unused) and ``state.reject`` with the reason for one that is denied,
expired or cancelled; and even a call approved with ``state.approve`` by hand runs only
if its Veto request is APPROVED (the guardrail checks again and consumes it, once).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agents import Agent, FunctionTool, RunConfig, Runner, RunResult, RunState
from agents.items import ToolApprovalItem

from veto_core import Decision, Effect, ToolCall, Veto

from . import _gate
from ._gate import Verdict
from .guard import VetoGuard, VetoToolGuardrail, guard_of, mcp_canonical_name, run_config

__all__ = [
    "PendingCall",
    "PendingPolicy",
    "apply",
    "pending_calls",
    "resume",
    "resume_sync",
    "sync",
]

PendingPolicy = Literal["keep", "reject", "wait"]


@dataclass(frozen=True, kw_only=True)
class PendingCall:
    """One interruption of the run, as Veto sees it.

    ``governed`` is False for pauses Veto has nothing to say about (a tool that is not
    guarded). ``request`` is the bound Veto approval request (None when the policy
    allows the call: the pause is then the application's own ``needs_approval``).
    ``refusal`` is set when the call must not run (denied, a closed request, or a
    failed check); its ``reason`` is what the model will read.
    """

    item: ToolApprovalItem
    governed: bool
    tool: str | None = None
    call: ToolCall | None = None
    decision: Decision | None = None
    request: Any = None  # veto_core.approvals.ApprovalRequest, or None
    refusal: Verdict | None = None

    @property
    def state(self) -> str:
        """``approved`` / ``pending`` / ``denied`` / ``expired`` / ``cancelled`` /
        ``used`` (approved, already consumed) / ``refused`` / ``allowed`` / ``ungoverned``."""
        if not self.governed:
            return "ungoverned"
        if self.refusal is not None:
            return "refused"
        if self.request is None:
            return "allowed"
        state = _gate.state_name(self.request) or "pending"
        if state == "approved" and getattr(self.request, "consumed_at", None) is not None:
            return "used"
        return state


def _state_of(result_or_state: Any) -> RunState[Any, Any]:
    if isinstance(result_or_state, RunState):
        return result_or_state
    to_state = getattr(result_or_state, "to_state", None)
    if callable(to_state):
        state = to_state()
        if isinstance(state, RunState):
            return state
    raise TypeError(f"expected a RunResult or a RunState, got {type(result_or_state).__name__}")


def _items_and_context(result_or_state: Any) -> tuple[list[ToolApprovalItem], Any]:
    if isinstance(result_or_state, RunState):
        ctx = getattr(result_or_state, "_context", None)
        return list(result_or_state.get_interruptions()), getattr(ctx, "context", None)
    items = list(getattr(result_or_state, "interruptions", []) or [])
    wrapper = getattr(result_or_state, "context_wrapper", None)
    return items, getattr(wrapper, "context", None)


def _locate(item: ToolApprovalItem) -> tuple[VetoGuard, str, str | None] | None:
    """The guard, canonical tool name and agent name of an interrupted call."""
    agent = item.agent
    name = item.tool_name or item.name or ""
    for tool in getattr(agent, "tools", None) or ():
        if isinstance(tool, FunctionTool) and tool.name == name:
            for g in tool.tool_input_guardrails or ():
                if isinstance(g, VetoToolGuardrail) and g.guard is not None:
                    return g.guard, g.tool, g.agent_name or getattr(agent, "name", None)
            break
    guard = guard_of(agent)
    if guard is None:
        return None
    return guard, mcp_canonical_name(guard, name, item.tool_origin), getattr(agent, "name", None)


def _pending_call(item: ToolApprovalItem, veto: Veto | None, context: Any) -> PendingCall:
    located = _locate(item)
    if located is None or getattr(item.raw_item, "type", None) != "function_call":
        return PendingCall(item=item, governed=False)
    guard, tool, agent_name = located
    veto = veto or guard.veto
    try:
        call = guard.build_call(
            tool,
            item.arguments,
            tool_call_id=item.call_id,
            run_context=context,
            agent_name=agent_name,
        )
    except Exception as exc:
        return PendingCall(item=item, governed=True, tool=tool, refusal=_gate.error(tool, exc))
    try:
        decision = veto.decide(call)
        request = veto.find_approval(call)
        if request is None and decision.enforced and decision.effect is not Effect.ALLOW:
            verdict, auth = _gate.authorize(veto, call)  # the pause was not recorded yet
            if auth is not None and auth.approval is not None and not auth.approval_error:
                request = auth.approval
            else:
                return PendingCall(
                    item=item, governed=True, tool=tool, call=call, decision=decision,
                    refusal=verdict,
                )  # fmt: skip
    except Exception as exc:
        return PendingCall(
            item=item, governed=True, tool=tool, call=call, refusal=_gate.error(tool, exc)
        )
    refusal: Verdict | None = None
    if decision.effect is Effect.DENY and decision.enforced:
        refusal = _gate.refusal(tool, "denied", _gate.decision_text(decision), decision=decision)
    return PendingCall(
        item=item, governed=True, tool=tool, call=call, decision=decision, request=request,
        refusal=refusal,
    )  # fmt: skip


def sync(result_or_state: Any, veto: Veto | None = None) -> list[PendingCall]:
    """The Veto side of every interruption of a paused run: finds the bound approval
    request, or decides, records and opens it now when the run paused without the
    pre-approval guardrails (see :func:`veto_openai.run_config`). Idempotent: calling
    it again records nothing new. Never raises for a store failure (the call is
    refused, with the error as its reason)."""
    items, context = _items_and_context(result_or_state)
    return [_pending_call(item, veto, context) for item in items]


def apply(
    state: RunState[Any, Any],
    veto: Veto | None = None,
    *,
    pending: PendingPolicy = "keep",
    timeout: float | None = None,
) -> list[PendingCall]:
    """Apply the store's decisions to ``state`` (``state.approve`` / ``state.reject``);
    returns the interruptions as they were decided. ``pending``: ``"keep"`` leaves an
    undecided call paused, ``"reject"`` cancels its request and tells the model it was
    not approved in time, ``"wait"`` blocks until it is decided or expires
    (``timeout`` seconds at most)."""
    if pending not in ("keep", "reject", "wait"):
        raise ValueError(f"pending must be keep/reject/wait, not {pending!r}")
    out: list[PendingCall] = []
    for p in sync(state, veto):
        if not p.governed:
            out.append(p)
            continue
        v = veto or _locate(p.item)[0].veto  # type: ignore[index]
        if p.state == "pending" and pending == "wait" and p.request is not None:
            p = _wait(v, p, timeout)
        if p.refusal is not None:
            state.reject(p.item, rejection_message=p.refusal.reason)
        elif p.request is None:
            pass  # the policy allows it: the pause is the application's own approval
        elif p.state == "approved":
            state.approve(p.item)  # the guardrail consumes the Veto approval when it runs
        elif p.state == "pending":
            if pending == "keep":
                out.append(p)
                continue
            p = _cancel(v, p)
            state.reject(p.item, rejection_message=_not_run(p, " and the run went on").reason)
        else:
            state.reject(p.item, rejection_message=_not_run(p).reason)
        out.append(p)
    return out


def _not_run(p: PendingCall, note: str = "") -> Verdict:
    assert p.call is not None and p.decision is not None
    return _gate.not_released(p.call, p.decision, p.request, note)


def _wait(veto: Veto, p: PendingCall, timeout: float | None) -> PendingCall:
    try:
        veto.approvals.wait(p.request.id, timeout)
        return dataclasses.replace(p, request=veto.approvals.get(p.request.id))
    except Exception as exc:
        return dataclasses.replace(p, refusal=_gate.error(p.tool or "?", exc))


def _cancel(veto: Veto, p: PendingCall) -> PendingCall:
    try:
        request = veto.approvals.cancel(
            p.request.id, by="veto-openai", reason="not decided before the run went on"
        )
        return dataclasses.replace(p, request=request)
    except Exception:
        return p


def _agent_of(state: RunState[Any, Any], agent: Agent[Any] | None) -> Agent[Any]:
    found = (
        agent or getattr(state, "_current_agent", None) or getattr(state, "_starting_agent", None)
    )
    if not isinstance(found, Agent):
        raise TypeError("pass agent=: the RunState does not say which agent to resume")
    return found


async def resume(
    result_or_state: RunResult | RunState[Any, Any],
    veto: Veto | None = None,
    *,
    agent: Agent[Any] | None = None,
    run_config: RunConfig | None = None,
    pending: PendingPolicy = "keep",
    timeout: float | None = None,
    **run_kwargs: Any,
) -> RunResult:
    """Apply the store's decisions (:func:`apply`) and continue the run with
    ``Runner.run``. Calls still pending (``pending="keep"``) pause again in the new
    result's ``interruptions``. ``agent``: the guarded agent (default: the state's
    current agent; pass it for a ``RunState`` restored with ``RunState.from_json``)."""
    state = _state_of(result_or_state)
    await asyncio.to_thread(apply, state, veto, pending=pending, timeout=timeout)
    return await Runner.run(
        _agent_of(state, agent), state, run_config=_config(run_config), **run_kwargs
    )


def resume_sync(
    result_or_state: RunResult | RunState[Any, Any],
    veto: Veto | None = None,
    *,
    agent: Agent[Any] | None = None,
    run_config: RunConfig | None = None,
    pending: PendingPolicy = "keep",
    timeout: float | None = None,
    **run_kwargs: Any,
) -> RunResult:
    """:func:`resume` for synchronous code (``Runner.run_sync``)."""
    state = _state_of(result_or_state)
    apply(state, veto, pending=pending, timeout=timeout)
    return Runner.run_sync(
        _agent_of(state, agent), state, run_config=_config(run_config), **run_kwargs
    )


def _config(cfg: RunConfig | None) -> RunConfig:
    return run_config(cfg)


def pending_calls(calls: Sequence[PendingCall]) -> list[PendingCall]:
    """The calls among ``calls`` still waiting for a person."""
    return [p for p in calls if p.governed and p.state == "pending"]

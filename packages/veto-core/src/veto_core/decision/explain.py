"""Why a call got its decision (`veto explain`): every rule of the policy, whether
it applied to the call and why, plus the run's labels and tainted values (2.7).

Pure like the deciders: the caller (`Veto.explain`) supplies the decision and
what deciding saw (env, tenant, clock, run lookup); nothing here does I/O beyond
reading the call's run through that lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..model import Decision, Effect, ToolCall
from ..policy.compiler import CompiledPolicy, normalize_tool_name
from ..policy.conditions import EvalContext, RunLookup
from ..policy.operators import EvalError
from ..runs.state import TaintMatch

__all__ = ["Explanation", "RuleTrace", "TaintTrace", "explain"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleTrace:
    """How one rule fared for one call (`veto explain`)."""

    rule_id: str
    effect: Effect
    file: str
    line: int | None
    tool_matched: bool
    scope: str | None  # None when every scope matched, else why not
    condition: str  # "none" | "true" | "false" | "error" | "skipped"
    leaves: tuple[tuple[str, str], ...]  # (leaf description, outcome)
    errors: tuple[str, ...]
    result: Effect | None  # the effect this rule contributed, or None


@dataclass(frozen=True, kw_only=True, slots=True)
class TaintTrace:
    """Why a `tainted_by` leaf of a rule saw a tainted value (`veto explain`, 2.7):
    every observed output containing it."""

    rule_id: str
    field: str
    labels: tuple[str, ...]
    matches: tuple[TaintMatch, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Explanation:
    decision: Decision
    tool: str
    env: str | None
    tenant: str | None
    roles: tuple[str, ...]
    rules: tuple[RuleTrace, ...]
    #: the call's run (2.7): its labels (None without a run or when it cannot be read)
    run_labels: tuple[str, ...] | None = None
    run_error: str | None = None
    taint: tuple[TaintTrace, ...] = ()


def explain(
    p: CompiledPolicy,
    call: ToolCall,
    decision: Decision,
    *,
    env: str | None,
    tenant: str | None,
    clock: Callable[[], datetime],
    runs: RunLookup | None,
) -> Explanation:
    """Trace every rule of ``p`` for ``call``, which was decided ``decision`` in
    ``env`` / ``tenant`` (the call's own, else the deciding Veto's)."""
    tool = normalize_tool_name(call.tool) if isinstance(call.tool, str) else str(call.tool)
    candidates = {r.id for r in p.candidates(tool)}
    roles = p.effective_roles(call.principal.roles)
    ctx = EvalContext(call, env, tenant, p.effective_roles, clock, runs)
    traces: list[RuleTrace] = []
    taint: list[TaintTrace] = []
    for rule in p.rules:
        scope = None
        if rule.envs is not None and env not in rule.envs:
            scope = f"env {env!r} not in {sorted(rule.envs)}"
        elif rule.tenants is not None and tenant not in rule.tenants:
            scope = f"tenant {tenant!r} not in {sorted(rule.tenants)}"
        elif rule.roles is not None and rule.roles.isdisjoint(roles):
            scope = f"roles {sorted(roles)} do not include any of {sorted(rule.roles)}"
        elif rule.agents is not None and call.principal.agent not in rule.agents:
            scope = f"agent {call.principal.agent!r} not in {sorted(rule.agents)}"
        tool_matched = rule.id in candidates
        leaves: list[tuple[str, str]] = []
        errs: tuple[str, ...] = ()
        result: Effect | None = None
        if not tool_matched or scope is not None:
            condition = "skipped"
        elif rule.condition is None:
            condition, result = "none", rule.effect
        else:
            for leaf in rule.condition.leaves:
                leaves.append((_describe_leaf(leaf), _leaf_outcome(leaf, ctx)))
                found = _taint_trace(rule.id, leaf, ctx)
                if found is not None:
                    taint.append(found)
            try:
                ok = rule.condition.fn(ctx)
                condition = "true" if ok else "false"
                result = rule.effect if ok else rule.otherwise
            except EvalError as exc:
                condition, errs = "error", exc.messages
                result = rule.effect if rule.effect is not Effect.ALLOW else rule.otherwise
        traces.append(
            RuleTrace(
                rule_id=rule.id, effect=rule.effect, file=rule.file, line=rule.line, tool_matched=tool_matched,
                scope=scope, condition=condition, leaves=tuple(leaves), errors=errs, result=result,
            )
        )  # fmt: skip
    run_labels: tuple[str, ...] | None = None
    run_error: str | None = None
    if call.run_id is not None:
        try:
            run_labels = tuple(ctx.run.labels)
        except EvalError as exc:
            run_error = "; ".join(exc.messages)
    return Explanation(
        decision=decision,
        tool=tool,
        env=env,
        tenant=tenant,
        roles=tuple(sorted(roles)),
        rules=tuple(traces),
        run_labels=run_labels,
        run_error=run_error,
        taint=tuple(taint),
    )


def _taint_trace(rule_id: str, leaf: Any, ctx: EvalContext) -> TaintTrace | None:
    """The observed outputs that taint a `tainted_by` leaf's value (None if none)."""
    if leaf.taint is None:
        return None
    labels, min_length = leaf.taint
    try:
        matches = ctx.run.matches(leaf.value(ctx), labels, min_length)
    except Exception:  # no run, no value: the rule trace already shows the error
        return None
    if not matches:
        return None
    return TaintTrace(
        rule_id=rule_id, field=leaf.field, labels=tuple(sorted(labels)), matches=matches
    )


def _describe_leaf(leaf: Any) -> str:
    return f"{leaf.field} {leaf.operator} {leaf.operand!r}"


def _leaf_outcome(leaf: Any, ctx: EvalContext) -> str:
    try:
        value = leaf.value(ctx)
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
    except EvalError as exc:
        return f"error: {'; '.join(exc.messages)}"
    try:
        return f"{'true' if leaf.fn(ctx) else 'false'} (value {shown})"
    except EvalError as exc:
        return f"error: {'; '.join(exc.messages)}"

"""The reference evaluator: a plain loop over a tool's candidate rules.

It is the executable form of DESIGN.md 2.2, kept simple on purpose: the compiled
per-tool deciders (`compiled.py`) are tested against it (same effect, rule ids,
reasons, errors and approval for random policies and calls), and `veto explain`
follows the same steps. It is not the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..model import ApprovalSpec, Decision, Effect, ToolCall, make_decision
from ..policy.compiler import CompiledPolicy, CompiledRule, normalize_tool_name
from ..policy.conditions import EvalContext, RunLookup
from ..policy.operators import EvalError

__all__ = ["combine_approvals", "decide_reference", "preflight", "rule_reason"]

_ALLOW, _DENY, _APPROVE = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL


def preflight(
    p: CompiledPolicy, call: ToolCall, env: str | None, tenant: str | None
) -> Decision | str:
    """The checks before any rule: a tool name, and the env/tenant a scoped policy
    needs. Returns the canonical tool name, or the deny decision."""
    tool = call.tool
    if type(tool) is not str or not tool:
        return make_decision(_DENY, (), (), ("tool name is missing",), (), p.name, p.revision, None)
    if tool[0] == "@":
        reason = f"tool name {tool!r} is reserved: names starting with '@' are pseudo-tools (DESIGN.md 2.7)"
        return make_decision(_DENY, (), (), (reason,), (), p.name, p.revision, None)
    if (p.requires_env and env is None) or (p.requires_tenant and tenant is None):
        missing = "environment" if p.requires_env and env is None else "tenant"
        reason = f"the policy scopes rules by {missing} and this call has none"
        return make_decision(_DENY, (), (), (reason,), (), p.name, p.revision, None)
    return tool if tool.isascii() else normalize_tool_name(tool)


def decide_reference(
    p: CompiledPolicy,
    call: ToolCall,
    env: str | None,
    tenant: str | None,
    clock: Callable[[], datetime],
    runs: RunLookup | None = None,
) -> Decision:
    """Decide ``call`` (``env``/``tenant`` already defaulted) by DESIGN.md 2.2;
    ``runs`` gives the call's run state to flow rules (2.7)."""
    tool = preflight(p, call, env, tenant)
    if isinstance(tool, Decision):
        return tool
    principal = call.principal
    denies: list[CompiledRule] = []
    approvals: list[CompiledRule] = []
    allows: list[CompiledRule] = []
    matched: list[str] = []
    errors: list[str] = []
    errored: set[str] = set()
    ctx = EvalContext(call, env, tenant, p.effective_roles, clock, runs)
    candidates = p.candidates_cache.get(tool)
    for rule in p.candidates(tool) if candidates is None else candidates:
        if rule.envs is not None and env not in rule.envs:
            continue
        if rule.tenants is not None and tenant not in rule.tenants:
            continue
        if rule.roles is not None and rule.roles.isdisjoint(p.effective_roles(principal.roles)):
            continue
        if rule.agents is not None and principal.agent not in rule.agents:
            continue
        effect: Effect | None
        if rule.condition is None:
            effect = rule.effect
        else:
            try:
                ok = rule.condition.fn(ctx)
            except EvalError as exc:
                errors.extend(f"rule '{rule.id}': {m}" for m in exc.messages)
                errored.add(rule.id)
                # Fail closed: an error matches a deny/approval rule, never an allow.
                effect = rule.effect if rule.effect is not _ALLOW else rule.otherwise
            else:
                effect = rule.effect if ok else rule.otherwise
        if effect is None:
            continue
        matched.append(rule.id)
        {_DENY: denies, _APPROVE: approvals, _ALLOW: allows}[effect].append(rule)
    return combine(p, matched, denies, approvals, allows, tuple(errors), errored)


def combine(
    p: CompiledPolicy,
    matched: list[str],
    denies: list[CompiledRule],
    approvals: list[CompiledRule],
    allows: list[CompiledRule],
    errors: tuple[str, ...],
    errored: set[str],
) -> Decision:
    """DESIGN.md 2.2 step 3: deny over require_approval over allow over the default."""
    approval: ApprovalSpec | None = None
    if denies:
        winners, effect = denies, _DENY
    elif approvals:
        winners, effect = approvals, _APPROVE
        approval = combine_approvals(approvals)
    elif allows:
        winners, effect = allows, _ALLOW
    else:
        effect = p.default
        return make_decision(
            effect, (), (), p.default_reasons, errors, p.name, p.revision,
            ApprovalSpec() if effect is _APPROVE else None,
        )  # fmt: skip
    if not errored and len(winners) == 1 and winners[0].effect is effect:
        reasons = winners[0].reasons
    else:
        reasons = tuple(rule_reason(r, effect, errored) for r in winners)
    return make_decision(
        effect, tuple(matched), tuple(r.id for r in winners), reasons, errors, p.name,
        p.revision, approval,
    )  # fmt: skip


def combine_approvals(rules: list[CompiledRule]) -> ApprovalSpec:
    """One requirement per deciding approval rule, each to be met on its own; union of
    channels, shortest timeout (DESIGN.md 2.2 step 3). A requirement is never merged
    into another: an overlay's approvers alone can never release a base rule's approval."""
    specs = [r.approval or ApprovalSpec() for r in rules]
    if len(specs) == 1:
        return specs[0]
    return ApprovalSpec(
        requirements=tuple(req for s in specs for req in s.requirements),
        timeout_s=min(s.timeout_s for s in specs),
        channels=tuple(sorted({c for s in specs for c in s.channels})),
    )


def rule_reason(rule: CompiledRule, effect: Effect, errored: set[str]) -> str:
    text = f"{rule.reason} [{rule.id}]"
    if rule.id in errored:
        return f"{text} (its condition could not be evaluated; failing closed)"
    if rule.effect is not effect:
        return f"{text} (condition not met; otherwise {effect.value})"
    return text

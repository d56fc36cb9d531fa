"""Per-tool compiled deciders: one generated Python function per tool name.

For a tool, the candidate rules are known once the policy is compiled, so their
scope checks are written out inline, a condition shared by several rules is
evaluated once per call, and the outcome of every rule is packed into one integer
(two bits per rule: its condition was true, false, or an error). The Decision is a
pure function of that integer (and of the error messages, when there are any), so
it is built once and shared by every call with the same outcome (DESIGN.md 2.2.4).

Deciders are built lazily, on a tool's first call, and published in the policy's
cache only when complete: a call never sees a half-built decider. They are
checked against `reference.decide_reference` (tests/core/test_compiled_decisions.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..model import Decision, Effect, ToolCall
from ..policy.compiler import CompiledPolicy, CompiledRule
from ..policy.conditions import EvalContext
from ..policy.operators import EvalError
from .reference import combine, preflight

__all__ = ["ToolDecider", "decide_compiled", "decider_for"]

_ALLOW, _DENY, _APPROVE = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL
_TRUE, _FALSE, _ERROR = 1, 2, 3
_CACHE_LIMIT = 4096  # distinct outcomes (with error texts) kept per tool
_DECIDERS_LIMIT = 65_536  # tools kept per policy

Decide = Callable[[ToolCall, "str | None", "str | None", Callable[[], datetime]], Decision]


class ToolDecider:
    """The compiled decision procedure of one tool name under one policy."""

    __slots__ = ("decide", "policy", "rules", "source")

    def __init__(self, policy: CompiledPolicy, rules: tuple[CompiledRule, ...]) -> None:
        self.policy = policy
        self.rules = rules
        cache: dict[Any, Decision] = {}
        self.source, namespace = _generate(policy, rules)
        namespace.update(
            _cache=cache,
            _build=self._build_for(cache),
            _EvalContext=EvalContext,
            _EvalError=EvalError,
            _roles_of=policy.effective_roles,
        )
        code = compile(self.source, f"<veto decider {len(rules)} rules>", "exec")
        exec(code, namespace)  # our own generated text; no policy string is ever code
        self.decide: Decide = namespace["decide"]

    def _build_for(self, cache: dict[Any, Decision]) -> Callable[[Any, Any], Decision]:
        rules = self.rules
        p = self.policy

        def build(key: Any, errors: tuple[str, ...] | None) -> Decision:
            outcomes = key if errors is None else key[0]
            denies: list[CompiledRule] = []
            approvals: list[CompiledRule] = []
            allows: list[CompiledRule] = []
            matched: list[str] = []
            errored: set[str] = set()
            for i, rule in enumerate(rules):
                state = (outcomes >> (2 * i)) & 3
                if state == 0:
                    continue
                if state == _TRUE:
                    effect: Effect | None = rule.effect
                elif state == _FALSE:
                    effect = rule.otherwise
                else:
                    errored.add(rule.id)
                    effect = rule.effect if rule.effect is not _ALLOW else rule.otherwise
                if effect is None:
                    continue
                matched.append(rule.id)
                {_DENY: denies, _APPROVE: approvals, _ALLOW: allows}[effect].append(rule)
            decision = combine(p, matched, denies, approvals, allows, errors or (), errored)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = decision
            return decision

        return build


def _generate(p: CompiledPolicy, rules: tuple[CompiledRule, ...]) -> tuple[str, dict[str, Any]]:
    """Python source of ``decide(call, env, tenant, clock)`` for these rules.

    Only names of objects placed in the namespace appear in the text: rule ids,
    scopes and conditions are referenced, never pasted in.
    """
    ns: dict[str, Any] = {}
    lines = [
        "def decide(call, env, tenant, clock):",
        "    key = 0",
        "    errs = None",
        "    ctx = None",
        "    roles = None",
        "    principal = call.principal",
    ]
    cond_index: dict[str, int] = {}
    settled: set[int] = set()  # conditions already evaluated on every path to here
    for j, rule in enumerate(rules):
        if rule.condition is not None:
            text = json.dumps(rule.model.if_, sort_keys=True, default=repr)
            if text not in cond_index:
                k = len(cond_index)
                cond_index[text] = k
                ns[f"_c{k}"] = rule.condition.fn
                lines.append(f"    k{k} = None")
        ind = "    "
        checks: list[str] = []
        if rule.envs is not None:
            ns[f"_env{j}"] = rule.envs
            checks.append(f"env in _env{j}")
        if rule.tenants is not None:
            ns[f"_ten{j}"] = rule.tenants
            checks.append(f"tenant in _ten{j}")
        if checks:
            lines.append(f"{ind}if {' and '.join(checks)}:")
            ind += "    "
        if rule.roles is not None:
            ns[f"_rol{j}"] = rule.roles
            lines.append(f"{ind}if roles is None:")
            lines.append(f"{ind}    roles = _roles_of(principal.roles)")
            lines.append(f"{ind}if not _rol{j}.isdisjoint(roles):")
            ind += "    "
        if rule.agents is not None:
            ns[f"_agt{j}"] = rule.agents
            lines.append(f"{ind}if principal.agent in _agt{j}:")
            ind += "    "
        shift = 2 * j
        if rule.condition is None:
            lines.append(f"{ind}key |= {_TRUE << shift}")
        else:
            k = cond_index[json.dumps(rule.model.if_, sort_keys=True, default=repr)]
            ns[f"_rid{j}"] = f"rule '{rule.id}': "
            if k not in settled:
                lines += [
                    f"{ind}if k{k} is None:",
                    f"{ind}    if ctx is None:",
                    f"{ind}        ctx = _EvalContext(call, env, tenant, _roles_of, clock)",
                    f"{ind}    try:",
                    f"{ind}        k{k} = True if _c{k}(ctx) else False",
                    f"{ind}    except _EvalError as exc:",
                    f"{ind}        k{k} = exc",
                ]
                if ind == "    ":
                    settled.add(k)
            lines += [
                f"{ind}if k{k} is True:",
                f"{ind}    key |= {_TRUE << shift}",
                f"{ind}elif k{k} is False:",
                f"{ind}    key |= {_FALSE << shift}",
                f"{ind}else:",
                f"{ind}    key |= {_ERROR << shift}",
                f"{ind}    if errs is None:",
                f"{ind}        errs = []",
                f"{ind}    errs.extend([_rid{j} + m for m in k{k}.messages])",
            ]
    lines += [
        "    if errs is None:",
        "        d = _cache.get(key)",
        "        return d if d is not None else _build(key, None)",
        "    errs = tuple(errs)",
        "    d = _cache.get((key, errs))",
        "    return d if d is not None else _build((key, errs), errs)",
    ]
    return "\n".join(lines) + "\n", ns


def decider_for(p: CompiledPolicy, tool: str) -> ToolDecider:
    """The decider of ``tool`` (canonical name), built on first use."""
    found: ToolDecider | None = p.deciders.get(tool)
    if found is None:
        found = ToolDecider(p, p.candidates(tool))
        if len(p.deciders) >= _DECIDERS_LIMIT:
            p.deciders.clear()
        p.deciders[tool] = found  # published whole: readers see it complete or not at all
    return found


def decide_compiled(
    p: CompiledPolicy,
    call: ToolCall,
    env: str | None,
    tenant: str | None,
    clock: Callable[[], datetime],
) -> Decision:
    """Decide ``call`` (``env``/``tenant`` already defaulted); same result as the reference."""
    tool = call.tool
    if type(tool) is str and tool.isascii() and not p.requires_env and not p.requires_tenant:
        found: ToolDecider | None = p.deciders.get(tool)
        if found is not None:
            return found.decide(call, env, tenant, clock)
    checked = preflight(p, call, env, tenant)
    if isinstance(checked, Decision):
        return checked
    return decider_for(p, checked).decide(call, env, tenant, clock)

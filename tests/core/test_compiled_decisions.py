"""The compiled per-tool deciders decide exactly as the reference evaluator.

`Veto.decide` runs one generated function per tool (veto_core.decision.compiled);
the plain loop of veto_core.decision.reference is the executable form of DESIGN.md
2.2. For random policies (shared conditions, role/agent/env/tenant scopes,
`otherwise`, globs) and random calls, both give the same effect, rule ids,
deciding rule ids, reasons, errors and approval; and equal outcomes share one
Decision object (DESIGN.md 2.2.4). Flow rules (run.*, tainted_by: 2.7) too.
"""

from __future__ import annotations

from typing import Any

from engine_helpers import FIXED_NOW
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runs.flow_helpers import BrokenRunStore, flow_veto
from runs.flow_strategies import flow_policy, flow_rules, observations, observe_all, pay_calls
from strategies import ENVS, calls, policies, policy_text

from veto_core import Decision, PolicyError, Principal, ToolCall, Veto
from veto_core.decision import decide_compiled, decide_reference

ROLES = {"agent": {}, "support": {"inherits": ["agent"]}, "lead": {"inherits": ["support"]}}


def _fields(d: Decision) -> tuple[Any, ...]:
    return (
        d.effect,
        d.rule_ids,
        d.deciding_rule_ids,
        d.reasons,
        d.errors,
        d.policy_name,
        d.policy_revision,
        d.approval,
    )


@st.composite
def scoped_policies(draw: st.DrawFn) -> dict[str, Any]:
    """The shared random policies, plus roles and tenant scopes, and conditions
    copied between rules (a compiled decider evaluates each distinct one once)."""
    doc = draw(policies(max_rules=8))
    if doc["default"] == "require_approval":  # a load error (DESIGN.md 2.2): nothing to decide
        doc["default"] = draw(st.sampled_from(["allow", "deny"]))
    doc["roles"] = ROLES
    rules = doc["rules"]
    conds = [r["if"] for r in rules if "if" in r]
    for rule in rules:
        if conds and draw(st.integers(0, 3)) == 0:
            rule["if"] = draw(st.sampled_from(conds))
            rule.pop("otherwise", None) if draw(st.booleans()) else None
            if rule.get("otherwise") == rule["effect"]:
                rule.pop("otherwise")
        if "if" in rule and draw(st.integers(0, 3)) == 0:
            # Principal fields (a principal.user of None is missing: an error).
            who = draw(
                st.sampled_from(
                    [
                        {"field": "principal.user", "starts_with": "u"},
                        {"field": "principal.agent", "equals": "bot-1"},
                        {"field": "principal.session", "matches": "^s"},
                    ]
                )
            )
            rule["if"] = {draw(st.sampled_from(["all", "any"])): [rule["if"], who]}
        scope = draw(st.integers(0, 5))
        when = rule.setdefault("when", {})
        if scope == 0:
            when["role"] = draw(st.lists(st.sampled_from(sorted(ROLES)), min_size=1, unique=True))
        elif scope == 1 and draw(st.booleans()):
            when["tenant"] = draw(
                st.lists(st.sampled_from(["acme", "globex"]), min_size=1, unique=True)
            )
        if not when:
            del rule["when"]
    return doc


@st.composite
def scoped_calls(draw: st.DrawFn) -> ToolCall:
    call = draw(calls())
    roles = tuple(draw(st.lists(st.sampled_from([*ROLES, "other"]), max_size=2)))
    tenant = draw(st.one_of(st.none(), st.sampled_from(["acme", "globex"])))
    tool = draw(st.sampled_from([call.tool, "t1", "x1", "unknown", "t\u0065\u0301"]))
    return ToolCall(
        tool=tool,
        args=call.args,
        principal=Principal(
            agent=call.principal.agent,
            roles=roles,
            user=draw(st.sampled_from([None, "u1", "x", 7])),
            session=draw(st.sampled_from([None, "s1", "t"])),
        ),
        env=call.env,
        tenant=tenant,
        now=FIXED_NOW,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=scoped_policies(), batch=st.lists(scoped_calls(), min_size=1, max_size=8))
def test_compiled_deciders_decide_as_the_reference(
    doc: dict[str, Any], batch: list[ToolCall]
) -> None:
    try:
        veto = Veto.from_yaml(policy_text(doc), clock=lambda: FIXED_NOW)
    except PolicyError:
        return  # the strategies sometimes draw an invalid policy; loading is tested elsewhere
    p = veto.policy
    for call in batch * 2:  # twice: the second pass decides from the deciders' caches
        env = call.env or veto.env
        tenant = call.tenant or call.principal.tenant or veto.tenant
        expected = decide_reference(p, call, env, tenant, veto.clock)
        compiled = decide_compiled(p, call, env, tenant, veto.clock)
        assert _fields(compiled) == _fields(expected), (call, p.rules)
        if p.shadow_view is None and p.enforced:
            assert _fields(veto.decide(call)) == _fields(expected)


def test_equal_outcomes_share_one_decision_object() -> None:
    veto = Veto.from_yaml(
        """
version: 1
name: p
rules:
  - id: small
    effect: allow
    tools: [refund]
    if: {field: args.amount, less_or_equal: 100}
""",
        clock=lambda: FIXED_NOW,
    )
    one = veto.decide(ToolCall(tool="refund", args={"amount": 5}, principal=Principal(agent="a")))
    two = veto.decide(ToolCall(tool="refund", args={"amount": 7}, principal=Principal(agent="b")))
    assert one is two and one.effect.value == "allow"
    other = veto.decide(
        ToolCall(tool="refund", args={"amount": 500}, principal=Principal(agent="a"))
    )
    assert other.effect.value == "deny" and other is not one


def test_a_condition_shared_by_rules_is_evaluated_once() -> None:
    seen: list[Any] = []

    def counted(operand: Any, *, ignore_case: bool = False) -> Any:
        def pred(v: Any) -> bool:
            seen.append(v)
            return bool(v == operand)

        return pred

    veto = Veto.from_yaml(
        """
version: 1
name: p
rules:
  - {id: a, effect: allow, tools: [t], if: {field: args.x, counted_equals: 1}}
  - {id: b, effect: allow, tools: [t], if: {field: args.x, counted_equals: 1}}
  - {id: c, effect: deny, tools: [t], when: {role: [lead]}, if: {field: args.x, counted_equals: 1}}
  - {id: d, effect: deny, tools: [t], if: {field: args.x, counted_equals: 2}}
roles: {lead: {}}
""",
        clock=lambda: FIXED_NOW,
        operators={"counted_equals": counted},
    )
    d = veto.decide(
        ToolCall(tool="t", args={"x": 1}, principal=Principal(agent="a", roles=("lead",)))
    )
    assert d.rule_ids == ("a", "b", "c") and d.effect.value == "deny"
    assert seen == [1, 1]  # one evaluation per distinct condition, not one per rule


def test_missing_env_is_decided_before_any_decider() -> None:
    veto = Veto.from_yaml(
        """
version: 1
name: p
default: allow
rules:
  - {id: a, effect: deny, tools: [t], when: {env: [prod]}}
""",
    )
    d = veto.decide(ToolCall(tool="t", args={}, principal=Principal(agent="a")))
    assert d.effect.value == "deny" and "environment" in d.reasons[0]
    d = veto.decide(ToolCall(tool="t", args={}, principal=Principal(agent="a"), env=ENVS[1]))
    assert d.rule_ids == ("a",)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=flow_rules(monotone=False),
    default=st.sampled_from(["allow", "deny"]),
    history=observations,
    batch=st.lists(pay_calls, min_size=1, max_size=5),
    broken=st.booleans(),
)
def test_compiled_deciders_decide_flow_rules_as_the_reference(
    rules: list[dict[str, Any]],
    default: str,
    history: list[tuple[str, str, str]],
    batch: list[ToolCall],
    broken: bool,
) -> None:
    """Flow rules (DESIGN.md 2.7): run.labels, run.calls, tainted_by, calls with and
    without run_id, with a run store that works and one that fails."""
    try:
        veto = flow_veto(flow_policy(rules, default), store=BrokenRunStore() if broken else None)
    except PolicyError:
        return
    if not broken:
        observe_all(veto, history)
    p = veto.policy
    runs = veto._runs.lookup
    for call in batch * 2:
        expected = decide_reference(p, call, None, None, veto.clock, runs)
        compiled = decide_compiled(p, call, None, None, veto.clock, runs)
        assert _fields(compiled) == _fields(expected), (call, rules)
        assert _fields(veto.decide(call)) == _fields(expected)

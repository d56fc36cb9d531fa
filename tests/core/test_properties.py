"""Property tests: small random policies and calls (Hypothesis).

- Rule order never changes a decision.
- Adding a deny rule never makes a decision more permissive (never turns anything into allow).
- A call missing an argument that an allow rule's condition requires is never allowed by it.
"""

from __future__ import annotations

import json
from typing import Any

from engine_helpers import FIXED_NOW
from hypothesis import given
from hypothesis import strategies as st

from veto_core import Decision, Effect, Principal, ToolCall, Veto

FIELDS = ("a", "b", "c")
TOOLS = ("t1", "t2", "t3")
TOOL_PATTERNS = ("t1", "t2", "t*", "*", "x*")
AGENTS = ("bot-1", "bot-2")
ENVS = ("dev", "prod")
RANK = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}

scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["x", "y", "xy", "1", "2.5", "", "abc"]),
    st.booleans(),
    st.none(),
)
values = st.one_of(
    scalars, st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"])), max_size=3)
)

OPERANDS: dict[str, st.SearchStrategy[Any]] = {
    "equals": scalars,
    "not_equals": scalars,
    "in": st.lists(scalars, min_size=1, max_size=3),
    "not_in": st.lists(scalars, min_size=1, max_size=3),
    "greater_than": st.integers(-3, 3),
    "less_or_equal": st.integers(-3, 3),
    "between": st.tuples(st.integers(-3, 3), st.integers(0, 3)).map(lambda p: [p[0], p[0] + p[1]]),
    "contains": st.sampled_from(["x", "1", 1]),
    "starts_with": st.sampled_from(["x", "a", ["x", "y"]]),
    "matches": st.sampled_from(["^x", "b", "[0-9]", ["y$", "^a"]]),
    "length_greater_than": st.integers(0, 3),
    "exists": st.booleans(),
}


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(OPERANDS)))
    field = draw(st.sampled_from(FIELDS))
    if op in ("equals", "greater_than") and draw(st.booleans()):
        operand: Any = {"field": f"args.{draw(st.sampled_from(FIELDS))}"}
    else:
        operand = draw(OPERANDS[op])
    return {"field": f"args.{field}", op: operand}


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
        inner.map(lambda c: {"not": c}),
    ),
    max_leaves=5,
)

OTHERWISE = {
    "allow": ["deny", "require_approval"],
    "deny": ["require_approval"],
    "require_approval": ["deny"],
}


@st.composite
def rule_bodies(draw: st.DrawFn, effect: str | None = None) -> dict[str, Any]:
    effect = effect or draw(st.sampled_from(["allow", "deny", "require_approval"]))
    body: dict[str, Any] = {
        "effect": effect,
        "tools": draw(
            st.lists(st.sampled_from(TOOL_PATTERNS), min_size=1, max_size=2, unique=True)
        ),
    }
    if draw(st.integers(0, 3)) > 0:
        body["if"] = draw(conditions)
        if draw(st.integers(0, 4)) == 0:
            body["otherwise"] = draw(st.sampled_from(OTHERWISE[effect]))
    scope = draw(st.integers(0, 9))
    if scope == 0:
        body["when"] = {"agent": draw(st.lists(st.sampled_from(AGENTS), min_size=1, unique=True))}
    elif scope == 1:
        body["when"] = {"env": draw(st.lists(st.sampled_from(ENVS), min_size=1, unique=True))}
    if "require_approval" in (effect, body.get("otherwise")):
        # An approval must name approvers (DESIGN.md 2.8), and a quorum they can reach.
        approvers = draw(
            st.lists(
                st.sampled_from(["role:a", "role:b", "u1"]), min_size=1, max_size=2, unique=True
            )
        )
        roles = any(a.startswith("role:") for a in approvers)
        body["approval"] = {
            "approvers": approvers,
            "quorum": draw(st.integers(1, 3)) if roles else 1,
            "timeout": draw(st.sampled_from(["10m", "1h", "2d"])),
        }
    return body


@st.composite
def rule_lists(draw: st.DrawFn, max_size: int = 6) -> list[dict[str, Any]]:
    bodies = draw(st.lists(rule_bodies(), max_size=max_size))
    return [{"id": f"r{i}", **b} for i, b in enumerate(bodies)]


@st.composite
def calls(draw: st.DrawFn) -> ToolCall:
    args = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=3))
    return ToolCall(
        tool=draw(st.sampled_from(TOOLS)),
        args=args,
        principal=Principal(agent=draw(st.one_of(st.none(), st.sampled_from(AGENTS)))),
        env=draw(st.one_of(st.none(), st.sampled_from(ENVS))),
        now=FIXED_NOW,
    )


defaults = st.sampled_from(["allow", "deny"])  # a default cannot name approvers


def build(rules: list[dict[str, Any]], default: str) -> Veto:
    doc = {"version": 1, "name": "prop", "default": default, "rules": rules}
    return Veto.from_yaml(json.dumps(doc))


def essence(d: Decision) -> tuple[Any, ...]:
    """Everything but the revision (which hashes rule order) and the timing."""
    return (
        d.effect,
        d.rule_ids,
        d.deciding_rule_ids,
        d.reasons,
        d.errors,
        d.approval,
        d.policy_name,
    )


# --- rule order ---------------------------------------------------------------------------


@given(
    data=st.data(),
    rules=rule_lists(),
    default=defaults,
    call_list=st.lists(calls(), min_size=1, max_size=4),
)
def test_rule_order_never_changes_a_decision(
    data: st.DataObject, rules: list[dict[str, Any]], default: str, call_list: list[ToolCall]
) -> None:
    shuffled = data.draw(st.permutations(rules))
    original, permuted = build(rules, default), build(shuffled, default)
    for c in call_list:
        assert essence(original.decide(c)) == essence(permuted.decide(c))


# --- adding a deny rule -------------------------------------------------------------------


@given(
    rules=rule_lists(),
    extra=rule_bodies(effect="deny"),
    default=defaults,
    call_list=st.lists(calls(), min_size=1, max_size=4),
)
def test_adding_a_deny_rule_never_makes_a_decision_more_permissive(
    rules: list[dict[str, Any]], extra: dict[str, Any], default: str, call_list: list[ToolCall]
) -> None:
    before = build(rules, default)
    with_otherwise = "otherwise" in extra
    after = build([*rules, {"id": "added-deny", **extra}], default)
    for c in call_list:
        b, a = before.decide(c), after.decide(c)
        # Never turns anything into allow, with or without `otherwise`.
        if a.effect is Effect.ALLOW:
            assert b.effect is Effect.ALLOW
            assert a.deciding_rule_ids == b.deciding_rule_ids
        if not with_otherwise:
            # A plain deny rule is monotone: deny stays deny, nothing gets more permissive.
            assert RANK[a.effect] >= RANK[b.effect], (b, a)
        elif b.effect is Effect.DENY and (b.deciding_rule_ids or not b.rule_ids):
            # `otherwise: require_approval` may turn a *default* deny into an approval
            # (that is what it says); a deny by a rule or by a missing scope stays.
            assert a.effect is not Effect.ALLOW
            if b.deciding_rule_ids or b.reasons[0].startswith("the policy scopes"):
                assert a.effect is Effect.DENY


# --- a missing argument never lets an allow rule through ----------------------------------


def _errs(cond: dict[str, Any], x: str) -> bool:
    """The condition is an error whenever args.<x> is missing."""
    if "not" in cond:
        return _errs(cond["not"], x)
    if "all" in cond or "any" in cond:
        return all(_errs(c, x) for c in cond.get("all", cond.get("any")))
    return _leaf_needs(cond, x)


def _never_true(cond: dict[str, Any], x: str) -> bool:
    """The condition can never be true when args.<x> is missing."""
    if "not" in cond:
        return _errs(cond["not"], x)
    if "all" in cond:
        return any(_never_true(c, x) for c in cond["all"])
    if "any" in cond:
        return all(_never_true(c, x) for c in cond["any"])
    return _leaf_needs(cond, x)


def _leaf_needs(leaf: dict[str, Any], x: str) -> bool:
    if "exists" in leaf:
        return False  # exists is defined on a missing field
    target = f"args.{x}"
    operands = [v for k, v in leaf.items() if k != "field"]
    return leaf["field"] == target or any(
        isinstance(o, dict) and o.get("field") == target for o in operands
    )


@given(rules=rule_lists(), default=defaults, c=calls(), x=st.sampled_from(FIELDS))
def test_an_allow_rule_never_allows_a_call_missing_an_argument_it_requires(
    rules: list[dict[str, Any]], default: str, c: ToolCall, x: str
) -> None:
    args = {k: v for k, v in c.args.items() if k != x}
    c = ToolCall(tool=c.tool, args=args, principal=c.principal, env=c.env, now=c.now)
    veto = build(rules, default)
    d = veto.decide(c)
    requiring = {
        r["id"] for r in rules if r["effect"] == "allow" and "if" in r and _never_true(r["if"], x)
    }
    if d.effect is Effect.ALLOW:
        assert requiring.isdisjoint(d.deciding_rule_ids), d
    traces = {t.rule_id: t for t in veto.explain(c).rules}
    for rule_id in requiring:
        assert traces[rule_id].result is not Effect.ALLOW
        assert traces[rule_id].condition != "true"


@given(rules=rule_lists(), default=defaults, c=calls())
def test_a_decision_is_always_a_whole_value(
    rules: list[dict[str, Any]], default: str, c: ToolCall
) -> None:
    veto = build(rules, default)
    d = veto.decide(c)
    assert d.effect in RANK
    assert set(d.deciding_rule_ids) <= set(d.rule_ids)
    assert list(d.rule_ids) == sorted(d.rule_ids)
    assert (d.approval is not None) is (d.effect is Effect.REQUIRE_APPROVAL)
    assert len(d.reasons) == max(1, len(d.deciding_rule_ids))
    assert d.policy_revision == veto.policy_revision
    if d.effect is Effect.ALLOW:
        # An allow always comes from an allow rule that matched, or an allow default.
        assert d.deciding_rule_ids or default == "allow"
    assert essence(veto.decide(c)) == essence(d)  # deterministic

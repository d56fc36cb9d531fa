"""Property tests over random policies and calls with hostile values (issue 14, fuzzing).

- Never crashes: a random (even mangled) policy loads or raises PolicyError; a
  decision is always a whole value, whatever the call carries.
- Rule order never changes a decision.
- Errors fail closed: a condition that errs never lets an allow rule decide, and
  always makes a deny / require_approval rule count as matched (DESIGN.md 2.2).
- A tenant overlay never widens its base's decision (DESIGN.md 2.4): no allow that
  the base does not give, a base rule's deny stays, a base approval keeps its rules.

Bounded: at most 100 examples each, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from strategies import (
    RANK,
    calls,
    overlays,
    policies,
    policy_text,
    rule_lists,
    values,
)

from veto_core import Decision, Effect, PolicyError, ToolCall, Veto

BOUNDED = settings(
    max_examples=100,
    deadline=5000,  # ms: only a pathological slowness fails, not a busy machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # Shrinking these documents can take minutes; a failure is reported as found
    # (set VETO_FUZZ_SHRINK=1 to shrink it when debugging).
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    + ([Phase.shrink] if os.environ.get("VETO_FUZZ_SHRINK") else []),
)


def build(doc: dict[str, Any]) -> Veto:
    return Veto.from_yaml(policy_text(doc))


def essence(d: Decision) -> tuple[Any, ...]:
    return (d.effect, d.rule_ids, d.deciding_rule_ids, d.reasons, d.errors, d.approval)


def check_whole(d: Decision) -> None:
    assert d.effect in RANK
    assert set(d.deciding_rule_ids) <= set(d.rule_ids)
    assert (d.approval is not None) is (d.effect is Effect.REQUIRE_APPROVAL)
    assert all(isinstance(e, str) for e in (*d.reasons, *d.errors))
    json.dumps([d.reasons, d.errors])  # what `veto check --json` prints


# --- never crashes ------------------------------------------------------------------------


@st.composite
def mangled(draw: st.DrawFn) -> dict[str, Any]:
    """A policy with one random value put somewhere it may not belong."""
    doc = draw(policies(max_rules=3))
    junk = draw(values)
    where = draw(st.integers(0, 5))
    if where == 0 or not doc["rules"]:
        doc[draw(st.sampled_from(["default", "lists", "rules", "name", "extra"]))] = junk
    else:
        rule = doc["rules"][draw(st.integers(0, len(doc["rules"]) - 1))]
        rule[draw(st.sampled_from(["if", "tools", "when", "effect", "approval", "x"]))] = junk
    return doc


@BOUNDED
@given(doc=mangled(), call_list=st.lists(calls(), min_size=1, max_size=3))
def test_a_random_policy_loads_or_is_a_policy_error_and_never_crashes_decide(
    doc: dict[str, Any], call_list: list[ToolCall]
) -> None:
    try:
        veto = build(doc)
    except PolicyError as exc:
        assert exc.problems and all(p.file for p in exc.problems)
        return
    for c in call_list:
        check_whole(veto.decide(c))
        veto.explain(c)


@BOUNDED
@given(doc=policies(), call_list=st.lists(calls(), min_size=1, max_size=4))
def test_hostile_calls_always_get_a_whole_decision(
    doc: dict[str, Any], call_list: list[ToolCall]
) -> None:
    veto = build(doc)
    for c in call_list:
        d = veto.decide(c)
        check_whole(d)
        assert essence(veto.decide(c)) == essence(d)  # deterministic


# --- order --------------------------------------------------------------------------------


@BOUNDED
@given(data=st.data(), doc=policies(), call_list=st.lists(calls(), min_size=1, max_size=4))
def test_rule_order_never_changes_a_decision(
    data: st.DataObject, doc: dict[str, Any], call_list: list[ToolCall]
) -> None:
    shuffled = {**doc, "rules": data.draw(st.permutations(doc["rules"]))}
    original, permuted = build(doc), build(shuffled)
    for c in call_list:
        assert essence(original.decide(c)) == essence(permuted.decide(c))


# --- errors fail closed -------------------------------------------------------------------


@BOUNDED
@given(doc=policies(), call_list=st.lists(calls(), min_size=1, max_size=4))
def test_errors_fail_closed(doc: dict[str, Any], call_list: list[ToolCall]) -> None:
    veto = build(doc)
    for c in call_list:
        explanation = veto.explain(c)
        d = explanation.decision
        assert essence(d) == essence(veto.decide(c))
        if d.effect is Effect.DENY and not d.rule_ids:
            continue  # denied before any rule: the policy scopes by env and the call has none
        for trace in explanation.rules:
            if trace.condition != "error" or not trace.tool_matched or trace.scope is not None:
                continue
            assert trace.errors
            if trace.effect is Effect.ALLOW:
                assert trace.rule_id not in d.deciding_rule_ids or d.effect is not Effect.ALLOW
                assert trace.result is not Effect.ALLOW
            else:
                # A deny / approval rule whose condition errs counts as matched.
                assert trace.result is trace.effect
                assert RANK[d.effect] >= RANK[trace.effect], (trace, d)
                assert trace.rule_id in d.rule_ids
        if d.effect is Effect.ALLOW:
            allowing = [t for t in explanation.rules if t.rule_id in d.deciding_rule_ids]
            assert all(t.condition in ("true", "none") for t in allowing), allowing


# --- overlays never widen -----------------------------------------------------------------


@BOUNDED
@given(
    base=policies(),
    overlay=overlays(),
    call_list=st.lists(calls(), min_size=1, max_size=4),
)
def test_a_tenant_overlay_never_widens_its_base(
    base: dict[str, Any], overlay: dict[str, Any], call_list: list[ToolCall]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tenants").mkdir()
        (root / "base.yaml").write_text(policy_text(base), encoding="utf-8")
        (root / "tenants" / "acme.yaml").write_text(policy_text(overlay), encoding="utf-8")
        base_only = Veto.from_file(root, tenant="globex")
        try:
            tenant = Veto.from_file(root, tenant="acme")
        except PolicyError as exc:
            # Refused: e.g. narrowing a list a base deny rule relies on.
            assert "overlay" in str(exc) or "list" in str(exc), exc
            assume(False)
            return
    for c in call_list:
        b, t = base_only.decide(c), tenant.decide(c)
        assert t.effect is not Effect.ALLOW or b.effect is Effect.ALLOW, (c, b, t)
        by_scope = b.reasons[0].startswith("the policy scopes")
        if b.effect is Effect.DENY and (b.deciding_rule_ids or by_scope):
            # A deny by a base rule (or by a missing scope) stays a deny. Only the base's
            # *default* deny may become an approval, when the overlay adds an approval
            # rule for the call (DESIGN.md 2.2 step 3: a matching rule beats the default).
            assert t.effect is Effect.DENY, (c, b, t)
        elif b.effect is Effect.REQUIRE_APPROVAL:
            assert t.effect is not Effect.ALLOW
            if t.effect is Effect.REQUIRE_APPROVAL:
                # Every base approval rule still has its say (an overlay only adds some).
                assert set(b.deciding_rule_ids) <= set(t.deciding_rule_ids), (b, t)


@BOUNDED
@given(base=policies(), extra=rule_lists(max_size=2, effect="deny", prefix="d"), c=calls())
def test_adding_deny_rules_never_turns_anything_into_allow(
    base: dict[str, Any], extra: list[dict[str, Any]], c: ToolCall
) -> None:
    before, after = build(base), build({**base, "rules": [*base["rules"], *extra]})
    b, a = before.decide(c), after.decide(c)
    if a.effect is Effect.ALLOW:
        assert b.effect is Effect.ALLOW

"""Properties of flow rules (DESIGN.md 2.7), checked on random policies and runs.

- the taint index answers exactly as a brute-force search of each labelled output;
- observing an output never makes a decision more permissive for deny/approval rules
  that read the run (`tainted_by`, `run.labels`, `for_any: run.calls`);
- the compiled per-tool deciders decide flow rules as the reference evaluator.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core import Decision, Effect, PolicyError, RunEvent, ToolCall
from veto_core.decision import decide_compiled, decide_reference
from veto_core.runs import RunState, normalize

from .flow_helpers import FIXED_NOW, BrokenRunStore, flow_veto

RANK = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}
LABELS = ("bad", "user", "secret")
SOURCE_TOOLS = {"bad": "read_web", "user": "@user", "secret": "read_key"}
AT = datetime(2024, 1, 1, tzinfo=UTC)

# A small alphabet, so that values often do occur in outputs (and often only partly).
chars = st.sampled_from(list("abAB12 \t\n-\uff21\u00e9e\u0301."))
texts = st.text(chars, max_size=40)
arg_values = st.one_of(
    texts,
    st.integers(-5, 130),
    st.sampled_from([1.0, 12.0, 2.5, True, None]),
    st.lists(texts, max_size=3),
    st.dictionaries(st.sampled_from(["k", "v"]), texts, max_size=2),
)


def _brute(
    value: Any, outputs: list[tuple[frozenset[str], str]], wanted: frozenset[str], n: int
) -> bool:
    from veto_core.runs.text import value_texts

    for text in value_texts(value):
        v = normalize(text)
        if (
            len(v) >= n
            and v
            and any(labels & wanted and v in normalize(out) for labels, out in outputs)
        ):
            return True
    return False


@given(
    outputs=st.lists(
        st.tuples(st.frozensets(st.sampled_from(LABELS), max_size=2), texts), max_size=6
    ),
    value=arg_values.filter(lambda v: v is not None),
    wanted=st.frozensets(st.sampled_from(LABELS), min_size=1),
    min_length=st.integers(1, 6),
)
def test_the_taint_index_answers_as_a_brute_force_search(
    outputs: list[tuple[frozenset[str], str]], value: Any, wanted: frozenset[str], min_length: int
) -> None:
    state = RunState(
        RunEvent(seq=i + 1, tool="t", labels=labels, text=text, at=AT)
        for i, (labels, text) in enumerate(outputs)
    )
    expected = _brute(value, outputs, wanted, min_length)
    assert state.tainted(value, wanted, min_length) is expected
    # a value in no labelled output is never tainted, whatever the index holds
    if expected:
        assert state.matches(value, wanted, min_length)


def _policy(rules: list[dict[str, Any]], default: str) -> str:
    doc = {
        "version": 1,
        "name": "flow-props",
        "default": default,
        "sources": [
            {"id": f"s-{label}", "tools": [tool], "labels": [label]}
            for label, tool in SOURCE_TOOLS.items()
        ]
        + [
            {
                "id": "s-cond",
                "tools": ["read_*"],
                "if": {"field": "args.a", "equals": "x"},
                "labels": ["secret"],
            }
        ],
        "rules": rules,
    }
    return json.dumps(doc)


@st.composite
def flow_leaves(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        leaf: dict[str, Any] = {
            "field": draw(st.sampled_from(["args.a", "args.b", "args.c", "args.a[*]"])),
            "tainted_by": draw(
                st.one_of(
                    st.sampled_from(LABELS),
                    st.lists(st.sampled_from(LABELS), min_size=1, max_size=2),
                )
            ),
        }
        if draw(st.booleans()):
            leaf["min_length"] = draw(st.integers(1, 6))
        return leaf
    if kind == 1:
        return {"field": "run.labels", "contains": draw(st.sampled_from(LABELS))}
    if kind == 2:
        return {
            "for_any": "run.calls",
            "if": {
                "field": "item.tool",
                "equals": draw(st.sampled_from(["read_web", "pay", "read_key"])),
            },
        }
    if kind == 3:
        return {"field": "run.calls[*].args.a", "equals": draw(texts)}
    return {"field": "args.a", "equals": draw(texts)}  # a plain leaf next to flow ones


@st.composite
def monotone_conditions(draw: st.DrawFn) -> dict[str, Any]:
    parts = draw(st.lists(flow_leaves(), min_size=1, max_size=3))
    return parts[0] if len(parts) == 1 else {draw(st.sampled_from(["all", "any"])): parts}


@st.composite
def flow_rules(draw: st.DrawFn, monotone: bool) -> list[dict[str, Any]]:
    rules = []
    for i in range(draw(st.integers(1, 5))):
        effect = draw(
            st.sampled_from(["deny", "require_approval"] + ([] if monotone else ["allow"]))
        )
        cond = draw(monotone_conditions())
        if not monotone and draw(st.integers(0, 3)) == 0:
            cond = {"not": cond}
        rule: dict[str, Any] = {
            "id": f"r{i}",
            "effect": effect,
            "tools": [draw(st.sampled_from(["pay", "p*", "*"]))],
            "if": cond,
        }
        if effect == "require_approval":
            rule["approval"] = {"approvers": ["alice"]}
        rules.append(rule)
    if monotone:  # allow rules that do not read the run
        rules.append(
            {
                "id": "allow-small",
                "effect": "allow",
                "tools": ["pay"],
                "if": {"field": "args.c", "equals": 1},
            }
        )
    return rules


observations = st.lists(
    st.tuples(
        st.sampled_from([*SOURCE_TOOLS.values(), "pay", "other"]),
        st.sampled_from(["x", "y"]),
        texts,
    ),
    max_size=5,
)
pay_calls = st.builds(
    lambda a, b, c, run_id: ToolCall(
        tool="pay", args={"a": a, "b": b, "c": c}, run_id=run_id, now=FIXED_NOW
    ),
    arg_values,
    arg_values,
    st.sampled_from([0, 1]),
    st.sampled_from(["r", None]),
)


def _observe(veto: Any, history: list[tuple[str, str, str]]) -> None:
    for tool, a, text in history:
        args = {} if tool.startswith("@") else {"a": a}
        veto.observe(ToolCall(tool=tool, args=args, run_id="r"), text)


@settings(max_examples=100)
@given(
    rules=flow_rules(monotone=True),
    # default allow: under default deny, an approval rule that starts to match is
    # "less than deny" by the language's own rule (2.2), whatever it reads
    default=st.just("allow"),
    before=observations,
    extra=observations,
    call=pay_calls,
)
def test_observing_never_makes_a_decision_more_permissive(
    rules: list[dict[str, Any]],
    default: str,
    before: list[tuple[str, str, str]],
    extra: list[tuple[str, str, str]],
    call: ToolCall,
) -> None:
    try:
        veto = flow_veto(_policy(rules, default))
    except PolicyError:
        return
    _observe(veto, before)
    first = veto.decide(call)
    _observe(veto, extra)
    then = veto.decide(call)
    assert RANK[then.effect] >= RANK[first.effect], (first, then)


def _fields(d: Decision) -> tuple[Any, ...]:
    return (d.effect, d.rule_ids, d.deciding_rule_ids, d.reasons, d.errors, d.approval)


@settings(max_examples=100)
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
    try:
        veto = flow_veto(_policy(rules, default), store=BrokenRunStore() if broken else None)
    except PolicyError:
        return
    if not broken:
        _observe(veto, history)
    p = veto.policy
    runs = veto._runs.lookup
    for call in batch * 2:
        expected = decide_reference(p, call, None, None, veto.clock, runs)
        compiled = decide_compiled(p, call, None, None, veto.clock, runs)
        assert _fields(compiled) == _fields(expected)
        assert _fields(veto.decide(call)) == _fields(expected)

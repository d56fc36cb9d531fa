"""Hypothesis strategies for flow policies and runs (DESIGN.md 2.7), shared by the
flow property tests and the compiled-decider equivalence test."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from veto_core import ToolCall

from .flow_helpers import FIXED_NOW

__all__ = [
    "AT",
    "LABELS",
    "arg_values",
    "flow_policy",
    "flow_rules",
    "observations",
    "observe_all",
    "pay_calls",
    "texts",
]

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


def flow_policy(rules: list[dict[str, Any]], default: str) -> str:
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


def observe_all(veto: Any, history: list[tuple[str, str, str]]) -> None:
    for tool, a, text in history:
        args = {} if tool.startswith("@") else {"a": a}
        veto.observe(ToolCall(tool=tool, args=args, run_id="r"), text)

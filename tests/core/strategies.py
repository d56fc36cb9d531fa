"""Reusable Hypothesis strategies: random policies, overlays and calls, hostile values.

A plain module (not conftest) so property tests import what they need:

    from strategies import calls, policies, policy_text, overlays

Policies are built as Python data and written as JSON (which is YAML), so every
value keeps its exact type. Values mix the ordinary with the hostile: overflowing
numeric strings, NaN/Infinity, odd IPv4 spellings, control characters, URLs with
tricky ports, backslashed paths, quote storms.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from veto_core import Effect, Principal, ToolCall

__all__ = [
    "AGENTS",
    "ENVS",
    "FIELDS",
    "HOSTILE_STRINGS",
    "LIST_NAMES",
    "RANK",
    "TOOLS",
    "call_args",
    "calls",
    "conditions",
    "hostile_values",
    "leaves",
    "overlays",
    "policies",
    "policy_text",
    "rule_bodies",
    "rule_lists",
    "values",
]

FIXED_NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # a Monday, noon UTC
FIELDS = ("a", "b", "c")
TOOLS = ("t1", "t2", "t3")
TOOL_PATTERNS = ("t1", "t2", "t*", "*", "x*")
AGENTS = ("bot-1", "bot-2")
ENVS = ("dev", "prod")
LIST_NAMES = ("hosts", "nums", "words")
RANK = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}

#: Values that attack testing used (DESIGN.md 2.1 "Hostile values"), plus near misses.
HOSTILE_STRINGS = (
    "1e309", "-1e309", "1E999", "9" * 400 + ".5", "1" * 5000, "NaN", "inf", "1_000", "0x10",
    "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "::ffff:127.0.0.1", "[fe80::1%eth0]",
    "http://2130706433/", "https://api.example.com:443.evil.com/", "https://a.example.com:0/",
    "https://evil.com\\@example.com/", "https:///example.com", "//example.com/x",
    "http://[::ffff:7f00:1]/", "example.com:65536",
    "a@example.com\n", "Ann <a@example.com>", '"x@evil.com" <a@example.com>', '"' * 3000,
    "a@example.com, b@evil.com", "<" * 500, "a@[127.0.0.1]",
    "/srv/data/..\\..\\etc", "/srv/data/../../etc", "/srv/./data//x", "relative/x", "/srv\x00x",
    "", " ", "\x00", "\r\n", "é" * 40, "\ud800", "a" * 70_000,
)  # fmt: skip

numeric_strings = st.from_regex(r"\A[ ]?[+-]?[0-9]{1,4}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,4})?\Z")
hostile_values = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    numeric_strings,
    st.sampled_from([math.inf, -math.inf, math.nan, 10**400, -(10**400), 1e308, -0.0]),
)
#: Scalars a policy author writes (no numeric string that overflows: that is a load error).
safe_scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["x", "y", "xy", "1", "2.5", "", "abc", "example.com", "a@example.com"]),
    st.booleans(),
    st.none(),
    st.text(st.characters(categories=["L", "P", "Zs", "S"]), max_size=8),
)
scalars = st.one_of(safe_scalars, st.text(max_size=8), hostile_values)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)
    ),
    max_leaves=6,
)

HOST_PATTERNS = st.lists(
    st.sampled_from(["example.com", "*.example.com", "127.0.0.1", "::1", "bücher.example"]),
    min_size=1,
    max_size=3,
)
OPERANDS: dict[str, st.SearchStrategy[Any]] = {
    "equals": safe_scalars,
    "not_equals": st.one_of(st.integers(-3, 3), st.sampled_from(["x", "1", ""])),
    "in": st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["x", "1", "1e309"])), min_size=1, max_size=3),
    "not_in": st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"])), min_size=1, max_size=3),
    "greater_than": st.integers(-3, 3),
    "greater_or_equal": st.integers(-3, 3),
    "less_than": st.integers(-3, 3),
    "less_or_equal": st.integers(-3, 3),
    "between": st.tuples(st.integers(-3, 3), st.integers(0, 3)).map(lambda p: [p[0], p[0] + p[1]]),
    "contains": st.sampled_from(["x", "1", 1, ["x", "y"]]),
    "starts_with": st.sampled_from(["x", "a", ["x", "y"]]),
    "ends_with": st.sampled_from(["x", ".com", ["y", "z"]]),
    "matches": st.sampled_from(["^x", "b", "[0-9]", ["y$", "^a"], "(a|b)*c"]),
    "glob": st.sampled_from(["x*", "*.com", "[ab]?", ["*x", "y*"]]),
    "length_greater_than": st.integers(0, 3),
    "length_less_than": st.integers(0, 3),
    "exists": st.booleans(),
    "path_within": st.sampled_from(["/srv/data", "/", ["/a", "/srv"]]),
    "url_host_in": HOST_PATTERNS,
    "email_domain_in": HOST_PATTERNS,
    "ip_in_cidr": st.sampled_from(["127.0.0.0/8", "10.0.0.0/8", ["fe80::/10", "::ffff:0:0/96"]]),
    "time_between": st.just({"from": "09:00", "to": "17:00", "timezone": "Europe/Paris"}),
    "weekday_in": st.sampled_from([["mon"], ["sat", "sun"]]),
}  # fmt: skip
#: Operators that may take a `{list: NAME}` operand, and the list each uses.
LIST_OPERANDS = {"in": "words", "not_in": "nums", "url_host_in": "hosts", "contains": "words"}
FIELD_OPERAND_OPS = ("equals", "not_equals", "greater_than", "less_or_equal", "contains")


@st.composite
def leaves(draw: st.DrawFn, item: bool = False) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(OPERANDS)))
    if item:
        field = draw(st.sampled_from(["item", "item.a"]))
    else:
        field = f"args.{draw(st.sampled_from(FIELDS))}"
        shape = draw(st.integers(0, 7))
        if shape == 0:
            field += "[*]"
        elif shape == 1:
            field += "[all]"
        elif shape == 2:
            field += ".a"
    choice = draw(st.integers(0, 5))
    operand: Any
    if choice == 0 and op in FIELD_OPERAND_OPS:
        operand = {"field": f"args.{draw(st.sampled_from(FIELDS))}"}
    elif choice == 1 and op in LIST_OPERANDS:
        operand = {"list": LIST_OPERANDS[op]}
    else:
        operand = draw(OPERANDS[op])
    leaf: dict[str, Any] = {"field": field, op: operand}
    if op in ("equals", "contains", "starts_with", "glob") and draw(st.integers(0, 4)) == 0:
        leaf["ignore_case"] = True
    return leaf


def _quantified(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(
        st.sampled_from(["for_all", "for_any"]), st.sampled_from(FIELDS), leaves(item=True)
    ).map(lambda t: {t[0]: f"args.{t[1]}", "if": t[2]})


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
        inner.map(lambda c: {"not": c}),
        _quantified(inner),
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
        # DESIGN.md 2.8: whatever can require approval names its approvers, and a quorum
        # that only named users could fill stays within their number.
        approvers = draw(
            st.lists(
                st.sampled_from(["role:a", "role:b", "u1"]), min_size=1, max_size=2, unique=True
            )
        )
        people = 3 if any(a.startswith("role:") for a in approvers) else len(approvers)
        body["approval"] = {
            "approvers": approvers,
            "quorum": draw(st.integers(1, people)),
            "timeout": draw(st.sampled_from(["10m", "1h", "2d"])),
        }
    return body


@st.composite
def rule_lists(
    draw: st.DrawFn, max_size: int = 6, effect: str | None = None, prefix: str = "r"
) -> list[dict[str, Any]]:
    bodies = draw(st.lists(rule_bodies(effect=effect), max_size=max_size))
    return [{"id": f"{prefix}{i}", **b} for i, b in enumerate(bodies)]


BASE_LISTS: dict[str, list[Any]] = {
    "hosts": ["example.com", "*.example.org", "127.0.0.1"],
    "nums": [1, 2, 3],
    "words": ["x", "y", "abc"],
}
# `default: require_approval` is a PolicyError: a default names no approvers (DESIGN.md 2.8).
defaults = st.sampled_from(["allow", "deny"])


@st.composite
def policies(draw: st.DrawFn, max_rules: int = 6) -> dict[str, Any]:
    """A policy document (as data) that is usually valid."""
    return {
        "version": 1,
        "name": "fuzz",
        "default": draw(defaults),
        "lists": BASE_LISTS,
        "rules": draw(rule_lists(max_size=max_rules)),
    }


@st.composite
def overlays(draw: st.DrawFn) -> dict[str, Any]:
    """A tenant overlay: deny / require_approval rules and lists narrowed (DESIGN.md 2.4)."""
    lists = {
        name: draw(
            st.lists(st.sampled_from(values_), min_size=1, unique=True, max_size=len(values_))
        )
        for name, values_ in BASE_LISTS.items()
        if draw(st.booleans())
    }
    effect_rules = draw(
        st.lists(st.sampled_from(["deny", "require_approval"]), max_size=3).flatmap(
            lambda effects: st.tuples(*(rule_bodies(effect=e) for e in effects))
        )
    )
    return {
        "version": 1,
        "name": "fuzz",
        "default": "deny",
        "lists": lists,
        "rules": [{"id": f"o{i}", **b} for i, b in enumerate(effect_rules)],
    }


def policy_text(doc: Mapping[str, Any]) -> str:
    """JSON is YAML. ASCII only: YAML refuses raw control characters, but reads JSON's
    escapes; non-finite floats come out as NaN/Infinity, which the loader must refuse."""
    return json.dumps(doc, ensure_ascii=True, indent=1)


@st.composite
def call_args(draw: st.DrawFn) -> dict[str, Any]:
    return draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=3))


@st.composite
def calls(draw: st.DrawFn) -> ToolCall:
    return ToolCall(
        tool=draw(st.sampled_from(TOOLS)),
        args=draw(call_args()),
        principal=Principal(agent=draw(st.one_of(st.none(), st.sampled_from(AGENTS)))),
        env=draw(st.one_of(st.none(), st.sampled_from(ENVS))),
        now=FIXED_NOW,
    )

"""Hostile numbers (DESIGN.md 2.1 "Hostile values", issue 14 class 1).

Every numeric conversion of a call's value either yields a finite number or is an
error: an overflowing numeric string ("1e309", "-1E999", 400 nines) must never be
read as +-Infinity. An error decides per DESIGN.md 2.2: no match in an allow rule,
a match in a deny or require_approval rule. Covered for every numeric path: the
comparison operators, `between`, equality and membership against numbers, a
`{field:}` operand, quantifiers, and the limit sums.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from engine_helpers import call, evaluate, make_veto

from veto_core import Effect, Principal, ToolCall, Veto
from veto_core.cli import main

#: Strings that look numeric but whose value is not a finite number (or cannot be held).
NON_FINITE_STRINGS = [
    "1e309",
    "-1e309",
    "1E999",
    "-1E999",
    "+1e400",
    " 1e309 ",
    "1e+999",
    ".5e999",
    "9" * 400 + ".5",
    "-" + "9" * 400 + ".0e5",
    "1" * 5000,  # finite, but more digits than any conversion will hold
]
NON_FINITE_FLOATS = [math.inf, -math.inf, math.nan]
HOSTILE = NON_FINITE_STRINGS + NON_FINITE_FLOATS


def _id(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} chars)"


#: (operator, operand): each is a numeric conversion of the value.
NUMERIC_LEAVES: list[tuple[str, Any]] = [
    ("less_or_equal", 100),
    ("less_than", 100),
    ("greater_than", -100),
    ("greater_or_equal", -100),
    ("between", [-100, 100]),
    ("equals", 5),
    ("not_equals", 5),
    ("in", [1, 2, 3]),
    ("not_in", [1, 2, 3]),
]


@pytest.mark.parametrize("value", HOSTILE, ids=_id)
@pytest.mark.parametrize(("op", "operand"), NUMERIC_LEAVES, ids=lambda x: str(x)[:20])
def test_a_non_finite_value_is_an_error_for_every_numeric_operator(
    op: str, operand: Any, value: Any
) -> None:
    assert evaluate({"field": "args.x", op: operand}, {"x": value}) == "error"


@pytest.mark.parametrize("value", HOSTILE, ids=_id)
@pytest.mark.parametrize(("op", "operand"), NUMERIC_LEAVES, ids=lambda x: str(x)[:20])
def test_an_allow_rule_never_allows_a_non_finite_value(op: str, operand: Any, value: Any) -> None:
    veto = make_veto(
        [{"id": "ok", "effect": "allow", "tools": ["t"], "if": {"field": "args.x", op: operand}}]
    )
    d = veto.decide(call("t", {"x": value}))
    assert d.effect is Effect.DENY and d.deciding_rule_ids == ()
    assert d.errors and "args.x" in d.errors[0]


@pytest.mark.parametrize("value", NON_FINITE_STRINGS, ids=_id)
@pytest.mark.parametrize(
    "op", ["less_or_equal", "less_than", "greater_than", "greater_or_equal", "equals", "not_equals"]
)
def test_a_non_finite_field_operand_is_an_error(op: str, value: str) -> None:
    """`{field: args.limit}` read from the call is converted like the value itself."""
    leaf = {"field": "args.amount", op: {"field": "args.limit"}}
    assert evaluate(leaf, {"amount": 5, "limit": value}) == "error"
    veto = make_veto([{"id": "ok", "effect": "allow", "tools": ["t"], "if": leaf}])
    assert veto.decide(call("t", {"amount": 5, "limit": value})).effect is Effect.DENY


@pytest.mark.parametrize("value", ["-1e309", "1E999"])
@pytest.mark.parametrize(
    "cond",
    [
        {"for_all": "args.items", "if": {"field": "item.amount", "less_or_equal": 100}},
        {"for_any": "args.items", "if": {"field": "item.amount", "less_or_equal": 100}},
        {"field": "args.items[all].amount", "less_or_equal": 100},
        {"field": "args.items[*].amount", "less_or_equal": 100},
    ],
    ids=["for_all", "for_any", "[all]", "[*]"],
)
def test_quantifiers_never_allow_a_non_finite_item(cond: dict[str, Any], value: str) -> None:
    veto = make_veto([{"id": "ok", "effect": "allow", "tools": ["t"], "if": cond}])
    d = veto.decide(call("t", {"items": [{"amount": value}]}))
    assert d.effect is Effect.DENY and d.errors


def test_a_deny_rule_matches_a_non_finite_value() -> None:
    veto = make_veto(
        [
            {"id": "all", "effect": "allow", "tools": ["t"]},
            {"id": "big", "effect": "deny", "tools": ["t"], "if": {"field": "args.x", "greater_than": 100}},
        ]
    )  # fmt: skip
    for value in NON_FINITE_STRINGS:
        d = veto.decide(call("t", {"x": value}))
        assert d.effect is Effect.DENY and d.deciding_rule_ids == ("big",), value


@pytest.mark.parametrize(
    "value", ["1e308", "-1.5e308", "9" * 300, 10**400, "0.1e-400", "100.0", " 42 "], ids=_id
)
def test_large_but_finite_numbers_still_compare(value: Any) -> None:
    expected = "true" if float(str(value).strip()) <= 100 else "false"
    assert evaluate({"field": "args.x", "less_or_equal": 100}, {"x": value}) == expected


@pytest.mark.parametrize("value", ["1e309", "inf", "Infinity", "nan", "-nan", "1_000"])
def test_non_finite_operands_in_a_policy_are_load_errors(value: str) -> None:
    from veto_core import PolicyError

    with pytest.raises(PolicyError):
        make_veto([{"id": "r", "effect": "allow", "tools": ["t"], "if": {"field": "args.x", "less_than": value}}])  # fmt: skip


def test_a_non_finite_string_in_a_list_operand_is_only_a_string() -> None:
    """`in: ["1e309", "a"]` compares strings as strings: no numeric conversion, no error."""
    assert evaluate({"field": "args.x", "in": ["1e309", "a"]}, {"x": "1e309"}) == "true"
    assert evaluate({"field": "args.x", "in": ["1e309", "a"]}, {"x": "b"}) == "false"


# --- limit sums -------------------------------------------------------------------------

LIMIT_POLICY = """\
version: 1
name: budget
rules:
  - {id: refunds, effect: allow, tools: [issue_refund]}
limits:
  - {id: budget, tools: [issue_refund], per: [principal.user], window: 24h, sum: args.amount, max: 1000}
"""


@pytest.mark.parametrize(
    "amount", [*NON_FINITE_STRINGS, 10**400, -(10**400), math.inf, math.nan], ids=_id
)
def test_a_limit_never_counts_a_non_finite_amount(tmp_path: Path, amount: Any) -> None:
    veto = Veto.from_yaml(LIMIT_POLICY, db=f"sqlite:///{tmp_path / 'v.db'}")
    try:
        auth = veto.authorize(
            ToolCall(
                tool="issue_refund",
                args={"amount": amount},
                principal=Principal(agent="bot", user="u1"),
                run_id="r",
                tool_call_id=uuid.uuid4().hex,
            )
        )
        assert auth.decision.effect is Effect.DENY
        # A float NaN/infinity is no JSON value: refused before any decision (DESIGN.md 7);
        # every other form reaches the limit, which refuses to count it.
        expected = "not a JSON number" if isinstance(amount, float) else "cannot be counted"
        assert expected in auth.decision.reasons[0], auth.decision.reasons
        # The budget is untouched: a normal refund still fits.
        ok = veto.authorize(
            ToolCall(
                tool="issue_refund",
                args={"amount": 1000},
                principal=Principal(agent="bot", user="u1"),
                run_id="r",
                tool_call_id=uuid.uuid4().hex,
            )
        )
        assert ok.decision.effect is Effect.ALLOW
    finally:
        veto.close()


@pytest.mark.parametrize(
    ("window", "max_"), [("9" * 400 + "d", 10), (".inf", 10), ("1h", ".inf"), ("1h", "1e309")]
)
def test_a_limit_with_a_non_finite_window_or_max_is_a_load_error(window: str, max_: str) -> None:
    from veto_core import PolicyError

    text = LIMIT_POLICY.replace("window: 24h", f"window: {window}").replace(
        "max: 1000", f"max: {max_}"
    )
    with pytest.raises(PolicyError):
        Veto.from_yaml(text)


# --- end to end through the CLI -----------------------------------------------------------

CLI_POLICY = """\
version: 1
name: refunds
rules:
  - {id: small, effect: allow, tools: [refund], if: {field: args.amount, less_or_equal: 100}}
  - {id: capped, effect: allow, tools: [pay], if: {field: args.amount, less_or_equal: {field: args.cap}}}
"""


def test_veto_check_denies_overflowing_numbers(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(CLI_POLICY)
    runner = CliRunner()
    for value in ["-1e309", "1E999", "-" + "9" * 400 + ".0"]:
        result = runner.invoke(
            main,
            [
                "check",
                "-p",
                str(policy),
                "--tool",
                "refund",
                "--args",
                json.dumps({"amount": value}),
            ],
        )
        assert result.exit_code == 1, result.output
        assert "not a finite number" in result.output
    lines = [
        {"tool": "refund", "args": {"amount": "-1e309"}},
        {"tool": "pay", "args": {"amount": 5, "cap": "1e309"}},
        {"tool": "refund", "args": {"amount": "50"}},
    ]
    result = runner.invoke(
        main,
        ["check", "-p", str(policy), "--batch", "-"],
        input="".join(json.dumps(line) + "\n" for line in lines),
    )
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["effect"] for o in out] == ["deny", "deny", "allow"]
    assert out[0]["errors"] and out[1]["errors"] and not out[2]["errors"]


@pytest.mark.parametrize("n", ["1e309", math.inf, "5", 5.5, -1, True], ids=_id)
@pytest.mark.parametrize("op", ["length_greater_than", "length_less_than"])
def test_a_length_bound_read_from_the_call_must_be_a_non_negative_integer(op: str, n: Any) -> None:
    leaf = {"field": "args.s", op: {"field": "args.n"}}
    assert evaluate(leaf, {"s": "abc", "n": n}) == "error"


@pytest.mark.parametrize("bounds", [["-1e309", 10], [0, "1E999"], [math.nan, 1]], ids=_id)
def test_between_bounds_read_from_the_call_must_be_finite(bounds: list[Any]) -> None:
    leaf = {"field": "args.x", "between": {"field": "args.bounds"}}
    assert evaluate(leaf, {"x": 5, "bounds": bounds}) == "error"
    veto = make_veto([{"id": "ok", "effect": "allow", "tools": ["t"], "if": leaf}])
    assert veto.decide(call("t", {"x": 5, "bounds": bounds})).effect is Effect.DENY

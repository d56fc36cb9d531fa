"""Regressions for what the fuzzers found (issue 14): each crashed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from veto_core import Effect, PolicyError, Principal, ToolCall, Veto

HEAD = "version: 1\nname: p\n"


@pytest.mark.parametrize("char", ["\x7f", "\x01", "\x1b", "\ufffe"])
def test_a_character_yaml_refuses_is_a_policy_error_with_its_position(
    tmp_path: Path, char: str
) -> None:
    text = HEAD + f'description: "a{char}"\n'
    with pytest.raises(PolicyError) as info:
        Veto.from_yaml(text, file="p.yaml")
    problem = info.value.problems[0]
    assert (problem.file, problem.line, problem.column) == ("p.yaml", 3, 16)
    assert f"U+{ord(char):04X}" in problem.message
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(
        PolicyError, match=f"p.yaml:3:16: invalid YAML: character U\\+{ord(char):04X}"
    ):
        Veto.from_file(path)


def test_a_lone_surrogate_in_policy_text_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match=r"p\.yaml:3:15: text is not valid Unicode"):
        Veto.from_yaml(HEAD + "description: a\ud800\n", file="p.yaml")


def test_json_surrogate_pair_escapes_are_joined_and_lone_ones_refused() -> None:
    veto = Veto.from_yaml(
        HEAD
        + 'rules: [{id: r, effect: deny, tools: [t], if: {field: args.x, equals: "\\ud83d\\ude00"}}]\n'
    )
    decision = veto.decide(ToolCall(tool="t", args={"x": "😀"}, principal=Principal(agent="a")))
    assert decision.effect is Effect.DENY and decision.deciding_rule_ids == ("r",)
    with pytest.raises(PolicyError, match="not half of a pair"):
        Veto.from_yaml(HEAD + 'description: "\\ud83d x"\n')


def test_explain_shows_leaves_inside_quantifiers() -> None:
    veto = Veto.from_yaml(
        HEAD
        + "rules: [{id: r, effect: deny, tools: [t], if: {for_any: args.items, if: {field: item.sku, equals: x}}}]\n"
    )
    call = ToolCall(tool="t", args={"items": [{"sku": "x"}]}, principal=Principal(agent="a"))
    explanation = veto.explain(call)
    assert explanation.decision.effect is Effect.DENY
    (trace,) = explanation.rules
    assert trace.condition == "true"


@pytest.mark.parametrize("op", ["matches", "glob"])
def test_a_pattern_that_is_not_unicode_is_an_operand_error(op: str) -> None:
    from veto_core.policy.operators import BUILTIN_OPERATORS, OperandError

    with pytest.raises(OperandError, match="not valid Unicode"):
        BUILTIN_OPERATORS[op]("a\udc9f")
    # The same pattern read from the call ({field:} operand) is an error of the decision.
    veto = Veto.from_yaml(
        HEAD
        + f"default: allow\nrules: [{{id: r, effect: deny, tools: [t], if: {{field: args.x, {op}: {{field: args.p}}}}}}]\n"
    )
    d = veto.decide(
        ToolCall(tool="t", args={"x": "a", "p": "a\udc9f"}, principal=Principal(agent="a"))
    )
    assert d.effect is Effect.DENY and "not valid Unicode" in d.errors[0]


def test_veto_check_batch_answers_json_that_python_cannot_hold(tmp_path: Path) -> None:
    """A 5,000-digit number and 100,000 nested arrays crashed the whole batch."""
    import json

    from click.testing import CliRunner

    from veto_core.cli import main

    lines = [
        "[" * 100_000,
        '{"tool": "t", "args": {"x": ' + "1" * 5000 + "}}",
        '{"tool": "t", "args": {"x": ' + "[" * 5000 + "]" * 5000 + "}}",
        '{"tool": "t", "args": {"x": 1}}',
    ]
    policy = HEAD + "rules: [{id: r, effect: allow, tools: [t]}]\n"
    (tmp_path / "p.yaml").write_text(policy)
    result = CliRunner().invoke(
        main,
        ["check", "-p", str(tmp_path / "p.yaml"), "--batch", "-"],
        input="\n".join(lines) + "\n",
    )
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("error" in o) for o in out] == [True, True, True, False], out
    assert out[3]["effect"] == "allow"

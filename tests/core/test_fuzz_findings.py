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

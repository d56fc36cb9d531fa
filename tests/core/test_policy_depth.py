"""Deeply nested policies (DESIGN.md 2.1 "Hostile values", issue 14 class 6).

A policy nested deeper than 64 levels is a PolicyError naming the file and line,
never a RecursionError (or a crash of the C parser) in the YAML reader, pydantic
or the condition compiler; `veto lint` / `veto check` exit 2 with the position.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from veto_core import Effect, PolicyError, Principal, ToolCall, Veto
from veto_core.cli import main
from veto_core.policy.yamlsrc import MAX_DEPTH

HEAD = "version: 1\nname: deep\n"


def flow_lists(n: int) -> str:
    return HEAD + "lists: {a: " + "[" * n + "x" + "]" * n + "}\n"


def flow_not(n: int) -> str:
    leaf = "{field: args.a, exists: true}"
    return (
        HEAD
        + "rules:\n  - {id: r, effect: deny, tools: [t], if: "
        + "{not: " * n
        + leaf
        + "}" * n
        + "}\n"
    )


def block_all(n: int) -> str:
    lines = [HEAD + "rules:", "  - id: r", "    effect: deny", "    tools: [t]", "    if:"]
    indent = "      "
    for _ in range(n):
        lines.append(f"{indent}all:")
        indent += "  "
        lines.append(f"{indent}- ")
        indent += "  "
    lines[-1] += "{field: args.a, exists: true}"
    return "\n".join(lines) + "\n"


def block_sequences(n: int) -> str:
    return HEAD + "description:\n" + "  " + "- " * n + "x\n"


def flow_mappings(n: int) -> str:
    return HEAD + "description: " + "{a: " * n + "x" + "}" * n + "\n"


def alias_chain(n: int) -> str:
    """Each anchor nests 10 levels and refers to the previous one: depth grows through
    aliases although no single piece of text is deep."""
    out = [HEAD + "x0: &a0 [x]"]
    for i in range(1, n):
        out.append(f"x{i}: &a{i} " + "[" * 10 + f"*a{i - 1}" + "]" * 10)
    return "\n".join(out) + "\n"


SHAPES: dict[str, Callable[[int], str]] = {
    "flow-lists": flow_lists,
    "flow-not": flow_not,
    "block-all": block_all,
    "block-sequences": block_sequences,
    "flow-mappings": flow_mappings,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3000, 200_000])
def test_a_deep_policy_is_a_policy_error_with_a_line(shape: str, depth: int) -> None:
    if shape == "block-all":
        depth = min(depth, 500)  # deeper indentation exceeds the size limit (its own error)
    text = SHAPES[shape](depth)
    start = time.perf_counter()
    with pytest.raises(PolicyError) as info:
        Veto.from_yaml(text, file="deep.yaml")
    assert time.perf_counter() - start < 5
    problem = info.value.problems[0]
    assert problem.file == "deep.yaml" and problem.line is not None
    assert f"nested deeper than {MAX_DEPTH} levels" in problem.message


def test_depth_through_aliases_is_counted() -> None:
    with pytest.raises(PolicyError, match=f"nested deeper than {MAX_DEPTH} levels"):
        Veto.from_yaml(alias_chain(400), file="deep.yaml")


def test_a_policy_just_within_the_limit_loads_and_decides() -> None:
    # Root mapping, rules list, rule mapping, `if` mapping: the condition nests below.
    depth = MAX_DEPTH - 4
    veto = Veto.from_yaml(flow_not(depth), file="ok.yaml")
    decision = veto.decide(ToolCall(tool="t", args={"a": 1}, principal=Principal(agent="a")))
    # An even number of `not`s around "a exists" is true: the deny rule matches.
    assert decision.effect is (Effect.DENY if depth % 2 == 0 else Effect.ALLOW)


@pytest.mark.parametrize("command", [["lint", "{}"], ["check", "-p", "{}", "--tool", "t"]])
def test_veto_cli_exits_2_with_the_position(tmp_path: Path, command: list[str]) -> None:
    policy = tmp_path / "deep.yaml"
    policy.write_text(flow_not(3000))
    result = CliRunner().invoke(main, [a.replace("{}", str(policy)) for a in command])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "deep.yaml:4:" in result.output
    assert f"nested deeper than {MAX_DEPTH} levels" in result.output

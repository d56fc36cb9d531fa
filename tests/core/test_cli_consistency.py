"""CLI consistency (issue 16 item 11): the policy argument, audit export --limit,
error wording, and `users add --approver-role` adding roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from veto_core import Principal, ToolCall, Veto
from veto_core.cli import main
from veto_core.policy.operators import BUILTIN_OPERATORS

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "policies" / "demo.yaml")


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("lint", "{p}"), ("lint", "-p", "{p}"), ("lint", "--policy", "{p}"),
        ("check", "{p}", "--tool", "get_ticket"), ("check", "-p", "{p}", "--tool", "get_ticket"),
        ("explain", "{p}", "--tool", "get_ticket"), ("explain", "-p", "{p}", "--tool", "get_ticket"),
        ("test", "{p}"), ("test", "-p", "{p}"),
    ],
)  # fmt: skip
def test_the_policy_is_positional_or_dash_p_everywhere(args: tuple[str, ...]) -> None:
    code, _, err = run(*(a.replace("{p}", DEMO) for a in args))
    assert code == 0, err


def test_replay_and_demo_take_the_policy_either_way(tmp_path: Path) -> None:
    db = str(tmp_path / "veto.db")
    for args in (("replay", DEMO), ("replay", "-p", DEMO), ("replay", "--policy", DEMO)):
        code, _, err = run(*args, "--db", db)
        assert code == 0, err


def test_audit_export_limit(tmp_path: Path) -> None:
    db = str(tmp_path / "veto.db")
    veto = Veto.from_file(DEMO, env="prod", tenant="acme", db=db)
    for i in range(5):
        veto.authorize(ToolCall(tool="get_ticket", args={"id": i}, principal=Principal(agent="a")))
    veto.close()
    code, out, err = run("audit", "export", "--db", db, "--limit", "2")
    assert code == 0, err
    assert [json.loads(line)["args"]["id"] for line in out.splitlines()] == [0, 1]
    code, out, _ = run("audit", "export", "--db", db, "--limit", "2", "--newest-first")
    assert [json.loads(line)["args"]["id"] for line in out.splitlines()] == [4, 3]
    code, out, _ = run("audit", "export", "--db", db, "--format", "csv", "--limit", "3")
    assert len(out.strip().splitlines()) == 4  # header + 3
    code, _, _ = run("audit", "export", "--db", db, "--limit", "-1")
    assert code == 2


def test_a_tab_in_indentation_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tab.yaml"
    path.write_text("version: 1\nname: t\nrules:\n  - id: a\n  \teffect: deny\n")
    code, _, err = run("lint", str(path))
    assert code == 2
    assert "tab.yaml:5:3: invalid YAML: tabs are not allowed in YAML indentation" in err


def test_an_unknown_operator_lists_the_operators(tmp_path: Path) -> None:
    path = tmp_path / "op.yaml"
    path.write_text(
        "version: 1\nname: t\nrules:\n  - id: a\n    effect: deny\n    tools: [x]\n"
        '    if: {field: args.amount, "<=": 3}\n'
    )
    code, _, err = run("lint", str(path))
    assert code == 2
    assert "unknown operator '<=' (did you mean 'less_or_equal'?)" in err
    # every operator, with the flow operator that reads the run (DESIGN.md 2.7)
    assert ", ".join(sorted({*BUILTIN_OPERATORS, "tainted_by"})) in err


def test_users_add_approver_role_adds_to_the_roles_held(tmp_path: Path) -> None:
    db = str(tmp_path / "veto.db")
    password = "correct horse battery\n"
    code, _, err = run("users", "add", "dana", "--tenant", "acme", "--role", "approver",
                       "--approver-role", "finance", "--password-stdin", "--db", db, input=password)  # fmt: skip
    assert code == 0, err
    code, _, err = run("users", "add", "dana", "--tenant", "acme", "--role", "approver",
                       "--approver-role", "legal", "--db", db)  # fmt: skip
    assert code == 0, err
    code, out, _ = run("users", "list", "--db", db)
    assert "acme:approver [finance/legal]" in out
    # Other tenants' roles are their own.
    code, _, _ = run("users", "add", "dana", "--tenant", "beta", "--role", "viewer", "--db", db)
    code, out, _ = run("users", "list", "--db", db)
    assert "acme:approver [finance/legal]" in out and "beta:viewer" in out

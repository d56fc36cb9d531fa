"""Lint findings it used to miss (issue 16 item 10)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from veto_core.cli import main

INHERITED = """\
version: 1
name: mail
roles:
  support: {}
  support-lead: {inherits: [support]}
rules:
  - id: support-mail
    effect: allow
    tools: [send_email]
    when: {role: [support]}
    if: {field: args.to, ends_with: "@example.com"}
    otherwise: require_approval
    approval: {approvers: ["role:finance"]}
  - id: lead-mail
    effect: allow
    tools: [send_email]
    when: {role: [support-lead]}
"""


def _lint(tmp_path: Path, text: str, name: str = "p.yaml") -> tuple[int, list[dict[str, str]]]:
    path = tmp_path / name
    path.write_text(text)
    result = CliRunner().invoke(main, ["lint", str(path), "--json"])
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


def test_an_inherited_roles_otherwise_shadows_the_inheriting_roles_allow(tmp_path: Path) -> None:
    code, findings = _lint(tmp_path, INHERITED)
    shadowed = [f for f in findings if f["code"] == "shadowed-allow"]
    assert [f["rule_id"] for f in shadowed] == ["lead-mail"], findings
    assert "support-mail" in shadowed[0]["message"] and "otherwise" in shadowed[0]["message"]
    assert code == 1


def test_otherwise_deny_makes_an_allow_unreachable_and_unrelated_roles_are_not_flagged(
    tmp_path: Path,
) -> None:
    text = INHERITED.replace(
        'otherwise: require_approval\n    approval: {approvers: ["role:finance"]}',
        "otherwise: deny",
    )
    _, findings = _lint(tmp_path, text)
    assert [(f["code"], f["rule_id"]) for f in findings if f["rule_id"]] == [
        ("shadowed-allow", "lead-mail")
    ]
    # A role that does not inherit support is not affected by support's rule.
    unrelated = INHERITED.replace("support-lead: {inherits: [support]}", "support-lead: {}")
    _, findings = _lint(tmp_path, unrelated, "u.yaml")
    assert [f for f in findings if f["code"] == "shadowed-allow"] == []


def test_a_missing_tests_file_is_reported(tmp_path: Path) -> None:
    text = "version: 1\nname: t\ntests: ./t.tests.yaml\nrules:\n  - {id: a, effect: deny, tools: [x]}\n"
    code, findings = _lint(tmp_path, text, "t.yaml")
    assert [(f["code"], f["line"]) for f in findings] == [("missing-tests", 3)]
    assert "t.tests.yaml" in findings[0]["message"]
    assert code == 1
    (tmp_path / "t.tests.yaml").write_text("tests:\n  - {name: a, call: {tool: x}, expect: deny}\n")
    code, findings = _lint(tmp_path, text, "t.yaml")
    assert (code, findings) == (0, [])

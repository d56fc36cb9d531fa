"""The `veto` command as users run it: exit codes, output, batch mode, starter files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from veto_core.cli import main
from veto_core.demo import DEMO_SESSION

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo records to ~/.veto/veto.db by default: never the developer's own."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VETO_DB", raising=False)


def test_demo_plays_the_scripted_session() -> None:
    code, out, _ = run("demo", "--policy", str(POLICIES / "demo.yaml"))
    assert code == 0
    # One row per scripted call, each with its decision and rule.
    assert (
        "13 calls: 6 allowed, 5 denied, 2 needed approval "
        "(1 approved and ran; did not run: 1 expired)" in out
    )
    assert "APPROVAL → APPROVED, ran" in out and "APPROVAL → EXPIRED, denied" in out
    for rule in (
        "reads",
        "refunds-small",
        "refunds-large",
        "no-external-mail",
        "files-in-workspace",
        "no-shell",
        "(default)",
    ):
        assert rule in out
    assert "APPROVAL" in out and "DENY" in out and "ALLOW" in out


def test_demo_runs_as_a_new_user_would(tmp_path: Path) -> None:
    """`uv run veto demo`, then `veto audit query --since 1h`, with no configuration."""
    env = {k: v for k, v in os.environ.items() if k != "VETO_DB"}
    env["HOME"] = str(tmp_path)
    veto = [sys.executable, "-m", "veto_core.cli"]
    proc = subprocess.run(
        [*veto, "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "APPROVAL" in proc.stdout and "DENY" in proc.stdout and "ALLOW" in proc.stdout
    assert str(tmp_path / ".veto" / "veto.db") in proc.stdout
    query = subprocess.run(
        [*veto, "audit", "query", "--since", "1h", "--json", "--oldest-first"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    records = [json.loads(line) for line in query.stdout.splitlines()]
    decisions = [r for r in records if r["outcome"] in ("allowed", "denied", "pending_approval")]
    assert [r["tool"] for r in decisions] == [tool for _, tool, _ in DEMO_SESSION]
    assert [r["outcome"] for r in decisions].count("pending_approval") == 2
    assert {r["policy_name"] for r in records} == {"demo-support-agent"}
    # The approval lifecycle is in the trail too: one approved by a second process, one expired.
    events = [r["outcome"] for r in records if r not in decisions]
    assert sorted(events) == sorted(
        [
            "approval_requested",
            "approval_requested",
            "approval_vote",
            "approved",
            "approval_consumed",
            "expired",
        ]
    )
    verify = subprocess.run(
        [*veto, "audit", "verify"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("tests_file", sorted(p.name for p in POLICIES.glob("*.tests.yaml")))
def test_shipped_policies_pass_their_tests_with_full_coverage(tests_file: str) -> None:
    code, out, err = run("test", str(POLICIES / tests_file), "--json")
    report = json.loads(out)
    assert code == 0, out + err
    assert report["passed"] is True
    assert report["coverage"] == 100.0, report["uncovered_rules"]


@pytest.mark.parametrize(
    "policy", ["demo.yaml", "support-agent.yaml", "coding-agent.yaml", "assistant.yaml"]
)
def test_shipped_policies_lint_without_warnings(policy: str) -> None:
    code, out, _ = run("lint", str(POLICIES / policy))
    assert code == 0, out


def test_lint_reports_unreachable_and_shadowed_rules(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        """
version: 1
name: p
default: allow
rules:
  - {id: block-all-shell, effect: deny, tools: ["shell.*"]}
  - {id: allow-ls, effect: allow, tools: [shell.ls]}
  - {id: gate-mail, effect: require_approval, tools: [send_email], approval: {approvers: [ops]}}
  - {id: allow-mail, effect: allow, tools: [send_email], if: {field: args.to, ends_with: "@example.com"}}
"""
    )
    code, out, _ = run("lint", str(path), "--json")
    findings = {(f["code"], f["rule_id"]) for f in map(json.loads, out.splitlines())}
    assert code == 1
    assert ("unreachable", "allow-ls") in findings
    assert ("shadowed-allow", "allow-mail") in findings
    assert ("default-allow", None) in findings


def test_lint_and_check_exit_2_on_a_broken_policy(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: bad\nrules:\n  - {id: a, effect: alow, tools: [x]}\n")
    code, _, err = run("lint", str(path))
    assert code == 2
    assert (
        f"{path}:4:21 rules[0].effect: expected 'allow', 'deny' or 'require_approval', got 'alow' (did you mean 'allow'?)"
        in err
    )
    code, _, err = run("check", "-p", str(path), "--tool", "x")
    assert code == 2


@pytest.mark.parametrize(
    ("args", "expected_code", "effect"),
    [
        (["--tool", "get_ticket"], 0, "allow"),
        (["--tool", "send_email", "--args", '{"to": "x@gmail.com", "body": "hi"}'], 1, "deny"),
        (
            ["--tool", "issue_refund", "--args", '{"amount": 450}', "--role", "support"],
            3,
            "require_approval",
        ),
    ],
)
def test_check_single_call_exit_codes(args: list[str], expected_code: int, effect: str) -> None:
    code, out, _ = run("check", "-p", str(POLICIES / "demo.yaml"), *args, "--json")
    assert code == expected_code
    assert json.loads(out)["effect"] == effect


def test_check_batch_100k_calls_in_one_process(tmp_path: Path) -> None:
    """One decision line per call, in order; malformed lines get {"error"} and the rest go on."""
    calls = [
        {"tool": "get_ticket", "args": {"id": "T1"}},
        {"tool": "issue_refund", "args": {"amount": 50}, "principal": {"roles": ["support"]}},
        {"tool": "issue_refund", "args": {"amount": "450.0"}, "principal": {"roles": ["support"]}},
        {
            "tool": "send_email",
            "args": {"to": "a@gmail.com", "body": "x"},
            "env": "prod",
            "tenant": "acme",
        },
        {"tool": "read_file", "args": {"path": "/srv/support/../../etc/passwd"}},
        {"tool": "weekday_tool", "args": {}, "now": "2026-11-26T10:00:00Z"},
    ]
    expected = ["allow", "allow", "require_approval", "deny", "deny", "deny"]
    malformed = [
        "{not json",
        '{"args": {}}',
        '["a list"]',
        '{"tool": "x", "args": []}',
        '{"tool": "x", "bogus": 1}',
        '{"tool": "x", "now": "yesterday"}',
    ]
    lines: list[str] = []
    want: list[str | None] = []
    for i in range(100_000):
        if i % 1000 == 999:
            lines.append(malformed[(i // 1000) % len(malformed)])
            want.append(None)
        else:
            lines.append(json.dumps(calls[i % len(calls)]))
            want.append(expected[i % len(calls)])
    batch = tmp_path / "calls.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    out = tmp_path / "decisions.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "veto_core.cli", "check", "-p", str(POLICIES / "demo.yaml"), "--batch", str(batch), "-o", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "100000 calls, 100 malformed" in proc.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 100_000
    for got, effect in zip(results, want, strict=True):
        if effect is None:
            assert set(got) == {"error"} and got["error"].startswith("line ")
        else:
            assert got["effect"] == effect
            assert set(got) == {"effect", "rule_ids", "deciding_rule_ids", "reasons", "errors"}


def test_check_batch_from_stdin() -> None:
    code, out, err = run(
        "check",
        "-p",
        str(POLICIES / "demo.yaml"),
        "--batch",
        "-",
        input='{"tool": "get_ticket"}\n\n{"tool": "nope"}\n',
    )
    assert code == 0
    assert [json.loads(x)["effect"] for x in out.splitlines()] == ["allow", "deny"]
    assert "2 calls, 0 malformed" in err


def test_explain_lists_every_rule_and_why() -> None:
    code, out, _ = run(
        "explain",
        "-p",
        str(POLICIES / "demo.yaml"),
        "--tool",
        "issue_refund",
        "--args",
        '{"amount": 450}',
        "--role",
        "support",
        "--json",
    )
    data = json.loads(out)
    assert code == 3
    rules = {r["id"]: r for r in data["rules"]}
    assert set(rules) == {
        "reads",
        "files-in-workspace",
        "refunds-small",
        "refunds-large",
        "mail-company-only",
        "no-external-mail",
        "no-secrets-in-mail",
        "no-shell",
    }
    assert (
        rules["refunds-large"]["condition"] == "true"
        and rules["refunds-large"]["result"] == "require_approval"
    )
    assert rules["refunds-small"]["condition"] == "false"
    assert rules["refunds-small"]["leaves"] == [
        ["args.amount less_or_equal 100", "false (value 450)"]
    ]
    assert rules["reads"]["tool_matched"] is False
    code, out, _ = run(
        "explain",
        "-p",
        str(POLICIES / "demo.yaml"),
        "--tool",
        "issue_refund",
        "--args",
        '{"amount": 450}',
        "--role",
        "support",
    )
    assert "refunds-large" in out and "decision: require_approval" in out


def test_test_command_exit_codes(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\nname: p\nrules:\n  - {id: a, effect: allow, tools: [x]}\n  - {id: b, effect: deny, tools: [y]}\n"
    )
    passing = tmp_path / "p.tests.yaml"
    passing.write_text("- {name: x allowed, call: {tool: x}, expect: allow, rule: a}\n")
    code, out, _ = run("test", str(passing))
    assert code == 0
    assert "1 passed, 0 failed" in out
    assert "rule coverage: 50% (1/2 rules exercised)" in out and "never exercised: b" in out
    assert run("test", str(passing), "--min-coverage", "100")[0] == 1
    failing = tmp_path / "f.tests.yaml"
    failing.write_text(
        "policy: ./p.yaml\ntests:\n  - {name: y allowed?, call: {tool: y}, expect: allow}\n"
    )
    code, out, _ = run("test", str(failing))
    assert code == 1
    assert "expected allow, got deny" in out
    broken = tmp_path / "b.tests.yaml"
    broken.write_text("policy: ./p.yaml\ntests:\n  - {name: x, call: {tool: x}, expect: alow}\n")
    code, _, err = run("test", str(broken))
    assert code == 2
    assert (
        "b.tests.yaml:3:40 tests[0].expect: expected 'allow', 'deny' or 'require_approval', got 'alow' (did you mean 'allow'?)"
        in err
    )


def test_schema_is_valid_json_schema_and_accepts_the_shipped_policies() -> None:
    code, out, _ = run("schema")
    schema = json.loads(out)
    assert code == 0
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in POLICIES.glob("*.yaml"):
        if path.name.endswith(".tests.yaml"):
            continue
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path, errors[0].message)
    assert list(validator.iter_errors({"version": 1, "name": "x", "rulez": []}))


def test_init_writes_a_starter_that_passes_its_tests(tmp_path: Path) -> None:
    code, out, _ = run("init", str(tmp_path), "--name", "starter")
    assert code == 0
    assert (tmp_path / "starter.yaml").is_file()
    code, out, _ = run("test", str(tmp_path / "starter.tests.yaml"), "--min-coverage", "100")
    assert code == 0, out
    code, _, err = run("init", str(tmp_path), "--name", "starter")
    assert code == 2 and "refusing to overwrite" in err

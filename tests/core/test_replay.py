"""`veto replay` and `veto policy history|show|diff`."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from veto_core import Principal, ToolCall, Veto
from veto_core.audit import open_audit
from veto_core.cli import main
from veto_core.replay import replay

POLICY_A = """\
version: 1
name: pay
default: deny
redact: [args.card]
roles: {clerk: {}, manager: {}}
rules:
  - {id: small, effect: allow, tools: [pay], if: {field: args.amount, less_or_equal: 100}}
  - {id: big, effect: require_approval, tools: [pay], if: {field: args.amount, greater_than: 100}, approval: {approvers: [ops]}}
  - {id: reads, effect: allow, tools: ["get_*"]}
  - {id: mail, effect: allow, tools: [mail], if: {field: args.to, ends_with: "@example.com"}}
"""

POLICY_B = """\
version: 1
name: pay
default: deny
redact: [args.card]
roles: {clerk: {}, manager: {}}
rules:
  - {id: small, effect: allow, tools: [pay], if: {field: args.amount, less_or_equal: 50}}
  - {id: big, effect: require_approval, tools: [pay], if: {field: args.amount, greater_than: 50}, approval: {approvers: [ops]}}
  - {id: managers-pay, effect: allow, tools: [pay], when: {role: [manager]}, if: {field: args.amount, less_or_equal: 500}}
  - {id: reads, effect: allow, tools: ["get_*"]}
  - {id: no-orders, effect: deny, tools: [get_order], if: {field: args.id, starts_with: "X"}}
  - {id: mail, effect: allow, tools: [mail], if: {field: args.to, ends_with: "@example.com"}}
"""


def random_calls(n: int, seed: int = 3) -> list[ToolCall]:
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        kind = rng.randrange(4)
        principal = Principal(
            agent="bot", roles=(rng.choice(["clerk", "manager"]),), user=f"u{rng.randrange(5)}"
        )
        if kind == 0:
            args: dict[str, object] = {"amount": rng.choice([10, 40, 75, 99, 150, 400, 900])}
            tool = "pay"
        elif kind == 1:
            tool, args = "get_order", {"id": rng.choice(["A1", "X9", "B7"])}
        elif kind == 2:
            tool, args = "mail", {"to": rng.choice(["a@example.com", "b@other.net"])}
        else:
            tool, args = "get_user", {"id": i}
        calls.append(
            ToolCall(tool=tool, args=args, principal=principal, run_id="r", tool_call_id=f"c{i}")
        )
    return calls


def test_replay_reports_exactly_the_calls_whose_decision_changes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    a = Veto.from_yaml(POLICY_A, tenant="acme", db=db)
    b = Veto.from_yaml(POLICY_B, tenant="acme")
    calls = random_calls(1000)
    record_ids = [a.authorize(call).record_id for call in calls]
    a.close()
    expected = {
        rid
        for rid, call in zip(record_ids, calls, strict=True)
        if a.decide(call).effect is not b.decide(call).effect
    }
    assert 50 < len(expected) < 1000  # the two policies really differ, on some calls only
    with open_audit(db) as audit:
        report = replay(audit.iter_records(tenant="acme", newest_first=False), b)
    assert report.replayed == 1000
    assert {c.record_id for c in report.changes} == expected
    assert report.unchanged == 1000 - len(expected)
    for change in report.changes:
        call = calls[record_ids.index(change.record_id)]
        assert change.before == a.decide(call).effect.value
        assert change.after == b.decide(call).effect.value
        assert change.after_rules == b.decide(call).deciding_rule_ids


def test_replay_skips_redacted_arguments_and_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    a = Veto.from_yaml(POLICY_A, tenant="acme", db=db)
    a.authorize(ToolCall(tool="pay", args={"amount": 75, "card": "4111"}))
    a.authorize(ToolCall(tool="pay", args={"amount": 75}))
    a.close()
    with open_audit(db) as audit:
        report = replay(audit.iter_records(tenant="acme"), Veto.from_yaml(POLICY_B))
    assert report.skipped == {"arguments redacted": 1}
    assert report.replayed == 1 and len(report.changes) == 1


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def test_replay_cli_exit_codes_and_json(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    (tmp_path / "a.yaml").write_text(POLICY_A)
    (tmp_path / "b.yaml").write_text(POLICY_B)
    a = Veto.from_file(tmp_path / "a.yaml", tenant="acme", db=db)
    for call in random_calls(60):
        a.authorize(call)
    a.close()
    code, out = _cli("replay", "--policy", str(tmp_path / "a.yaml"), "--db", db)
    assert code == 0 and "0 would change" in out
    code, out = _cli("replay", "--policy", str(tmp_path / "b.yaml"), "--db", db, "--json")
    report = json.loads(out)
    assert code == 1
    assert report["replayed"] == 60 and report["changed"] == len(report["changes"]) > 0
    assert sum(g["count"] for g in report["groups"]) == report["changed"]


def test_policy_history_show_and_diff(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    (tmp_path / "a.yaml").write_text(POLICY_A)
    (tmp_path / "b.yaml").write_text(POLICY_B)
    for name in ("a.yaml", "b.yaml"):
        veto = Veto.from_file(tmp_path / name, db=db)
        veto.authorize(ToolCall(tool="get_user"))
        veto.close()
    rev_a = Veto.from_file(tmp_path / "a.yaml").policy_revision
    rev_b = Veto.from_file(tmp_path / "b.yaml").policy_revision
    code, out = _cli("policy", "history", "--db", db, "--json")
    assert code == 0
    assert [json.loads(line)["revision"] for line in out.splitlines()] == [rev_a, rev_b]
    # show -> write back -> the same revision: rolling back is writing it back.
    code, out = _cli("policy", "show", rev_a[:10], "--db", db)
    assert code == 0
    (tmp_path / "rollback.yaml").write_text(out)
    assert Veto.from_file(tmp_path / "rollback.yaml").policy_revision == rev_a
    code, out = _cli("policy", "diff", rev_a[:8], str(tmp_path / "b.yaml"), "--db", db, "--json")
    diff = json.loads(out)
    assert code == 1
    assert [r["id"] for r in diff["rules_added"]] == ["managers-pay", "no-orders"]
    assert {c["id"]: c["fields"] for c in diff["rules_changed"]} == {"small": ["if"], "big": ["if"]}
    code, out = _cli("policy", "diff", str(tmp_path / "a.yaml"), rev_a[:8], "--db", db)
    assert code == 0 and "no semantic changes" in out
    code, out = _cli("policy", "show", "0000000", "--db", db)
    assert code != 0 and "no stored revision" in out


def test_policy_diff_reads_git_revisions_with_their_extends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "policies").mkdir(parents=True)
    git = [
        "git",
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "policies" / "base.yaml").write_text(
        "version: 1\nname: base\nlists: {team: [a, b]}\nrules:\n  - {id: base-deny, effect: deny, tools: [rm]}\n"
    )
    (repo / "policies" / "app.yaml").write_text(
        "version: 1\nname: app\nextends: [./base.yaml]\nrules:\n  - {id: ok, effect: allow, tools: [ls]}\n"
    )
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "one"], check=True)
    (repo / "policies" / "base.yaml").write_text(
        "version: 1\nname: base\nlists: {team: [a]}\nrules:\n  - {id: base-deny, effect: deny, tools: [rm, mv]}\n"
    )
    monkeypatch.chdir(repo)
    code, out = _cli("policy", "diff", "HEAD:policies/app.yaml", "policies/app.yaml")
    assert code == 1, out
    assert "~ rule base-deny:" in out and '~ list team: -"b"' in out

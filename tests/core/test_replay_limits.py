"""`veto replay` with stateful limits (issue 16 item 6): replay reproduces each
call's counters, so an unchanged policy changes nothing, and a changed limit
reports exactly the calls it changes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from veto_core import Principal, ToolCall, Veto
from veto_core.audit import open_audit
from veto_core.cli import main
from veto_core.replay import replay

POLICY = """\
version: 1
name: budget
default: deny
rules:
  - {id: pay, effect: allow, tools: [pay]}
limits:
  - id: budget
    tools: [pay]
    per: [principal.user]
    window: 1h
    sum: args.amount
    max: %(max)s
    effect: require_approval
    approval: {approvers: ["role:finance"], timeout: 10m}
    reason: Hourly budget spent
"""


def _record(db: str, policy: Path, amounts: list[tuple[str, int]]) -> list[str]:
    veto = Veto.from_file(policy, env="prod", tenant="acme", db=db)
    effects = []
    for i, (user, amount) in enumerate(amounts):
        call = ToolCall(
            tool="pay", args={"amount": amount}, principal=Principal(agent="bot", user=user),
            run_id=f"r{i}", tool_call_id=f"c{i}",
        )  # fmt: skip
        effects.append(veto.authorize(call).decision.effect.value)
        time.sleep(0.01)  # distinct record times, for --since below
    veto.close()
    return effects


def test_replaying_the_policy_that_decided_changes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "veto.db")
    policy = tmp_path / "budget.yaml"
    policy.write_text(POLICY % {"max": 100})
    calls = [("ann", 40), ("ann", 40), ("ann", 40), ("bob", 90), ("ann", 20), ("bob", 20)]
    assert _record(db, policy, calls) == [
        "allow", "allow", "require_approval", "allow", "allow", "require_approval",
    ]  # fmt: skip
    result = CliRunner().invoke(main, ["replay", str(policy), "--db", db, "--json"])
    report = json.loads(result.stdout)
    assert (report["replayed"], report["changed"]) == (6, 0), report
    assert result.exit_code == 0
    # Replaying does not spend the real counters: the next real call still sees 100 of 100.
    veto = Veto.from_file(policy, env="prod", tenant="acme", db=db)
    call = ToolCall(tool="pay", args={"amount": 1}, principal=Principal(agent="b", user="ann"))
    assert veto.authorize(call).decision.effect.value == "require_approval"
    veto.close()


def test_a_tighter_limit_reports_exactly_the_calls_it_changes(tmp_path: Path) -> None:
    db = str(tmp_path / "veto.db")
    policy = tmp_path / "budget.yaml"
    policy.write_text(POLICY % {"max": 100})
    _record(db, policy, [("ann", 40), ("ann", 40), ("ann", 40), ("ann", 10)])
    tighter = tmp_path / "tighter.yaml"
    tighter.write_text(POLICY % {"max": 50})
    # Under max 50: 40 allowed (40), 40 needs approval, 40 needs approval, 10 allowed (50).
    with open_audit(db) as audit:
        report = replay(audit.iter_records(newest_first=False), Veto.from_file(tighter))
    assert [(c.tool_call_id, c.before, c.after) for c in report.changes] == [
        ("c1", "allow", "require_approval")
    ]
    assert report.unchanged == 3


def test_calls_before_since_still_count_towards_the_window(tmp_path: Path) -> None:
    db = str(tmp_path / "veto.db")
    policy = tmp_path / "budget.yaml"
    policy.write_text(POLICY % {"max": 100})
    _record(db, policy, [("ann", 60), ("ann", 30), ("ann", 40), ("ann", 10)])
    with open_audit(db) as audit:
        third = next(r for r in audit.iter_records(newest_first=False) if r.tool_call_id == "c2")
    since = third.ts.isoformat()
    result = CliRunner().invoke(
        main, ["replay", str(policy), "--db", db, "--since", since, "--json"]
    )
    report = json.loads(result.stdout)
    # Only c2 and c3 are reported, decided against the 90 that c0 and c1 had spent.
    assert (report["replayed"], report["changed"]) == (2, 0), report
    assert result.exit_code == 0

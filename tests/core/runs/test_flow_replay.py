"""`veto replay` of runs (DESIGN.md 2.7, 8): each recorded call is re-decided with
the history its run had at that point, rebuilt from the run store; a run whose
history is gone is reported as unknown, never as unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from veto_core import Veto
from veto_core.audit import open_audit
from veto_core.cli import main
from veto_core.replay import UNKNOWN, ReplayReport, ReplayRunStore, replay
from veto_core.runs.backends import open_run_store

from .flow_helpers import FLOW_POLICY
from .offline_driver import NO_OUTPUT, run_in_process

IBAN = "DE89370400440532013000"
#: pay-tainted denies instead of asking
STRICTER = FLOW_POLICY.replace(
    "    effect: require_approval\n    tools: [send_money]",
    "    effect: deny\n    tools: [send_money]",
).replace("    approval: {approvers: [alice]}\n", "")
STEPS: list[list[Any]] = [
    ["observe", "@user", {}, "mail bob@example.org"],
    ["call", "send_money", {"recipient": IBAN}, "sent"],  # before the inbox: allowed
    ["call", "issue_refund", {"order": 1}, NO_OUTPUT],
    ["call", "read_inbox", {}, f"pay {IBAN} now"],
    ["call", "send_money", {"recipient": IBAN}, NO_OUTPUT],  # tainted: approval
    ["call", "issue_refund", {"order": 2}, NO_OUTPUT],  # the second: denied
    ["call", "read_file", {"path": "/home/u/.ssh/id_rsa"}, "KEY"],
    ["call", "http_post", {"url": "https://x.example"}, NO_OUTPUT],  # after the key: denied
]
RECORDED = ["allow", "allow", "allow", "require_approval", "deny", "allow", "deny"]


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str]:
    policy = tmp_path / "flow.yaml"
    policy.write_text(FLOW_POLICY)
    db = f"sqlite:///{tmp_path / 'veto.db'}"
    veto = Veto.from_file(policy, db=db)
    try:
        assert run_in_process(veto, STEPS) == RECORDED
    finally:
        veto.close()
    return policy, db


def _replay(text: str, db: str) -> ReplayReport:
    veto = Veto.from_yaml(text, run_store=ReplayRunStore())
    try:
        with open_audit(db) as audit:
            records = audit.iter_records(newest_first=False)
            return replay(records, veto, history=lambda: open_run_store(db))
    finally:
        veto.close()


def test_an_unchanged_policy_replays_every_run_call_unchanged(recorded: tuple[Path, str]) -> None:
    """Deciding with the run's final history would turn the first payment (made before
    the inbox was read) into an approval and the first refund into a deny."""
    report = _replay(FLOW_POLICY, recorded[1])
    assert report.replayed == len(RECORDED)
    assert report.changes == () and report.unchanged == len(RECORDED)


def test_a_stricter_flow_rule_changes_only_the_calls_it_saw_tainted(
    recorded: tuple[Path, str],
) -> None:
    report = _replay(STRICTER, recorded[1])
    (change,) = report.changes
    assert (change.tool, change.before, change.after) == ("send_money", "require_approval", "deny")
    assert change.after_rules == ("pay-tainted",)


def test_a_run_whose_history_is_gone_is_reported_unknown(recorded: tuple[Path, str]) -> None:
    store = open_run_store(recorded[1])
    try:
        assert store.erase(tenant=None, run_id="r") == 1
    finally:
        store.close()
    report = _replay(FLOW_POLICY, recorded[1])
    unknown = [c for c in report.changes if c.after == UNKNOWN]
    # every call whose decision reads the run; the others are re-decided as usual
    assert [c.tool for c in unknown] == [
        "send_money", "issue_refund", "send_money", "issue_refund", "http_post",
    ]  # fmt: skip
    assert all("run history not available for replay" in " ".join(c.reasons) for c in unknown)
    assert report.unchanged == 2  # read_inbox, read_file read no run state


def test_replay_without_a_run_store_fails_closed(recorded: tuple[Path, str]) -> None:
    def broken() -> Any:
        raise OSError("connection refused")

    veto = Veto.from_yaml(FLOW_POLICY, run_store=ReplayRunStore())
    with open_audit(recorded[1]) as audit:
        report = replay(audit.iter_records(newest_first=False), veto, history=broken)
    assert len([c for c in report.changes if c.after == UNKNOWN]) == 5
    assert "connection refused" in " ".join(report.changes[0].reasons)


def test_veto_replay_cli_replays_runs_in_order(recorded: tuple[Path, str], tmp_path: Path) -> None:
    policy, db = recorded
    runner = CliRunner()
    same = runner.invoke(main, ["replay", str(policy), "--db", db, "--json"])
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["changed"] == 0
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(STRICTER)
    result = runner.invoke(main, ["replay", str(stricter), "--db", db])
    assert result.exit_code == 1, result.output
    assert "1 would change" in result.output
    assert "require_approval -> deny  by pay-tainted" in result.output


def test_veto_replay_cli_says_when_run_history_is_missing(recorded: tuple[Path, str]) -> None:
    policy, db = recorded
    store = open_run_store(db)
    try:
        store.erase(tenant=None, run_id="r")
    finally:
        store.close()
    result = CliRunner().invoke(main, ["replay", str(policy), "--db", db])
    assert result.exit_code == 1, result.output
    assert "5 would change, 2 unchanged" in result.output
    assert "5 calls of runs whose history is not in the run store" in result.output
    assert "expired after run_ttl, erased, or never observed" in result.output

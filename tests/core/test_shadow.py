"""Shadow mode: decide and record what a policy or rule would do, but let the call through."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from veto_core import Effect, PolicyError, ToolCall, Veto
from veto_core.audit import open_audit
from veto_core.cli import main

SHADOW_POLICY = """\
version: 1
name: rollout
mode: shadow
rules:
  - {id: reads, effect: allow, tools: [read]}
  - {id: no-delete, effect: deny, tools: [delete]}
  - {id: big-pay, effect: require_approval, tools: [pay], if: {field: args.amount, greater_than: 100}, approval: {approvers: [ops]}}
"""

SHADOW_RULE = """\
version: 1
name: mixed
rules:
  - {id: pay, effect: allow, tools: [pay]}
  - {id: new-cap, effect: deny, tools: [pay], if: {field: args.amount, greater_than: 100}, mode: shadow}
  - {id: no-delete, effect: deny, tools: [delete]}
  - {id: new-delete-gate, effect: require_approval, tools: [delete], mode: shadow, approval: {approvers: [ops]}}
"""


def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'v.db'}"


def test_a_shadow_policy_records_what_it_would_do_and_blocks_nothing(tmp_path: Path) -> None:
    veto = Veto.from_yaml(SHADOW_POLICY, tenant="acme", db=db(tmp_path))
    decision = veto.decide(ToolCall(tool="delete"))
    assert decision.effect is Effect.DENY and decision.enforced is False
    outcomes = {}
    for tool, args in (("read", {}), ("delete", {}), ("pay", {"amount": 500}), ("unknown", {})):
        auth = veto.authorize(ToolCall(tool=tool, args=args))
        assert auth.run_tool, tool  # shadow: everything goes through
        outcomes[tool] = veto.audit.query(tool=tool)[0].outcome
    assert outcomes == {
        "read": "allowed",
        "delete": "shadow-denied",
        "pay": "shadow-require_approval",
        "unknown": "shadow-denied",
    }
    veto.close()


def test_shadow_rules_never_change_the_enforced_decision(tmp_path: Path) -> None:
    veto = Veto.from_yaml(SHADOW_RULE, tenant="acme", db=db(tmp_path))
    small = veto.decide(ToolCall(tool="pay", args={"amount": 5}))
    assert small.effect is Effect.ALLOW and small.shadow_effect is None
    big = veto.decide(ToolCall(tool="pay", args={"amount": 500}))
    assert big.effect is Effect.ALLOW and big.enforced
    assert big.shadow_effect is Effect.DENY and big.shadow_rule_ids == ("new-cap",)
    assert "new-cap" not in big.rule_ids
    auth = veto.authorize(ToolCall(tool="pay", args={"amount": 500}))
    assert auth.run_tool
    assert veto.audit.query(tool="pay")[0].outcome == "shadow-denied"
    # An enforced deny stays a deny, recorded as such, whatever shadow rules say.
    blocked = veto.authorize(ToolCall(tool="delete"))
    assert not blocked.run_tool and blocked.decision.effect is Effect.DENY
    assert veto.audit.query(tool="delete")[0].outcome == "denied"
    veto.close()


def test_audit_query_shadow_lists_what_would_have_been_blocked(tmp_path: Path) -> None:
    veto = Veto.from_yaml(SHADOW_RULE, tenant="acme", db=db(tmp_path))
    for amount in (5, 500, 50, 900):
        veto.authorize(ToolCall(tool="pay", args={"amount": amount}))
    veto.close()
    result = CliRunner().invoke(
        main, ["audit", "query", "--shadow", "--db", db(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(
        __import__("json").loads(line)["args"]["amount"] for line in result.stdout.splitlines()
    ) == [500, 900]


def test_shadow_query_on_postgresql(pg_url: str) -> None:
    veto = Veto.from_yaml(SHADOW_RULE, tenant="acme", db=pg_url)
    for amount in (5, 500):
        veto.authorize(ToolCall(tool="pay", args={"amount": amount}))
    veto.close()
    with open_audit(pg_url) as audit:
        assert [r.args["amount"] for r in audit.query(shadow=True)] == [500]  # type: ignore[index]


def test_an_extending_file_cannot_switch_to_shadow(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "version: 1\nname: base\nrules:\n  - {id: d, effect: deny, tools: [x]}\n"
    )
    (tmp_path / "app.yaml").write_text(
        "version: 1\nname: app\nmode: shadow\nextends: [./base.yaml]\n"
    )
    with pytest.raises(
        PolicyError,
        match="mode 'shadow' would let every call through that the base policy enforces",
    ):
        Veto.from_file(tmp_path / "app.yaml")

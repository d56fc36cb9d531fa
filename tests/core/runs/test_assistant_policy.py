"""The shipped flow-aware policy `policies/assistant.yaml` decides each case of its
tests file (with its `steps:` history) through the Python API: `Veto.observe` for
observations, `Veto.decide` for calls, one fresh run per case (DESIGN.md 2.6, 2.7).

`veto test` runs the same file (tests/core/test_cli.py); this test pins that the
cases hold through the public API too, independently of the CLI's runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from veto_core import Effect, MemoryRunStore, Principal, ToolCall, Veto

POLICIES = Path(__file__).resolve().parents[3] / "policies"
CASES: list[dict[str, Any]] = yaml.safe_load(
    (POLICIES / "assistant.tests.yaml").read_text(encoding="utf-8")
)["tests"]


def _call(spec: dict[str, Any], run_id: str | None) -> ToolCall:
    principal = Principal(**{**spec.get("principal", {}), "roles": tuple(
        spec.get("principal", {}).get("roles", ())
    )})  # fmt: skip
    return ToolCall(
        tool=spec["tool"], args=spec.get("args", {}), principal=principal,
        env=spec.get("env"), tenant=spec.get("tenant"), run_id=run_id,
    )  # fmt: skip


@pytest.fixture(scope="module")
def veto() -> Veto:
    return Veto.from_file(POLICIES / "assistant.yaml", run_store=MemoryRunStore())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_assistant_policy_case(veto: Veto, case: dict[str, Any]) -> None:
    # steps and the call share one fresh run; a case without steps names its own (or none)
    named = case["call"].get("run_id") or ("test" if case.get("steps") else None)
    run_id = f"case-{CASES.index(case)}-{named}" if named else None
    for step in case.get("steps", ()):
        if "observe" in step:
            spec = step["observe"]
            veto.observe(_call(spec, run_id), spec.get("output"))
        else:
            ran = _call(step["call"], run_id)
            effect = veto.decide(ran).effect
            assert effect is not Effect.DENY, (case["name"], step)
            veto.observe(ran, None, effect=effect)
    decision = veto.decide(_call(case["call"], run_id))
    assert decision.effect.value == case["expect"], (decision.reasons, decision.errors)
    if "rule" in case:
        assert case["rule"] in decision.deciding_rule_ids, decision.deciding_rule_ids


def test_every_rule_of_the_assistant_policy_is_exercised() -> None:
    policy = yaml.safe_load((POLICIES / "assistant.yaml").read_text(encoding="utf-8"))
    assert {r["id"] for r in policy["rules"]} <= {c.get("rule") for c in CASES}

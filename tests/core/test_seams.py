"""DESIGN.md 3 seams: the call pipeline (`authorize.py`) and `decision/` stand on their
own. They never load the facade (`veto_core.engine`), and the pipeline runs for any
caller that hands it a `CallContext`, stage by stage, with the same fail-closed rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from veto_core import Decision, Effect, Principal, ToolCall
from veto_core.approvals import ApprovalService
from veto_core.audit import AuditLog, open_audit
from veto_core.audit.errors import AuditUnavailable
from veto_core.authorize import CallContext, authorize
from veto_core.decision import decide
from veto_core.limits import LimitStore, open_limit_store
from veto_core.policy.compiler import CompiledPolicy, compile_policy
from veto_core.policy.loader import load_policy_text
from veto_core.runs.tracker import RunTracker

POLICY = """
version: 1
name: seams
rules:
  - {id: pay, effect: allow, tools: [pay]}
limits:
  - {id: budget, tools: [pay], per: [principal.user], window: 24h, sum: args.amount, max: 100, reason: Budget spent}
"""


def test_the_stages_below_the_facade_never_import_it() -> None:
    probe = (
        "import sys\n"
        "import veto_core.authorize, veto_core.decision.explain, veto_core.runs\n"
        "import veto_core.approvals.service, veto_core.audit.record, veto_core.limits\n"
        "import veto_core.telemetry\n"
        "print('veto_core.engine' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


@dataclass
class Stores:
    """The stores a caller of the pipeline provides (here: no `Veto` at all)."""

    log: AuditLog
    limits: LimitStore
    audit_down: bool = False
    opened: list[str] = field(default_factory=list)

    @property
    def audit(self) -> AuditLog:
        self.opened.append("audit")
        if self.audit_down:
            raise AuditUnavailable("disk full")
        return self.log

    @property
    def approvals(self) -> ApprovalService:
        raise AssertionError("no call here needs an approval")

    @property
    def limit_store(self) -> LimitStore:
        self.opened.append("limits")
        return self.limits


def _context(policy: CompiledPolicy, stores: Stores) -> CallContext:
    clock: Callable[[], datetime] = lambda: datetime(2026, 1, 1, tzinfo=UTC)  # noqa: E731

    def decide_call(call: ToolCall) -> Decision:
        return decide(policy, call, None, "acme", clock, None)

    return CallContext(
        policy=policy, env=None, tenant="acme", clock=clock,
        runs=RunTracker(db="sqlite:///:memory:", clock=clock), stores=stores,
        decide=decide_call, source=None, stored_revisions=set(),
    )  # fmt: skip


def _pay(amount: float) -> ToolCall:
    return ToolCall(tool="pay", args={"amount": amount}, principal=Principal(user="u1"))


def test_the_pipeline_runs_without_the_facade_and_fails_closed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    policy = compile_policy(load_policy_text(POLICY, file="seams.yaml"))
    stores = Stores(log=open_audit(db), limits=open_limit_store(db))
    ctx = _context(policy, stores)

    first = authorize(ctx, _pay(60))
    assert first.run_tool and first.record_id is not None
    assert [r.tool for r in stores.log.query(tenant="acme")] == ["pay"]
    assert ctx.stored_revisions == {policy.revision}  # the policy text is kept once

    over = authorize(ctx, _pay(50))  # 60 + 50 > 100: the limit decides
    assert over.decision.effect is Effect.DENY and over.decision.deciding_rule_ids == ("budget",)
    assert "Budget spent [budget]: 60 used of 100" in over.decision.reasons[0]

    stores.audit_down = True  # the call cannot be recorded: denied, its budget given back
    lost = authorize(ctx, _pay(40))
    assert lost.decision.effect is Effect.DENY and not lost.run_tool
    assert lost.decision.reasons[0].startswith("audit unavailable: disk full")
    stores.audit_down = False
    again = authorize(ctx, _pay(40))  # 60 + 40 fits only if the 40 above was refunded
    assert again.run_tool and again.record_id is not None

    # Bad arguments never reach the decision, nor the limit store.
    stores.opened.clear()
    bad = authorize(ctx, ToolCall(tool="pay", args={"amount": object()}))
    assert bad.decision.effect is Effect.DENY and bad.decision.rule_ids == ()
    assert "arguments cannot be decided" in bad.decision.reasons[0]
    assert stores.opened == ["audit"]  # only its record
    stores.log.close()
    stores.limits.close()

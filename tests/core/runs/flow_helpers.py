"""Shared helpers of the run / data-flow tests (DESIGN.md 2.7)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from veto_core import MemoryRunStore, RunEvent, RunStore, RunStoreUnavailable, ToolCall, Veto

FIXED_NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)

FLOW_POLICY = """\
version: 1
name: flow
default: allow
sources:
  - id: inbox
    tools: [read_inbox, "web.*"]
    labels: [untrusted]
  - id: keys
    tools: [read_file]
    if: {field: args.path, glob: "/home/*/.ssh/**"}
    labels: [secret]
  - id: person
    tools: ["@user"]
    labels: [user]
rules:
  - id: pay-tainted
    effect: require_approval
    tools: [send_money]
    if: {field: args.recipient, tainted_by: untrusted}
    approval: {approvers: [alice]}
  - id: no-exfiltration
    effect: deny
    tools: [send_email, http_post]
    if: {field: run.labels, contains: secret}
  - id: one-refund-per-run
    effect: deny
    tools: [issue_refund]
    if: {for_any: run.calls, if: {field: item.tool, equals: issue_refund}}
  - id: mail-to-named
    effect: allow
    tools: [mail_user]
    if: {field: args.to, tainted_by: user}
"""


def flow_veto(text: str = FLOW_POLICY, store: RunStore | None = None, **kw: Any) -> Veto:
    return Veto.from_yaml(text, run_store=store or MemoryRunStore(), clock=lambda: FIXED_NOW, **kw)


def call(tool: str, run_id: str | None = "r1", **args: Any) -> ToolCall:
    return ToolCall(tool=tool, args=args, run_id=run_id, tool_call_id=f"c-{tool}")


def effect(veto: Veto, tool: str, run_id: str | None = "r1", **args: Any) -> str:
    return veto.decide(call(tool, run_id, **args)).effect.value


class BrokenRunStore(RunStore):
    """Every operation fails, as an unreachable database would."""

    def append(
        self, tenant: str | None, run_id: str, event: RunEvent, *, ttl_s: float, now: datetime
    ) -> int:
        raise RunStoreUnavailable("connection refused")

    def load(
        self, tenant: str | None, run_id: str, *, now: datetime, after_seq: int = 0
    ) -> tuple[RunEvent, ...]:
        raise RunStoreUnavailable("connection refused")

    def head(self, tenant: str | None, run_id: str, *, now: datetime) -> int:
        raise RunStoreUnavailable("connection refused")

    def purge_expired(self, *, now: datetime) -> int:
        raise RunStoreUnavailable("connection refused")

    def erase(self, *, tenant: str | None, run_id: str | None = None) -> int:
        raise RunStoreUnavailable("connection refused")

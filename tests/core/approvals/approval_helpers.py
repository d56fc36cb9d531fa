"""Shared policy and calls for the approval tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from veto_core import Principal, ToolCall, Veto

PG_URL = os.environ.get("VETO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

POLICY = """
version: 1
name: approvals-test
redact: [args.card]
rules:
  - id: pay
    effect: require_approval
    tools: [pay]
    approval: {approvers: ["role:finance"], quorum: 1, timeout: %(timeout)s, channels: %(channels)s}
    reason: Payments need finance
  - id: wire
    effect: require_approval
    tools: [wire]
    approval: {approvers: ["role:finance", "carol", "dave@example.com"], quorum: 2, timeout: 1h}
    reason: Wires need two approvers
  - id: ops-restart
    effect: require_approval
    tools: [restart]
    approval: {approvers: ["role:ops", bob, human], timeout: 1h}
  - id: reads
    effect: allow
    tools: [read]
"""

REQUESTER = Principal(agent="bot", roles=("support",), user="alice@example.com")


def make_veto(
    db: str,
    *,
    timeout: str = "1h",
    channels: str = "[]",
    tenant: str = "acme",
    clock: Any = None,
) -> Veto:
    return Veto.from_yaml(
        POLICY % {"timeout": timeout, "channels": channels},
        env="prod",
        tenant=tenant,
        db=db,
        clock=clock,
    )


def call(
    tool: str = "pay",
    args: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = "run-1",
    tool_call_id: str | None = "call-1",
    tenant: str | None = None,
    principal: Principal = REQUESTER,
) -> ToolCall:
    return ToolCall(
        tool=tool,
        args={"amount": 500, "to": "acct-9"} if args is None else args,
        principal=principal,
        run_id=run_id,
        tool_call_id=tool_call_id,
        tenant=tenant,
        framework="test",
    )

"""Shared builders for the audit tests (no engine needed: Decisions are built directly)."""

from __future__ import annotations

import hashlib
from typing import Any

from veto_core import Veto
from veto_core.model import Authorization, Decision, Effect, Principal, ToolCall

POLICY_TEXT = "version: 1\nname: support-agent\n"
POLICY_REVISION = hashlib.sha256(POLICY_TEXT.encode()).hexdigest()
"""What records name as their policy; a stored text must hash to its revision."""


def decision(
    effect: Effect = Effect.ALLOW,
    *,
    rules: tuple[str, ...] = ("r-allow",),
    reasons: tuple[str, ...] = ("matched",),
    errors: tuple[str, ...] = (),
) -> Decision:
    return Decision(
        effect=effect,
        rule_ids=rules,
        deciding_rule_ids=rules,
        reasons=reasons,
        errors=errors,
        policy_name="support-agent",
        policy_revision=POLICY_REVISION,
    )


def call(
    tool: str = "send_email",
    *,
    tenant: str | None = "acme",
    user: str | None = "u1",
    agent: str = "bot",
    args: dict[str, Any] | None = None,
    run_id: str | None = "run-1",
    tool_call_id: str | None = "c1",
) -> ToolCall:
    return ToolCall(
        tool=tool,
        args={"to": "a@example.com", "amount": 12.5} if args is None else args,
        principal=Principal(agent=agent, roles=("support",), user=user),
        tenant=tenant,
        run_id=run_id,
        tool_call_id=tool_call_id,
        framework="langchain",
    )


class NumberedCalls:
    """Numbered calls of one tool (``args={"n": n}``, ids ``<tool>-<n>``), remembering
    what ``authorize`` returned for each: the fault tests' caller."""

    def __init__(self, veto: Veto, tool: str = "read") -> None:
        self.veto = veto
        self.tool = tool
        self.results: list[Authorization] = []

    def call(self) -> Authorization:
        n = len(self.results)
        auth = self.veto.authorize(
            ToolCall(
                tool=self.tool,
                args={"n": n},
                principal=Principal(agent="bot", user="u1"),
                run_id="run-1",
                tool_call_id=f"{self.tool}-{n}",
            )
        )
        self.results.append(auth)
        return auth

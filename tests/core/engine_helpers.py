"""Helpers for the engine tests: build policies from Python data, probe one condition.

A plain module (not conftest) so test files can import it by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from veto_core import Decision, Effect, Principal, ToolCall, Veto

FIXED_NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # a Monday, noon UTC

Outcome = Literal["true", "false", "error"]


def policy_yaml(
    rules: Sequence[Mapping[str, Any]],
    *,
    default: str = "deny",
    lists: Mapping[str, Any] | None = None,
    roles: Mapping[str, Any] | None = None,
    name: str = "test-policy",
) -> str:
    """A policy as YAML text (JSON is YAML; it keeps every value's type exact)."""
    doc: dict[str, Any] = {"version": 1, "name": name, "default": default, "rules": list(rules)}
    if lists:
        doc["lists"] = dict(lists)
    if roles:
        doc["roles"] = dict(roles)
    return json.dumps(doc, ensure_ascii=False, indent=1)


def make_veto(
    rules: Sequence[Mapping[str, Any]],
    *,
    default: str = "deny",
    lists: Mapping[str, Any] | None = None,
    roles: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Veto:
    kwargs.setdefault("clock", lambda: FIXED_NOW)
    return Veto.from_yaml(policy_yaml(rules, default=default, lists=lists, roles=roles), **kwargs)


def call(
    tool: str = "t",
    args: Mapping[str, Any] | None = None,
    *,
    roles: Sequence[str] = (),
    agent: str | None = None,
    user: str | None = None,
    **kwargs: Any,
) -> ToolCall:
    return ToolCall(
        tool=tool,
        args=dict(args or {}),
        principal=Principal(agent=agent, roles=tuple(roles), user=user),
        **kwargs,
    )


def probe_veto(
    leaf: Mapping[str, Any], *, lists: Mapping[str, Any] | None = None, **kwargs: Any
) -> Veto:
    """One deny rule whose `if` is ``leaf``, default allow: deny = true or error."""
    return make_veto(
        [{"id": "probe", "effect": "deny", "tools": ["t"], "if": dict(leaf)}],
        default="allow",
        lists=lists,
        **kwargs,
    )


def outcome_of(decision: Decision) -> Outcome:
    if decision.effect is Effect.ALLOW:
        assert decision.errors == ()
        return "false"
    assert decision.effect is Effect.DENY, decision
    return "error" if decision.errors else "true"


def evaluate(
    leaf: Mapping[str, Any],
    args: Mapping[str, Any] | None = None,
    *,
    lists: Mapping[str, Any] | None = None,
    **call_kwargs: Any,
) -> Outcome:
    """Evaluate one condition through the whole compile path: 'true' | 'false' | 'error'."""
    veto = probe_veto(leaf, lists=lists)
    return outcome_of(veto.decide(call("t", args, **call_kwargs)))

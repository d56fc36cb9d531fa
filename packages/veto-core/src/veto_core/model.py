"""Runtime values: frozen, keyword-only dataclasses shared by every part of Veto.

A decision is a value with reasons (never an exception); adapters turn it into
their framework's native "blocked" signal.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "ApprovalRequirement",
    "ApprovalSpec",
    "Authorization",
    "Decision",
    "Effect",
    "Principal",
    "ToolCall",
]


class Effect(enum.StrEnum):
    """What happens to a tool call. Ordered by precedence: deny > require_approval > allow."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who is calling: the agent, its roles, and the human/tenant it acts for."""

    agent: str | None = None
    roles: tuple[str, ...] = ()
    tenant: str | None = None
    user: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.roles, str):
            # A bare string would silently become a tuple of characters.
            raise TypeError("Principal.roles must be a tuple of role names, not a string")
        if not isinstance(self.roles, tuple):
            object.__setattr__(self, "roles", tuple(self.roles))


_NO_PRINCIPAL = Principal()


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    """One tool call an agent wants to make.

    ``env`` and ``tenant`` override the ``Veto`` instance's defaults for this call
    (``tenant`` falls back to ``principal.tenant``, then to the instance's).
    ``now`` overrides the clock for this call (replay, batch checks, tests).
    """

    tool: str
    args: Mapping[str, Any] = field(default_factory=dict)
    principal: Principal = _NO_PRINCIPAL
    env: str | None = None
    tenant: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    tool_call_id: str | None = None
    framework: str | None = None
    now: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalRequirement:
    """What one deciding approval rule (or limit) asks for: ``quorum`` distinct
    identities among its ``approvers`` (``role:NAME``, user ids or e-mails)."""

    rule_id: str
    approvers: tuple[str, ...]
    quorum: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.approvers, str):
            raise TypeError("ApprovalRequirement.approvers must be a tuple, not a string")
        if not isinstance(self.approvers, tuple):
            object.__setattr__(self, "approvers", tuple(self.approvers))

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "approvers": list(self.approvers), "quorum": self.quorum}

    def describe(self) -> str:
        who = ", ".join(self.approvers) or "nobody (the policy names no approvers)"
        return f"{self.quorum} of {who} [{self.rule_id}]"


def named_approvers(requirements: Iterable[ApprovalRequirement]) -> tuple[str, ...]:
    """Every approver the requirements name, in order, once (display: each requirement
    still counts on its own, DESIGN.md 2.2)."""
    return tuple(dict.fromkeys(a for r in requirements for a in r.approvers))


def largest_quorum(requirements: Iterable[ApprovalRequirement]) -> int:
    """The largest quorum of one requirement: approvals still needed at the least."""
    return max((r.quorum for r in requirements), default=1)


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalSpec:
    """Who must approve a call and how long they have (DESIGN.md 2.2 step 3/4).

    One requirement per deciding approval rule; every one must be met on its own
    (one approver may count towards several). Channels are the union, the timeout
    the shortest of the deciding rules.
    """

    requirements: tuple[ApprovalRequirement, ...] = ()
    timeout_s: float = 3600.0
    channels: tuple[str, ...] = ()

    @property
    def approvers(self) -> tuple[str, ...]:
        """Every approver any requirement names (for display; not a requirement)."""
        return named_approvers(self.requirements)

    @property
    def quorum(self) -> int:
        """The largest quorum of one requirement (for display)."""
        return largest_quorum(self.requirements)

    def describe(self) -> str:
        """``"1 of role:finance [refunds-large]; 2 of alice, bob [acme]"``."""
        return "; ".join(r.describe() for r in self.requirements) or (
            "nobody (the policy names no approvers)"
        )


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The outcome of ``Veto.decide``.

    ``rule_ids``: every rule that matched (sorted); ``deciding_rule_ids``: the
    ones whose effect won; ``errors``: evaluation errors that reached a rule
    (each one failed closed); ``policy_revision``: SHA-256 of the canonical
    policy that decided. A Decision is a value: equal decisions may be one shared
    object, so it holds no per-call data (`authorize()` measures the evaluation
    time and records it as the audit record's ``latency_us``).
    """

    effect: Effect
    rule_ids: tuple[str, ...]
    deciding_rule_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    policy_name: str
    policy_revision: str
    approval: ApprovalSpec | None = None
    #: False when the policy is in ``mode: shadow``: recorded, never enforced.
    enforced: bool = True
    #: What rules in ``mode: shadow`` would have made of this call, when that differs.
    shadow_effect: Effect | None = None
    shadow_rule_ids: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    @property
    def reason(self) -> str:
        """All reasons as one line, for a model or a log."""
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "effect": self.effect.value,
            "rule_ids": list(self.rule_ids),
            "deciding_rule_ids": list(self.deciding_rule_ids),
            "reasons": list(self.reasons),
            "errors": list(self.errors),
            "policy_name": self.policy_name,
            "policy_revision": self.policy_revision,
        }
        if not self.enforced:
            out["enforced"] = False
        if self.shadow_effect is not None:
            out["shadow_effect"] = self.shadow_effect.value
            out["shadow_rule_ids"] = list(self.shadow_rule_ids)
        if self.approval is not None:
            out["approval"] = {
                "requirements": [r.to_dict() for r in self.approval.requirements],
                "approvers": list(self.approval.approvers),
                "quorum": self.approval.quorum,
                "timeout_s": self.approval.timeout_s,
                "channels": list(self.approval.channels),
            }
        return out


@dataclass(frozen=True, kw_only=True)
class Authorization:
    """What adapters act on: the decision, its durable audit record (``record_id`` is
    None only in ``audit: {mode: best_effort}`` when the store failed), and the
    approval request when the decision requires one. Only ``run_tool`` lets a tool run.

    ``released`` is True only on the ``Authorization`` returned by
    ``Veto.authorize_and_wait`` / ``Veto.wait_for_approval`` when the request was
    APPROVED and consumed by that very call (so it is True once per request).
    ``approval_error`` says why the approval path failed (the call does not run).
    """

    decision: Decision
    record_id: str | None
    approval: Any | None = None  # an ApprovalRequest when decision requires approval
    released: bool = False
    approval_error: str | None = None

    @property
    def run_tool(self) -> bool:
        if not self.decision.enforced:
            return True  # policy in mode: shadow: recorded as shadow-*, never blocks
        effect = self.decision.effect
        if effect is Effect.ALLOW:
            return True
        return effect is Effect.REQUIRE_APPROVAL and self.released and self.approval is not None

    @property
    def reason(self) -> str:
        """Why the call runs or not, as one line (the decision's reasons, plus the
        approval's state when approval was required)."""
        text = self.decision.reason
        if self.decision.effect is not Effect.REQUIRE_APPROVAL:
            return text
        if self.approval_error:
            return f"{text}; approval failed (fail closed): {self.approval_error}"
        if self.approval is None:
            return text
        state = str(getattr(self.approval, "state", "pending"))
        what = f"approval request {getattr(self.approval, 'id', '?')} is {state}"
        if self.released:
            return f"{text}; {what}, released to run"
        final = getattr(self.approval, "final_reason", None)
        if state == "approved":
            what += " but was already used (an approval releases one call once)"
        elif final:
            what += f": {final}"
        return f"{text}; {what}"


_DECISION_NEW = object.__new__
_SET = object.__setattr__


def make_decision(
    effect: Effect,
    rule_ids: tuple[str, ...],
    deciding_rule_ids: tuple[str, ...],
    reasons: tuple[str, ...],
    errors: tuple[str, ...],
    policy_name: str,
    policy_revision: str,
    approval: ApprovalSpec | None,
    enforced: bool = True,
    shadow_effect: Effect | None = None,
    shadow_rule_ids: tuple[str, ...] = (),
) -> Decision:
    """Build a Decision on the hot path.

    A frozen dataclass ``__init__`` pays one ``object.__setattr__`` per field;
    setting ``__dict__`` once is several times cheaper and yields the same value.
    """
    d = _DECISION_NEW(Decision)
    _SET(
        d,
        "__dict__",
        {
            "effect": effect,
            "rule_ids": rule_ids,
            "deciding_rule_ids": deciding_rule_ids,
            "reasons": reasons,
            "errors": errors,
            "policy_name": policy_name,
            "policy_revision": policy_revision,
            "approval": approval,
            "enforced": enforced,
            "shadow_effect": shadow_effect,
            "shadow_rule_ids": shadow_rule_ids,
        },
    )
    return d

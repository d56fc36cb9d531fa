"""Approval values: requests, votes, approvers, lifecycle states, errors (DESIGN.md 5).

Everything here is a frozen, keyword-only value; the store and the service
produce new values on every change, never mutate one.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from veto_core.identity import IdentityError, canonical_identity, canonical_or_none
from veto_core.model import (
    ApprovalRequirement,
    Principal,
    largest_quorum,
    named_approvers,
)

__all__ = [
    "ApprovalClosed",
    "ApprovalError",
    "ApprovalLinks",
    "ApprovalNotFound",
    "ApprovalRefused",
    "ApprovalRequest",
    "ApprovalState",
    "ApprovalUnavailable",
    "Approver",
    "NotEligible",
    "SelfApproval",
    "Vote",
    "binding_key",
]


class ApprovalState(enum.StrEnum):
    """``PENDING → APPROVED | DENIED | EXPIRED | CANCELLED``; only APPROVED lets a tool run."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self is not ApprovalState.PENDING


# --------------------------------------------------------------------------- errors


class ApprovalError(Exception):
    """Base class of approval errors."""


class ApprovalUnavailable(ApprovalError):
    """The approval store cannot be opened, read or written: callers deny (fail closed)."""


class ApprovalNotFound(ApprovalError):
    """No request with that id (or it belongs to another tenant than the approver's)."""


class ApprovalRefused(ApprovalError):
    """A vote that is not accepted; the message says why, for the person who cast it."""


class SelfApproval(ApprovalRefused):
    """The requesting principal tried to approve its own call."""


class NotEligible(ApprovalRefused):
    """The approver does not satisfy the rule's ``approvers`` requirement."""


class ApprovalClosed(ApprovalRefused):
    """The request is no longer pending (approved, denied, expired or cancelled)."""

    def __init__(self, message: str, state: ApprovalState) -> None:
        super().__init__(message)
        self.state = state


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, kw_only=True, slots=True)
class Approver:
    """Who casts a vote: an id (user name or email), the roles they hold, and an
    optional email and tenant.

    ``tenant=None`` is an operator who may decide requests of any tenant (the
    local CLI); a tenant-bound approver (dashboard, Slack) only sees and decides
    its own tenant's requests.
    """

    id: str
    roles: tuple[str, ...] = ()
    email: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError("an approver needs a non-empty id")
        if isinstance(self.roles, str):
            raise TypeError("Approver.roles must be a tuple of role names, not a string")
        if not isinstance(self.roles, tuple):
            object.__setattr__(self, "roles", tuple(self.roles))
        try:  # refuse hidden characters up front (DESIGN.md 2.8), with a clear message
            canonical_identity(self.id, what="approver id")
            canonical_or_none(self.email, what="approver e-mail")
            for role in self.roles:
                canonical_identity(role, what="approver role")
        except IdentityError as exc:
            raise NotEligible(str(exc)) from None

    @classmethod
    def of(cls, approver: Approver | str) -> Approver:
        return approver if isinstance(approver, Approver) else cls(id=approver)

    def identities(self) -> frozenset[str]:
        """The canonical identities this approver answers to (its id and its e-mail)."""
        ids = {canonical_identity(self.id)}
        if self.email and self.email.strip():
            ids.add(canonical_identity(self.email))
        return frozenset(ids)

    def canonical_roles(self) -> frozenset[str]:
        return frozenset(canonical_identity(r) for r in self.roles if r.strip())


@dataclass(frozen=True, kw_only=True, slots=True)
class Vote:
    approver: str
    approve: bool
    via: str
    at: datetime
    roles: tuple[str, ...] = ()
    reason: str | None = None
    # Set when an operator holding the local admin key voted in the approver's name
    # (DESIGN.md 2.8): the record names both.
    operator: str | None = None
    #: Canonical identities of the voter when the vote was cast (its id, e-mail and
    #: every alias the user table knows): quorum counts people, not spellings.
    identities: tuple[str, ...] = ()

    def people(self) -> frozenset[str]:
        """The voter's canonical identities (from its id when none were recorded)."""
        if self.identities:
            return frozenset(self.identities)
        try:
            return frozenset({canonical_identity(self.approver)})
        except IdentityError:
            return frozenset({self.approver})

    def to_dict(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "approve": self.approve,
            "via": self.via,
            "at": self.at.isoformat(),
            "roles": list(self.roles),
            "reason": self.reason,
            "operator": self.operator,
        }


def binding_key(
    tenant: str, run_id: str | None, tool_call_id: str | None, tool: str, args_digest: str
) -> str:
    """The unique key of a request: SHA-256 over the exact call it may release."""
    raw = json.dumps([tenant, run_id, tool_call_id, tool, args_digest], separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalRequest:
    """One call waiting for (or decided by) people.

    Bound to ``(tenant, run_id, tool_call_id, tool, args_digest)``: the
    ``args_digest`` is the HMAC of the exact unredacted arguments under the
    tenant's key, so edited arguments are a different call. ``args`` is the
    redacted copy shown to approvers. ``requester`` is ``principal.user``.
    """

    id: str
    tenant: str
    run_id: str | None
    tool_call_id: str | None
    tool: str
    args_digest: str
    state: ApprovalState
    created_at: datetime
    expires_at: datetime
    env: str | None = None
    principal: Principal = field(default_factory=Principal)
    args: Mapping[str, Any] | None = None
    #: One per deciding approval rule; each must be met on its own (DESIGN.md 2.2).
    requirements: tuple[ApprovalRequirement, ...] = ()
    channels: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    policy_name: str | None = None
    policy_revision: str | None = None
    votes: tuple[Vote, ...] = ()
    decided_at: datetime | None = None
    consumed_at: datetime | None = None
    final_reason: str | None = None

    @property
    def binding(self) -> str:
        return binding_key(self.tenant, self.run_id, self.tool_call_id, self.tool, self.args_digest)

    @property
    def requester(self) -> str | None:
        return self.principal.user

    @property
    def consumed(self) -> bool:
        return self.consumed_at is not None

    @property
    def approvers(self) -> tuple[str, ...]:
        """Every approver any requirement names (display only: each requirement counts)."""
        return named_approvers(self.requirements)

    @property
    def quorum(self) -> int:
        """Approvals still needed at the least: the largest single quorum (display)."""
        return largest_quorum(self.requirements)

    @property
    def needs(self) -> str:
        """Who must approve, one requirement each: ``"1 of role:finance [refunds]"``."""
        return "; ".join(r.describe() for r in self.requirements) or (
            "nobody (the policy names no approvers)"
        )

    @property
    def approved_by(self) -> tuple[str, ...]:
        """Distinct people who voted to approve, in vote order (one name each, however
        many aliases they voted under)."""
        seen: list[frozenset[str]] = []
        names: list[str] = []
        for v in self.votes:
            if v.approve:
                ids = v.people()
                if not any(ids & s for s in seen):
                    seen.append(ids)
                    names.append(v.approver)
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "tenant": self.tenant,
            "env": self.env,
            "run_id": self.run_id,
            "tool_call_id": self.tool_call_id,
            "tool": self.tool,
            "args": None if self.args is None else dict(self.args),
            "args_digest": self.args_digest,
            "requester": self.requester,
            "agent": self.principal.agent,
            "approvers": list(self.approvers),
            "quorum": self.quorum,
            "requirements": [r.to_dict() for r in self.requirements],
            "needs": self.needs,
            "channels": list(self.channels),
            "rule_ids": list(self.rule_ids),
            "reasons": list(self.reasons),
            "policy_name": self.policy_name,
            "policy_revision": self.policy_revision,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "consumed_at": None if self.consumed_at is None else self.consumed_at.isoformat(),
            "final_reason": self.final_reason,
            "votes": [v.to_dict() for v in self.votes],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalLinks:
    """How an approver can act on a request; channels render what they can.

    ``approve_command`` / ``deny_command``: the console commands; ``dashboard_url``:
    set when a server is configured (server issue); ``extra``: channel-specific links.
    """

    approve_command: str
    deny_command: str
    show_command: str
    dashboard_url: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "approve_command": self.approve_command,
            "deny_command": self.deny_command,
            "show_command": self.show_command,
            "dashboard_url": self.dashboard_url,
            **dict(self.extra),
        }

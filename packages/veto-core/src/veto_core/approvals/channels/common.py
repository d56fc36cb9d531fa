"""What the Slack and email channels share: who may decide a request (the
``veto serve`` users in the same database), and how a request is shown.

The directory only chooses whom to *tell*; whether a vote counts is decided by
:meth:`ApprovalService.decide` when it comes back (eligibility, quorum, the
requester's own call), so a mistake here can never approve anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from veto_core.approvals.model import ApprovalRequest

if TYPE_CHECKING:
    from veto_core.server.store import ServerStore, User

__all__ = ["UserDirectory", "is_eligible", "pretty_args", "summary_lines"]

ARGS_LIMIT = 2500


def pretty_args(request: ApprovalRequest, limit: int = ARGS_LIMIT) -> str:
    """The request's (already redacted) arguments as indented JSON, cut at ``limit``."""
    text = json.dumps(
        dict(request.args or {}), indent=2, sort_keys=True, ensure_ascii=False, default=str
    )
    if len(text) > limit:
        text = text[: limit - 20] + "\n… (truncated)"
    return text


def summary_lines(request: ApprovalRequest) -> list[tuple[str, str]]:
    """(label, value) pairs describing a request, for messages and pages."""
    p = request.principal
    return [
        ("Tool", request.tool),
        ("Agent", p.agent or "-"),
        ("Requested by", p.user or "-"),
        ("Tenant", request.tenant + (f" ({request.env})" if request.env else "")),
        ("Rules", ", ".join(request.rule_ids) or "-"),
        ("Reasons", "; ".join(request.reasons) or "policy requires approval"),
        (
            "Approvers",
            request.needs,
        ),
        ("Expires", request.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Request", request.id),
    ]


def is_eligible(request: ApprovalRequest, user: User) -> bool:
    """Whether ``user`` could approve ``request`` (mirrors ``check_eligible``, plus the
    dashboard's rule that deciding needs the approver role in the request's tenant).
    A user is their id and their e-mail, compared as canonical identities (DESIGN.md 2.8)."""
    from veto_core.approvals.service import eligible_for
    from veto_core.identity import IdentityError, canonical_or_none
    from veto_core.server.store import role_at_least

    if user.disabled or not role_at_least(user.role(request.tenant), "approver"):
        return False
    try:
        ids = frozenset(
            x for x in (canonical_or_none(user.username), canonical_or_none(user.email)) if x
        )
        requester = {
            x
            for x in (
                canonical_or_none(request.principal.user),
                canonical_or_none(request.principal.agent),
            )
            if x
        }
        roles = frozenset(
            c for r in user.approver_roles(request.tenant) if (c := canonical_or_none(r))
        )
    except IdentityError:
        return False  # a hidden character in an id: never eligible (fail closed)
    if ids & requester:
        return False
    return any(eligible_for(r, ids, roles) for r in request.requirements)


class UserDirectory:
    """The ``veto serve`` users in the database at ``db`` (None: ``$VETO_DB`` or the
    default): who may decide a request, by name, email or Slack mapping."""

    def __init__(self, db: str | None = None, *, opener: Callable[[], ServerStore] | None = None):
        self.db = db
        self._opener = opener

    def _open(self) -> ServerStore:
        if self._opener is not None:
            return self._opener()
        try:
            from veto_core.server.store import open_server_store
        except ImportError as exc:
            raise RuntimeError(
                "finding approvers needs the server extra: pip install 'veto-core[server]'"
            ) from exc
        return open_server_store(self.db)

    def eligible(self, request: ApprovalRequest) -> list[User]:
        store = self._open()
        try:
            users = store.list_users(request.tenant)
        finally:
            store.close()
        return [u for u in users if is_eligible(request, u)]

    def secret_key(self) -> str:
        """The key ``veto serve`` uses when ``VETO_SECRET_KEY`` is not set."""
        store = self._open()
        try:
            return store.secret_key()
        finally:
            store.close()

    def user(self, username: str) -> User | None:
        store = self._open()
        try:
            return store.get_user(username)
        finally:
            store.close()

    def by_email(self, email: str) -> User | None:
        from veto_core.identity import canonical_or_none, same_identity

        want = canonical_or_none(email) if email.strip() else None
        if want is None:
            return None
        store = self._open()
        try:
            users = store.list_users()
        finally:
            store.close()
        found = [u for u in users if u.email and same_identity(u.email, want)]
        return found[0] if len(found) == 1 else None  # ambiguous: nobody (fail closed)

"""``ApprovalService``: the approval lifecycle over a store, with audit and channels.

Rules it enforces (DESIGN.md 5):

- a request is bound to ``(tenant, run_id, tool_call_id, tool, args_digest)`` and
  created once per binding (a unique constraint, so across processes too);
- a request carries one requirement per deciding approval rule (DESIGN.md 2.2):
  each is met on its own — ``quorum`` distinct people among its ``approvers``
  (``role:NAME`` needs that role, any other entry, optionally ``user:``-prefixed, is
  a user id or an e-mail); one approver may count towards several. A request that
  names nobody can never be approved (the policy compiler refuses such policies);
- identities are canonical (DESIGN.md 2.8, :mod:`veto_core.identity`): a person is
  their id, their e-mail and every alias the ``veto users`` table knows for them;
  quorum counts people, not spellings; one deny vetoes; the requesting principal
  (its user, or its agent) can never approve its own call under any alias;
- past ``expires_at`` a pending request is EXPIRED (computed when read, persisted
  when first observed); a vote after the deadline is refused, never counted;
- an APPROVED request releases its call once: :meth:`ApprovalService.consume` is
  a compare-and-set that returns True to exactly one caller;
- every state change is an audit record (``approval_requested``,
  ``approval_vote``, ``approved``, ``rejected``, ``expired``, ``cancelled``,
  ``approval_consumed``, ``approval_notify_failed``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from veto_core.approvals.model import (
    ApprovalClosed,
    ApprovalError,
    ApprovalLinks,
    ApprovalNotFound,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalState,
    ApprovalUnavailable,
    Approver,
    NotEligible,
    SelfApproval,
    Vote,
    binding_key,
)
from veto_core.approvals.sealed import open_args, seal_args
from veto_core.approvals.store import ApprovalStore, Change
from veto_core.audit.errors import AuditUnavailable
from veto_core.audit.record import (
    DEFAULT_TENANT,
    ApprovalInfo,
    new_uuid7,
    plain_args_json,
    redact_args,
)
from veto_core.identity import IdentityError, canonical_identity, canonical_or_none
from veto_core.model import ApprovalRequirement, ApprovalSpec, Decision, ToolCall

if TYPE_CHECKING:
    from veto_core.audit.log import AuditLog
    from veto_core.hookspecs import ApprovalChannel

__all__ = [
    "ApprovalService",
    "describe_error",
    "eligible_for",
    "load_channels",
    "open_approvals",
    "requirements_met",
]

log = logging.getLogger("veto.approvals")

_FINAL_OUTCOME = {
    ApprovalState.APPROVED: "approved",
    ApprovalState.DENIED: "rejected",
    ApprovalState.EXPIRED: "expired",
    ApprovalState.CANCELLED: "cancelled",
}


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def load_channels() -> list[ApprovalChannel]:
    """Every channel the plugins provide (built-ins and ``veto`` entry points)."""
    from veto_core.plugins import get_plugin_manager

    answers = get_plugin_manager().hook.veto_approval_channels()
    return [c for answer in answers for c in (answer or ())]


def open_approvals(
    url: str | None = None,
    *,
    clock: Callable[[], _dt.datetime] | None = None,
    channels: Sequence[ApprovalChannel] | Callable[[], Sequence[ApprovalChannel]] | None = None,
    audit_on_demand: bool = False,
) -> ApprovalService:
    """An approval service on the audit database at ``url`` (``None``: ``$VETO_DB`` or
    ``~/.veto/veto.db``), with its own audit log; ``close()`` closes both. For the
    CLI, the server and tools that decide requests without a policy at hand.

    ``audit_on_demand``: open the audit log only when the service first needs it
    (before any change it must record), not up front: reading requests then costs
    no audit store and no plugin discovery (``veto approvals list``, DESIGN.md 8).
    A log that cannot be opened then fails that change as it would have failed here."""
    from veto_core.approvals.store import open_approval_store

    if audit_on_demand:
        store = open_approval_store(url)
        service = ApprovalService(
            store, None, clock=clock, channels=channels, db=url, open_audit=lambda: _audit_at(url)
        )
        service._owns_audit = True
        return service
    audit = _audit_at(url)
    try:
        store = open_approval_store(url)
    except BaseException:
        audit.close()
        raise
    service = ApprovalService(store, audit, clock=clock, channels=channels, db=url)
    service._owns_audit = True
    return service


def _audit_at(url: str | None) -> AuditLog:
    from veto_core.audit.log import open_audit

    try:
        return open_audit(url)
    except AuditUnavailable as exc:
        raise ApprovalUnavailable(str(exc)) from exc


def _canon(value: str) -> str | None:
    """A stored approver entry or role as an identity (None if it cannot be one)."""
    try:
        return canonical_identity(value)
    except IdentityError:
        return None


def eligible_for(
    requirement: ApprovalRequirement, ids: frozenset[str], roles: frozenset[str]
) -> bool:
    """Whether a person (canonical ``ids``, canonical ``roles``) is one of the
    requirement's approvers."""
    for entry in requirement.approvers:
        if entry.startswith("role:"):
            if _canon(entry[5:]) in roles:
                return True
        elif _canon(entry[5:] if entry.startswith("user:") else entry) in ids:
            return True
    return False


def _count_people(groups: list[frozenset[str]]) -> int:
    """How many distinct people voted: votes whose identities overlap are one person."""
    people: list[set[str]] = []
    for ids in groups:
        merged = [p for p in people if p & ids]
        one = set(ids).union(*merged)
        people = [p for p in people if not (p & ids)]
        people.append(one)
    return len(people)


def requirements_met(requirements: Sequence[ApprovalRequirement], votes: Iterable[Vote]) -> bool:
    """Every requirement has ``quorum`` distinct eligible people among the approving
    votes (one person may count towards several). No requirement: never met."""
    approving = [v for v in votes if v.approve]
    if not requirements:
        return False
    for req in requirements:
        groups = [
            v.people()
            for v in approving
            if eligible_for(req, v.people(), frozenset(c for r in v.roles if (c := _canon(r))))
        ]
        if _count_people(groups) < max(1, req.quorum):
            return False
    return True


class ApprovalService:
    """Approval requests in one store, audited in one audit log. Thread-safe.

    ``clock`` decides expiry (the engine passes its own); ``channels`` is a list of
    channels or a callable returning one (default: the plugins', loaded on first
    use); ``db`` is the store URL to print in console commands (None: the default).
    """

    def __init__(
        self,
        store: ApprovalStore,
        audit: AuditLog | None,
        *,
        clock: Callable[[], _dt.datetime] | None = None,
        channels: Sequence[ApprovalChannel] | Callable[[], Sequence[ApprovalChannel]] | None = None,
        db: str | None = None,
        tenant: str | None = None,
        env: str | None = None,
        open_audit: Callable[[], AuditLog] | None = None,
    ) -> None:
        if audit is None and open_audit is None:
            raise TypeError("ApprovalService needs an audit log or a way to open one")
        self.store = store
        self._audit = audit
        self._open_audit = open_audit
        self._audit_lock = threading.Lock()
        self.clock: Callable[[], _dt.datetime] = clock or _utcnow
        self._channels = channels
        self._loaded_channels: list[ApprovalChannel] | None = None
        self.db = db
        self.tenant = tenant
        self.env = env
        self._owns_audit = False

    @property
    def audit(self) -> AuditLog:
        """The audit log every state change is recorded in (opened on first use when
        the service was made with ``open_audit``)."""
        audit = self._audit
        if audit is None:
            with self._audit_lock:
                audit = self._audit
                if audit is None:
                    assert self._open_audit is not None
                    audit = self._audit = self._open_audit()
        return audit

    def close(self) -> None:
        self.store.close()
        if self._owns_audit and self._audit is not None:
            self._audit.close()

    def use_channels(
        self, channels: Sequence[ApprovalChannel] | Callable[[], Sequence[ApprovalChannel]] | None
    ) -> None:
        """Replace the channels (``None``: the plugins' again). For embedders and tests."""
        self._channels = channels
        self._loaded_channels = None

    # -- creating ----------------------------------------------------------------------

    def tenant_of(self, call: ToolCall, tenant: str | None = None) -> str:
        """The tenant a call's request is filed under (as its audit record is)."""
        return call.tenant or call.principal.tenant or tenant or self.tenant or DEFAULT_TENANT

    def binding_for(self, call: ToolCall, *, tenant: str | None = None) -> str:
        t = self.tenant_of(call, tenant)
        try:
            digest = self.audit.args_digest(t, call.args)
        except Exception as exc:
            raise ApprovalUnavailable(f"cannot bind the call to a request: {exc}") from exc
        return binding_key(t, call.run_id, call.tool_call_id, call.tool, digest)

    def open_request(
        self,
        call: ToolCall,
        decision: Decision,
        *,
        tenant: str | None = None,
        env: str | None = None,
        redact: Iterable[str] = (),
    ) -> tuple[ApprovalRequest, bool]:
        """Store the request for ``call`` unless its binding already has one.

        Returns ``(request, created)``; no audit record, no notification (see
        :meth:`announce`). The engine records the decision in between, naming the
        request's id.
        """
        t = self.tenant_of(call, tenant)
        spec = decision.approval or ApprovalSpec()
        if not spec.requirements or not all(r.approvers for r in spec.requirements):
            raise ApprovalRefused(
                "the policy names no approvers for this call, so nobody can approve it"
            )
        try:
            canonical_or_none(call.principal.user, what="the requesting user")
            canonical_or_none(call.principal.agent, what="the requesting agent")
        except IdentityError as exc:
            raise ApprovalRefused(f"cannot open an approval request: {exc}") from None
        request_id = new_uuid7()
        try:
            digest = self.audit.args_digest(t, call.args)
            shown = redact_args(call.args, tuple(redact))
            plain = plain_args_json(call.args)[0]
            # What redaction hid is kept for the approvers, encrypted (see sealed.py).
            sealed = (
                None if shown == plain else seal_args(self.audit.tenant_key(t), request_id, plain)
            )
        except Exception as exc:
            raise ApprovalUnavailable(f"cannot bind the call to a request: {exc}") from exc
        now = self.clock()
        candidate = ApprovalRequest(
            id=request_id,
            tenant=t,
            run_id=call.run_id,
            tool_call_id=call.tool_call_id,
            tool=call.tool,
            args_digest=digest,
            state=ApprovalState.PENDING,
            created_at=now,
            expires_at=now + _dt.timedelta(seconds=max(0.0, float(spec.timeout_s))),
            env=call.env or env or self.env,
            principal=call.principal,
            args=shown,
            requirements=tuple(spec.requirements),
            channels=tuple(spec.channels),
            rule_ids=tuple(decision.deciding_rule_ids),
            reasons=tuple(decision.reasons),
            policy_name=decision.policy_name,
            policy_revision=decision.policy_revision,
        )
        stored, created = self.store.insert_or_get(candidate, sealed_args=sealed)
        if not created:
            stored = self._observe(stored)
        return stored, created

    def announce(
        self, request: ApprovalRequest, call: ToolCall, *, redact: Iterable[str] = ()
    ) -> None:
        """Record ``approval_requested`` and notify the request's channels.

        Raises :class:`AuditUnavailable` if the record cannot be written (the
        caller denies); a failing channel is logged and recorded, never raised.
        """
        self.audit.record_event(
            tenant=request.tenant,
            env=request.env,
            principal=request.principal,
            framework=call.framework,
            run_id=request.run_id,
            tool=request.tool,
            tool_call_id=request.tool_call_id,
            args=call.args,
            redact=redact,
            effect="require_approval",
            outcome="approval_requested",
            rule_ids=request.rule_ids,
            reasons=(
                *request.reasons,
                f"needs approval from {request.needs} by {request.expires_at.isoformat()}",
            ),
            policy_name=request.policy_name,
            policy_revision=request.policy_revision,
            approval=ApprovalInfo(id=request.id),
        )
        self.notify(request)

    def request(
        self,
        call: ToolCall,
        decision: Decision,
        *,
        tenant: str | None = None,
        env: str | None = None,
        redact: Iterable[str] = (),
    ) -> ApprovalRequest:
        """Create (or find) the request for ``call`` and announce it when new."""
        req, created = self.open_request(call, decision, tenant=tenant, env=env, redact=redact)
        if created:
            self.announce(req, call, redact=redact)
        return req

    # -- channels ----------------------------------------------------------------------

    def channels(self) -> list[ApprovalChannel]:
        if self._channels is None:
            if self._loaded_channels is None:
                self._loaded_channels = load_channels()
            return list(self._loaded_channels)
        if callable(self._channels):
            return list(self._channels())
        return list(self._channels)

    def links(self, request: ApprovalRequest) -> ApprovalLinks:
        db = f" --db {shlex.quote(self.db)}" if self.db else ""
        rid = request.id
        return ApprovalLinks(
            approve_command=f"veto approvals approve {rid} --as YOU --password{db}",
            deny_command=f"veto approvals deny {rid} --as YOU --password --reason TEXT{db}",
            show_command=f"veto approvals show {rid}{db}",
        )

    def notify(self, request: ApprovalRequest) -> list[str]:
        """Notify the request's channels (all enabled ones if it names none).

        Returns the names of channels that were notified. A channel that raises is
        logged and recorded and does not stop the others; a channel only ever
        receives a copy of the request, never the means to decide it.
        """
        try:
            available = self.channels()
        except Exception as exc:
            log.warning("approval channels could not be loaded: %s", exc)
            self._record_notify_failure(request, "plugins", exc)
            return []
        wanted = set(request.channels)
        chosen = [c for c in available if not wanted or getattr(c, "name", None) in wanted]
        links = self.links(request)
        done: list[str] = []
        for channel in chosen:
            name = str(getattr(channel, "name", type(channel).__name__))
            try:
                channel.notify(request, links)
            except Exception as exc:
                log.warning("approval channel %r failed for request %s: %s", name, request.id, exc)
                self._record_notify_failure(request, name, exc)
            else:
                done.append(name)
        return done

    def _record_notify_failure(self, request: ApprovalRequest, name: str, exc: Exception) -> None:
        try:
            self._event(
                request,
                "approval_notify_failed",
                reasons=(f"channel {name!r} failed: {type(exc).__name__}: {exc}",),
                info=ApprovalInfo(id=request.id, channel=name),
            )
        except AuditUnavailable as audit_exc:
            log.warning("could not record the channel failure: %s", audit_exc)

    # -- reading -----------------------------------------------------------------------

    def get(self, request_id: str, *, tenant: str | None = None) -> ApprovalRequest:
        """The request, with expiry applied. ``tenant``: refuse other tenants' requests
        (reported as not found). Raises :class:`ApprovalNotFound`."""
        req = self.store.get(request_id)
        if req is None or (tenant is not None and req.tenant != tenant):
            raise ApprovalNotFound(f"no approval request {request_id!r}")
        return self._observe(req)

    def find(self, call: ToolCall, *, tenant: str | None = None) -> ApprovalRequest | None:
        """The request bound to exactly this call (tenant, run, tool call, tool, args)."""
        req = self.store.find(self.binding_for(call, tenant=tenant))
        return None if req is None else self._observe(req)

    def resolve(self, id_or_fragment: str) -> str:
        """A full request id from an id or a unique prefix or suffix (at least 6
        characters). Ids are UUIDv7: requests made close together share a prefix, so
        the suffix (random bits) is the reliable short form."""
        if self.store.get(id_or_fragment) is not None:
            return id_or_fragment
        fragment = id_or_fragment.strip().lower()
        if len(fragment) >= 6:
            shown = 10
            ids = self.store.resolve(fragment, limit=shown + 1)
            if len(ids) == 1:
                return ids[0]
            if len(ids) > 1:
                more = " and more" if len(ids) > shown else ""
                raise ApprovalNotFound(
                    f"{id_or_fragment!r} is ambiguous: it matches {', '.join(ids[:shown])}{more}; "
                    "give more characters (the end of an id is the unique part)"
                )
        raise ApprovalNotFound(
            f"no approval request {id_or_fragment!r} (give a full id, or 6+ characters of "
            "its start or end)"
        )

    def list(
        self,
        *,
        tenant: str | None = None,
        state: ApprovalState | str | Sequence[ApprovalState | str] | None = None,
        limit: int | None = 100,
    ) -> list[ApprovalRequest]:
        """Requests, newest first; ``state`` filters (expiry applied before filtering)."""
        states: tuple[ApprovalState, ...] | None
        if state is None:
            states = None
        elif isinstance(state, ApprovalState | str):
            states = (ApprovalState(state),)
        else:
            states = tuple(ApprovalState(s) for s in state)
        if states is not None and ApprovalState.EXPIRED in states:
            # Pending requests past their deadline are expired: observe them first.
            for r in self.store.list(tenant=tenant, states=(ApprovalState.PENDING,), limit=None):
                self._observe(r)
        rows = self.store.list(tenant=tenant, states=states, limit=limit)
        out = [self._observe(r) for r in rows]
        return [r for r in out if states is None or r.state in states]

    def _observe(self, req: ApprovalRequest) -> ApprovalRequest:
        if req.state is ApprovalState.PENDING and self.clock() >= req.expires_at:
            return self._expire(req.id, reason="no decision before the approval deadline")
        return req

    # -- deciding ----------------------------------------------------------------------

    def people(self, ids: Iterable[str | None]) -> frozenset[str]:
        """Canonical identities of one person: ``ids`` plus every alias the user table
        (``veto users``: user id and e-mail) knows for any of them."""
        out = {c for x in ids if x is not None and (c := _canon(x)) is not None}
        if not out:
            return frozenset()
        aliases = getattr(self.store, "user_aliases", None)
        for row in aliases() if aliases is not None else ():
            known = {c for x in row if x and (c := _canon(x)) is not None}
            if known & out:
                out |= known
        return frozenset(out)

    def requester_people(self, request: ApprovalRequest) -> frozenset[str]:
        """Every identity the requester answers to (its user and its agent, and their
        aliases): none of them may approve."""
        return self.people((request.principal.user, request.principal.agent))

    def check_eligible(
        self, request: ApprovalRequest, approver: Approver, *, approve: bool
    ) -> frozenset[str]:
        """Raise :class:`SelfApproval` / :class:`NotEligible` / :class:`ApprovalNotFound`
        if ``approver`` may not cast this vote; return the voter's identities."""
        if approver.tenant is not None and approver.tenant != request.tenant:
            raise ApprovalNotFound(f"no approval request {request.id!r}")
        ids = self.people((approver.id, approver.email))
        if ids & self.requester_people(request):
            if approve:
                raise SelfApproval(
                    f"{approver.id} requested this call ({request.tool}) and cannot approve it; "
                    "another eligible approver must decide"
                )
            return ids  # a requester may always withdraw (deny) its own call
        roles = approver.canonical_roles()
        if any(eligible_for(r, ids, roles) for r in request.requirements):
            return ids
        held = ", ".join(approver.roles) or "none"
        raise NotEligible(
            f"{approver.id} may not decide approval request {request.id}: it needs "
            f"{request.needs} (roles held: {held})"
        )

    def approver_args(self, request_id: str, approver: Approver | str) -> object:
        """The unredacted arguments of a pending request, for an approver who may approve
        it; ``None`` once the request ended (they were erased). Raises like
        :meth:`check_eligible` for anyone else, requester included."""
        req = self.get(request_id)
        if req.state.final:
            return None
        self.check_eligible(req, Approver.of(approver), approve=True)
        sealed = self.store.sealed_args(req.id)
        if sealed is None:
            return None if req.args is None else dict(req.args)  # nothing was redacted
        try:
            return open_args(self.audit.tenant_key(req.tenant), req.id, sealed)
        except Exception as exc:
            raise ApprovalUnavailable(f"cannot read the request's arguments: {exc}") from exc

    def decide(
        self,
        request_id: str,
        *,
        approver: Approver | str,
        approve: bool,
        via: str = "console",
        reason: str | None = None,
        operator: str | None = None,
    ) -> ApprovalRequest:
        """Cast one vote; returns the request after it.

        Approve: counts once per distinct approver (a repeated vote changes
        nothing); the request becomes APPROVED when ``quorum`` distinct approvers
        agree. Deny: the request becomes DENIED at once. Raises
        :class:`SelfApproval`, :class:`NotEligible`, :class:`ApprovalClosed` (not
        pending any more, e.g. expired), :class:`ApprovalNotFound`,
        :class:`ApprovalUnavailable`.
        """
        who = Approver.of(approver)
        current = self.get(request_id)
        if current.state.final:
            raise self._closed(current)
        me = self.check_eligible(current, who, approve=approve)
        expired_now = False

        def change(cur: ApprovalRequest) -> Change | None:
            nonlocal expired_now
            now = self.clock()
            if cur.state.final:
                raise self._closed(cur)
            if now >= cur.expires_at:
                expired_now = True
                return Change(
                    state=ApprovalState.EXPIRED,
                    decided_at=now,
                    final_reason="no decision before the approval deadline",
                )
            if approve and any(v.approve and v.people() & me for v in cur.votes):
                return None  # the same person twice (under any alias) is still one approval
            vote = Vote(
                approver=who.id,
                approve=approve,
                via=via,
                at=now,
                roles=who.roles,
                reason=reason,
                operator=operator,
                identities=tuple(sorted(me)),
            )
            if not approve:
                return Change(
                    state=ApprovalState.DENIED,
                    vote=vote,
                    decided_at=now,
                    final_reason=reason or f"denied by {who.id}",
                )
            if requirements_met(cur.requirements, (*cur.votes, vote)):
                return Change(state=ApprovalState.APPROVED, vote=vote, decided_at=now)
            return Change(vote=vote)

        self.audit  # noqa: B018  (as in _expire)
        after, applied = self.store.mutate(current.id, change)
        if applied is None:
            return after
        if expired_now:
            self._record_final(after, via=None)
            raise self._closed(after)
        assert applied.vote is not None
        v = applied.vote
        self._event(
            after,
            "approval_vote",
            reasons=(
                f"{v.approver} voted to {'approve' if v.approve else 'deny'} via {v.via}"
                + (f" (cast by operator {v.operator})" if v.operator else "")
                + (f": {v.reason}" if v.reason else ""),
            ),
            info=ApprovalInfo(id=after.id, approvers=(v.approver,), channel=v.via, decided_at=v.at),
        )
        if applied.state is not None:
            self._record_final(after, via=via)
        return after

    def _closed(self, req: ApprovalRequest) -> ApprovalClosed:
        detail = f": {req.final_reason}" if req.final_reason else ""
        return ApprovalClosed(
            f"approval request {req.id} is {req.state.value}{detail}; it can no longer be decided",
            req.state,
        )

    def cancel(
        self, request_id: str, *, by: str | None = None, reason: str | None = None
    ) -> ApprovalRequest:
        """PENDING → CANCELLED (e.g. the run was abandoned). A decided request is left
        as it is and returned unchanged."""
        text = reason or (f"cancelled by {by}" if by else "cancelled")
        return self._finish(request_id, ApprovalState.CANCELLED, text, via=by)

    def erase_user(self, user: str, *, tenant: str | None = None) -> int:
        """GDPR erasure: cancel ``user``'s pending requests (their calls never run), then
        remove the arguments and the user id the store kept for every request they made.
        ``user`` is matched as an identity: any spelling of it, and every alias the user
        table knows for it (DESIGN.md 2.8). Returns how many requests were erased."""
        from veto_core.audit.log import subject_matcher

        aliases = self.people((user,))
        matches = subject_matcher(user, aliases)
        for request in self.list(tenant=tenant, state=ApprovalState.PENDING, limit=None):
            if request.requester is not None and matches(request.requester):
                self.cancel(
                    request.id, by="erasure", reason="cancelled: the requester's data was erased"
                )
        erase = getattr(self.store, "erase_user", None)
        if erase is None:
            raise ApprovalUnavailable("this approval store cannot erase personal data")
        count: int = erase(user, tenant=tenant, aliases=aliases)
        return count

    def expire(self, request_id: str, *, reason: str) -> ApprovalRequest:
        """PENDING → EXPIRED now (the caller stopped waiting). A decided request is
        returned unchanged: an approval that won the race stays approved."""
        return self._finish(request_id, ApprovalState.EXPIRED, reason, via=None)

    def _expire(self, request_id: str, *, reason: str) -> ApprovalRequest:
        self.audit  # noqa: B018  (opened before the change it records: never a change without its log)

        def change(cur: ApprovalRequest) -> Change | None:
            now = self.clock()
            if cur.state is not ApprovalState.PENDING or now < cur.expires_at:
                return None
            return Change(state=ApprovalState.EXPIRED, decided_at=now, final_reason=reason)

        after, applied = self.store.mutate(request_id, change)
        if applied is not None:
            self._record_final(after, via=None)
        return after

    def _finish(
        self, request_id: str, state: ApprovalState, reason: str, *, via: str | None
    ) -> ApprovalRequest:
        self.audit  # noqa: B018  (as in _expire)

        def change(cur: ApprovalRequest) -> Change | None:
            if cur.state is not ApprovalState.PENDING:
                return None
            return Change(state=state, decided_at=self.clock(), final_reason=reason)

        after, applied = self.store.mutate(request_id, change)
        if applied is not None:
            self._record_final(after, via=via)
        return after

    # -- waiting and releasing ----------------------------------------------------------

    def wait(self, request_id: str, timeout: float | None = None) -> ApprovalState:
        """Block until the request is decided, expires, or ``timeout`` seconds pass;
        return its state then (PENDING only when ``timeout`` ran out first).

        ``timeout=None`` waits until the request's own deadline. PostgreSQL wakes
        waiters by ``LISTEN/NOTIFY`` (any process); SQLite polls every 50 ms. Never
        blocks past the timeout by more than one poll.
        """
        start = time.monotonic()
        req = self.get(request_id)
        if req.state.final:
            return req.state
        if timeout is None:
            # Until the request's own deadline, plus a little so that the last read
            # observes the expiry (the wall clock decides it, not the monotonic one).
            timeout = max(0.0, (req.expires_at - self.clock()).total_seconds()) + 0.05
        deadline = start + max(0.0, float(timeout))
        with self.store.watch() as sleep:
            while True:
                req = self.get(request_id)
                if req.state.final:
                    return req.state
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return req.state
                until_expiry = (req.expires_at - self.clock()).total_seconds()
                sleep(max(0.001, min(remaining, until_expiry + 0.005)))

    def consume(self, request_id: str) -> bool:
        """Release an APPROVED request's call: True exactly once (compare-and-set),
        False if it is not approved, already consumed, or the release cannot be
        recorded (fail closed)."""

        def change(cur: ApprovalRequest) -> Change | None:
            if cur.state is not ApprovalState.APPROVED or cur.consumed_at is not None:
                return None
            return Change(consumed_at=self.clock())

        try:
            self.audit  # noqa: B018  (as in _expire)
        except ApprovalUnavailable as exc:
            log.warning("approval %s not released: no audit log: %s", request_id, exc)
            return False
        try:
            after, applied = self.store.mutate(request_id, change)
        except ApprovalNotFound:
            return False
        if applied is None:
            return False
        try:
            self._event(
                after,
                "approval_consumed",
                reasons=("the approved call was released to run",),
                info=ApprovalInfo(
                    id=after.id, approvers=after.approved_by, decided_at=after.decided_at
                ),
            )
        except AuditUnavailable as exc:
            log.warning("approval %s consumed but not recorded; the call does not run: %s",
                        after.id, exc)  # fmt: skip
            return False
        return True

    # -- audit ------------------------------------------------------------------------

    def _record_final(self, req: ApprovalRequest, *, via: str | None) -> None:
        self._event(
            req,
            _FINAL_OUTCOME[req.state],
            reasons=(
                f"approval request {req.state.value}"
                + (f": {req.final_reason}" if req.final_reason else ""),
            ),
            info=ApprovalInfo(
                id=req.id, approvers=req.approved_by, channel=via, decided_at=req.decided_at
            ),
        )

    def _event(
        self,
        req: ApprovalRequest,
        outcome: str,
        *,
        reasons: tuple[str, ...],
        info: ApprovalInfo,
    ) -> None:
        self.audit.record_event(
            tenant=req.tenant,
            env=req.env,
            principal=req.principal,
            run_id=req.run_id,
            tool=req.tool,
            tool_call_id=req.tool_call_id,
            args=req.args,
            args_digest=req.args_digest,
            effect="require_approval",
            outcome=outcome,
            rule_ids=req.rule_ids,
            reasons=reasons,
            policy_name=req.policy_name,
            policy_revision=req.policy_revision,
            approval=info,
        )


def describe_error(exc: BaseException) -> str:
    """One line for an approval failure, for reasons shown to models and people."""
    if isinstance(exc, ApprovalError | AuditUnavailable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"

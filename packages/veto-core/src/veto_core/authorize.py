"""One tool call's way through Veto (DESIGN.md 3 and 9): what `Veto.authorize` runs.

Read top to bottom, one entry point per stage:

1. `refuse_arguments`: arguments that are not JSON values are denied (with a record);
2. decide: the caller's ``decide`` (pure, `veto_core.decision`), after `refresh_run`;
3. `spend_limits` (and `refund`): the stateful limits of an allowed call (2.5);
4. `record`: the durable audit record, committed before the call may run (4);
5. `request_approval`: a require_approval decision opens (or finds) its request,
   records the decision naming it, and
6. announces a new request to its channels (5).

Then, for the adapters that wait or resume: `wait_for_approval`, `check_approval`.

Nothing here imports the facade (`veto_core.engine`): the `Veto` deciding the call
passes a `CallContext` (its policy, env/tenant, clock, run state, stores, ``decide``).
Imports stay at module level on the allowed path: `authorize` imports nothing per call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Protocol

from .audit.errors import AuditUnavailable
from .model import Authorization, Decision, Effect, ToolCall, make_decision
from .policy.compiler import CompiledLimit, CompiledPolicy, normalize_tool_name
from .policy.conditions import EvalContext
from .policy.loader import canonical_json
from .policy.operators import EvalError, to_finite_float
from .runs.tracker import RunTracker

if TYPE_CHECKING:
    from .approvals import ApprovalService
    from .audit import AuditLog
    from .limits import LimitStore

__all__ = [
    "CallContext",
    "Stores",
    "authorize",
    "check_approval",
    "decide_counted",
    "record",
    "refresh_run",
    "refund",
    "refuse",
    "refuse_arguments",
    "request_approval",
    "shadow_outcome",
    "spend_limits",
    "tenant_of",
    "wait_for_approval",
]

_ALLOW, _DENY, _APPROVE = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL

#: The limit counters a call reserved: ``(key, token)`` pairs to give back.
Spent = list[tuple[str, str]]


class Stores(Protocol):
    """The deciding `Veto`'s stores, each opened on first use (raising its
    ``*Unavailable`` error when it cannot be)."""

    @property
    def audit(self) -> AuditLog: ...

    @property
    def approvals(self) -> ApprovalService: ...

    @property
    def limit_store(self) -> LimitStore: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class CallContext:
    """What the pipeline needs from the `Veto` deciding one call (built per call:
    ``policy`` is read once, so a reload mid-call cannot mix two revisions)."""

    policy: CompiledPolicy
    env: str | None
    tenant: str | None
    clock: Callable[[], datetime]
    runs: RunTracker
    stores: Stores
    #: the facade's fail-closed `decide` (bundle tenants, shadow marking)
    decide: Callable[[ToolCall], Decision]
    #: where the policy was loaded from (kept with each revision's text), if a file
    source: Path | None
    #: the revisions whose text this Veto stored already (shared, mutated here)
    stored_revisions: set[str]


def tenant_of(call: ToolCall, default: str | None) -> str | None:
    """The call's tenant: its own, else its principal's, else ``default`` (the Veto's)."""
    return call.tenant or call.principal.tenant or default


# --- the pipeline -------------------------------------------------------------------------


def authorize(ctx: CallContext, call: ToolCall) -> Authorization:
    """Decide and durably record; the record is committed before this returns
    (`Veto.authorize`: the call's tenant is already resolved to ``ctx``)."""
    refused = refuse_arguments(ctx, call)
    if refused is not None:
        return refused
    refresh_run(ctx, call)
    t0 = perf_counter_ns()
    decision = ctx.decide(call)
    # The evaluation time is the record's, not the decision's: equal decisions are
    # one shared value (DESIGN.md 2.2.4).
    latency_us = (perf_counter_ns() - t0) // 1000
    outcome = shadow_outcome(decision)
    spent: Spent = []
    if decision.effect is _ALLOW and decision.enforced and ctx.policy.limits:
        decision, spent = spend_limits(ctx, call, decision)
    if decision.effect is _APPROVE and outcome is None:
        return request_approval(ctx, call, decision, latency_us)
    return record(ctx, call, decision, latency_us=latency_us, outcome=outcome, spent=spent)


@functools.cache
def _args_checker() -> tuple[Callable[[Any], None], type[Exception]]:
    """The audit record's argument check, imported on first use: deciding alone
    (`veto check`) writes no record and need not load the record's encoders."""
    from .audit.record import ArgumentsError, check_args

    return check_args, ArgumentsError


def refuse_arguments(ctx: CallContext, call: ToolCall) -> Authorization | None:
    """Arguments must be JSON values or have a tagged form (DESIGN.md 7), so two
    different values never share an ``args_digest``: anything else is denied, with
    its record (whose arguments are left out: they have no canonical form)."""
    check_args, arguments_error = _args_checker()
    try:
        check_args(call.args)
        return None
    except arguments_error as exc:
        decision = refuse(ctx.policy, f"the call's arguments cannot be decided: {exc}")
    record_id = None
    with contextlib.suppress(Exception):  # a denial is still worth its record
        record_id = ctx.stores.audit.record_decision(
            replace(call, args={}), decision, env=ctx.env, tenant=ctx.tenant
        ).id
    return Authorization(decision=decision, record_id=record_id)


def refuse(p: CompiledPolicy, reason: str) -> Decision:
    """A deny matching no rule, for ``reason`` (fail closed before deciding)."""
    return make_decision(_DENY, (), (), (reason,), (), p.name, p.revision, None)


def refresh_run(ctx: CallContext, call: ToolCall) -> None:
    """Catch the cached run up with the store before a durable decision: another
    process may have extended it (one `head()` round trip; only for flow policies)."""
    if ctx.policy.uses_runs and isinstance(call.run_id, str) and call.run_id:
        ctx.runs.refresh(tenant_of(call, ctx.tenant), call.run_id)


def shadow_outcome(decision: Decision) -> str | None:
    """The audit outcome of a call let through although shadow mode would block it:
    ``shadow-denied`` / ``shadow-require_approval``; None when shadow changes nothing."""
    would = decision.effect if not decision.enforced else decision.shadow_effect
    if would is None or would is _ALLOW:
        return None
    if decision.enforced and decision.effect is not _ALLOW:
        return None  # enforced deny/approval: the call is blocked for real
    return f"shadow-{'denied' if would is _DENY else 'require_approval'}"


# --- stage 3: stateful limits (DESIGN.md 2.5) -----------------------------------------------


def spend_limits(
    ctx: CallContext, call: ToolCall, decision: Decision, store: LimitStore | None = None
) -> tuple[Decision, Spent]:
    """Reserve this allowed call's share of every limit on its tool, atomically per
    limit; the first limit it would exceed decides instead (reservations already made
    for the call are given back). Any error fails closed with the limit's effect.

    ``store`` defaults to the Veto's limit store (opened only when a limit applies:
    failing to open it fails the call closed like any counting error)."""
    from .limits import LimitStoreUnavailable

    p = ctx.policy
    limits = p.limits_for(normalize_tool_name(call.tool))
    if not limits:
        return decision, []
    spent: Spent = []
    ectx = EvalContext(
        call, call.env or ctx.env, tenant_of(call, ctx.tenant), p.effective_roles, ctx.clock
    )
    now = (call.now or ctx.clock()).timestamp()
    for limit in limits:
        try:
            parts = [limit.id, *(canonical_json(getter(ectx)) for _, getter in limit.per)]
            amount = 1.0 if limit.amount is None else to_finite_float(limit.amount[1](ectx))
            if amount < 0:
                raise EvalError(f"{limit.amount[0] if limit.amount else 'amount'} is negative")
            result = (store or ctx.stores.limit_store).try_spend(
                "|".join(parts), amount, limit.maximum, limit.window_s, now=now
            )
        except (EvalError, LimitStoreUnavailable, ValueError) as exc:
            refund(ctx, spent, store)
            why = exc.messages[0] if isinstance(exc, EvalError) else str(exc)
            return _limit_decision(
                decision,
                limit,
                f"{limit.reason} [{limit.id}] (cannot be counted: {why}; failing closed)",
            ), []
        if not result.ok:
            refund(ctx, spent, store)
            text = (
                f"{limit.reason} [{limit.id}]: {result.total:g} used of {limit.maximum:g} per {limit.window}, "
                f"this call adds {amount:g}"
            )
            return _limit_decision(decision, limit, text), []
        assert result.token is not None
        spent.append(("|".join(parts), result.token))
    return decision, spent


def refund(ctx: CallContext, spent: Spent, store: LimitStore | None = None) -> None:
    """Give back what a call reserved (it will not run)."""
    for key, token in spent:
        # The call is blocked either way; a spend left unrefunded only errs on the safe side.
        with contextlib.suppress(Exception):
            (store or ctx.stores.limit_store).refund(key, token)


def decide_counted(ctx: CallContext, call: ToolCall, counters: LimitStore) -> Decision:
    """Decide, then spend the stateful limits in ``counters`` as `authorize` would,
    recording nothing (`veto replay`)."""
    decision = ctx.decide(call)
    if decision.effect is _ALLOW and decision.enforced and ctx.policy.limits:
        decision, _ = spend_limits(ctx, call, decision, counters)
    return decision


def _limit_decision(decision: Decision, limit: CompiledLimit, reason: str) -> Decision:
    return make_decision(
        limit.effect, (*decision.rule_ids, limit.id), (limit.id,), (reason,), decision.errors,
        decision.policy_name, decision.policy_revision, limit.approval,
    )  # fmt: skip


# --- stage 4: the durable record (DESIGN.md 4) ------------------------------------------------


def record(
    ctx: CallContext,
    call: ToolCall,
    decision: Decision,
    *,
    latency_us: int,
    outcome: str | None,
    spent: Spent,
) -> Authorization:
    """Record an allowed or denied call. If the record cannot be written the call is
    denied with reason ``audit unavailable`` (fail closed; its limits are refunded)
    unless the policy says ``audit: {mode: best_effort}``, which warns loudly instead."""
    p = ctx.policy
    try:
        audit = ctx.stores.audit
        store_revision(ctx, audit)
        entry = audit.record_decision(
            call,
            decision,
            env=ctx.env,
            tenant=ctx.tenant,
            redact=p.redact,
            latency_us=latency_us,
            outcome=outcome,
        )
    except AuditUnavailable as exc:
        if p.audit_mode == "best_effort":
            from .audit import warn_best_effort  # the rare path only

            warn_best_effort(exc)
            return Authorization(decision=decision, record_id=None)
        refund(ctx, spent)  # the call will not run: give its budget back
        return Authorization(decision=_audit_unavailable(decision, exc), record_id=None)
    return Authorization(decision=decision, record_id=entry.id)


def store_revision(ctx: CallContext, audit: AuditLog) -> None:
    """Keep the text of every policy revision the first time it decides (evidence, replay)."""
    p = ctx.policy
    if p.revision not in ctx.stored_revisions:
        source = str(ctx.source) if ctx.source else p.loaded.root.file
        audit.store_policy_revision(p.revision, p.name, p.loaded.canonical, source)
        ctx.stored_revisions.add(p.revision)


def _audit_unavailable(decision: Decision, exc: Exception) -> Decision:
    return make_decision(
        Effect.DENY,
        decision.rule_ids,
        (),
        (f"audit unavailable: {exc} (the call is denied because it cannot be recorded)",),
        decision.errors,
        decision.policy_name,
        decision.policy_revision,
        None,
    )


# --- stages 5 and 6: the approval request and its channels (DESIGN.md 5) -------------------


def request_approval(
    ctx: CallContext, call: ToolCall, decision: Decision, latency_us: int
) -> Authorization:
    """A require_approval decision: create (or find) the request bound to this call,
    record the decision naming it, announce a new request to its channels.

    Approvals need both stores: if either fails the call is denied (even in
    ``audit: {mode: best_effort}``: an approval nobody can trace releases nothing).

    The binding is ``(tenant, run_id, tool_call_id, tool, args_digest)``, one
    request per binding ever: adapters pass the framework's tool-call id (or
    generate one per call). Identical calls without ids share one request, so
    once it released a call the next identical one is refused ("already used").
    """
    from .approvals.service import describe_error
    from .audit import ApprovalInfo

    redact = ctx.policy.redact
    try:
        service = ctx.stores.approvals
        request, created = service.open_request(
            call, decision, tenant=ctx.tenant, env=ctx.env, redact=redact
        )
    except Exception as exc:
        error = describe_error(exc)
        denied = _approval_unavailable(decision, error)
        record_id = None
        with contextlib.suppress(Exception):  # a denial is still worth its record
            record_id = ctx.stores.audit.record_decision(
                call, denied, env=ctx.env, tenant=ctx.tenant, redact=redact,
                latency_us=latency_us,
            ).id  # fmt: skip
        return Authorization(decision=denied, record_id=record_id, approval_error=error)
    try:
        audit = ctx.stores.audit
        store_revision(ctx, audit)
        entry = audit.record_decision(
            call, decision, env=ctx.env, tenant=ctx.tenant, redact=redact,
            latency_us=latency_us, approval=ApprovalInfo(id=request.id),
        )  # fmt: skip
        if created:  # stage 6: the channels hear of a new request only once it is recorded
            service.announce(request, call, redact=redact)
    except Exception as exc:
        error = describe_error(exc)
        return Authorization(
            decision=_audit_unavailable(decision, exc), record_id=None, approval_error=error
        )
    return Authorization(decision=decision, record_id=entry.id, approval=request)


def _approval_unavailable(decision: Decision, error: str) -> Decision:
    return make_decision(
        Effect.DENY,
        decision.rule_ids,
        (),
        (
            *decision.reasons,
            f"approval unavailable: {error} (the call is denied because it cannot be approved)",
        ),
        decision.errors,
        decision.policy_name,
        decision.policy_revision,
        None,
    )


# --- after the pipeline: waiting for, or resuming on, a decided request -----------------------


def wait_for_approval(
    stores: Stores, auth: Authorization, timeout: float | None = None
) -> Authorization:
    """Block until ``auth``'s request is decided, expires, or ``timeout`` seconds pass
    (then it is expired: nobody waits for it any more); an APPROVED request is
    consumed now (``released``). Never raises: a store failure sets ``approval_error``."""
    request = auth.approval
    if auth.decision.effect is not _APPROVE or request is None or auth.released:
        return auth  # every allowed or denied call: no imports on this path
    from .approvals import ApprovalState
    from .approvals.service import describe_error

    try:
        service = stores.approvals
        state = service.wait(request.id, timeout)
        if state is ApprovalState.PENDING:
            waited = f"{timeout:g}s" if timeout is not None else "the deadline"
            final = service.expire(
                request.id, reason=f"no decision within {waited}; the caller stopped waiting"
            )
        else:
            final = service.get(request.id)
        released = final.state is ApprovalState.APPROVED and service.consume(request.id)
        if released:
            final = service.get(request.id)
        return replace(auth, approval=final, released=released)
    except Exception as exc:
        return replace(auth, released=False, approval_error=describe_error(exc))


def check_approval(ctx: CallContext, call: ToolCall) -> bool:
    """True only if the request bound to exactly this call is APPROVED and
    unconsumed, and it is consumed now. The call is decided again first: a policy
    that now denies it wins over the approval. Any failure is False (fail closed)."""
    from .approvals import ApprovalState

    try:
        refresh_run(ctx, call)
        if ctx.decide(call).effect is _DENY:
            return False
        service = ctx.stores.approvals
        request = service.find(call, tenant=ctx.tenant)
        if request is None or request.state is not ApprovalState.APPROVED:
            return False
        return request.consumed_at is None and service.consume(request.id)
    except Exception:
        return False

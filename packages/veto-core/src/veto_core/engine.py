"""`Veto`: the compiled policy plus defaults; `decide()` is the hot path.

`decide` is pure (no I/O, no shared mutable state beyond memo caches of pure
functions) and thread-safe; `reload()` swaps the compiled policy with a single
attribute assignment, so a decision sees either the old or the new policy whole.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from .audit.errors import AuditUnavailable
from .decision import decide
from .model import Authorization, Decision, Effect, Principal, ToolCall, make_decision
from .policy.compiler import (
    CompiledLimit,
    CompiledPolicy,
    compile_policy,
    normalize_tool_name,
)
from .policy.conditions import EvalContext
from .policy.errors import PolicyError
from .policy.loader import (
    LoadedPolicy,
    canonical_json,
    load_bundle,
    load_policy_file,
    load_policy_text,
)
from .policy.operators import EvalError, Operator, to_finite_float
from .runs.state import TaintMatch
from .runs.tracker import USER, ObservationError, RunTracker
from .telemetry import trace_approval_wait, trace_authorize

if TYPE_CHECKING:
    from .approvals import ApprovalRequest, ApprovalService
    from .audit import AuditLog
    from .limits import LimitStore
    from .policy.watch import PolicyWatcher
    from .runs.store import RunStore

__all__ = ["Explanation", "RuleTrace", "TaintTrace", "Veto"]

_ALLOW, _DENY, _APPROVE = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL


@functools.cache
def _args_checker() -> tuple[Callable[[Any], None], type[Exception]]:
    """The audit record's argument check, imported on first use: deciding alone
    (`veto check`) writes no record and need not load the record's encoders."""
    from .audit.record import ArgumentsError, check_args

    return check_args, ArgumentsError


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleTrace:
    """How one rule fared for one call (`veto explain`)."""

    rule_id: str
    effect: Effect
    file: str
    line: int | None
    tool_matched: bool
    scope: str | None  # None when every scope matched, else why not
    condition: str  # "none" | "true" | "false" | "error" | "skipped"
    leaves: tuple[tuple[str, str], ...]  # (leaf description, outcome)
    errors: tuple[str, ...]
    result: Effect | None  # the effect this rule contributed, or None


@dataclass(frozen=True, kw_only=True, slots=True)
class TaintTrace:
    """Why a `tainted_by` leaf of a rule saw a tainted value (`veto explain`, 2.7):
    every observed output containing it."""

    rule_id: str
    field: str
    labels: tuple[str, ...]
    matches: tuple[TaintMatch, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Explanation:
    decision: Decision
    tool: str
    env: str | None
    tenant: str | None
    roles: tuple[str, ...]
    rules: tuple[RuleTrace, ...]
    #: the call's run (2.7): its labels (None without a run or when it cannot be read)
    run_labels: tuple[str, ...] | None = None
    run_error: str | None = None
    taint: tuple[TaintTrace, ...] = ()


class Veto:
    """Decides tool calls against one policy (see DESIGN.md 9 for the public API)."""

    def __init__(
        self,
        policy: LoadedPolicy,
        *,
        env: str | None = None,
        tenant: str | None = None,
        clock: Callable[[], datetime] | None = None,
        operators: Mapping[str, Operator] | None = None,
        source: Path | None = None,
        db: str | None = None,
        bundle: Path | None = None,
        parent: Veto | None = None,
        watch: bool = False,
        watch_interval: float = 0.5,
        limits_url: str | None = None,
        run_store: RunStore | None = None,
        runs_url: str | None = None,
    ) -> None:
        self.env = env
        self._bundle = bundle  # a bundle directory: calls of other tenants use their overlay
        self._parent = parent  # for_tenant() children share the parent's stores
        self._tenants: dict[str | None, Veto] = {}
        self._watcher: PolicyWatcher | None = None
        self.db = db  # audit/approval store URL; None: $VETO_DB or ~/.veto/veto.db
        self._audit: AuditLog | None = None
        self._audit_lock = threading.Lock()
        self._approvals: ApprovalService | None = None
        self._limit_store: LimitStore | None = None
        self.limits_url = limits_url
        self._approvals_lock = threading.Lock()
        self._stored_revisions: set[str] = set()
        self.tenant = tenant
        self.clock: Callable[[], datetime] = clock or _utcnow
        self._operators = dict(operators) if operators else None
        self._source = source
        self._reload_lock = threading.Lock()
        self._policy: CompiledPolicy = compile_policy(policy, operators=self._operators)
        #: Run state and observation (DESIGN.md 2.7); tenant children share the root's.
        self.runs_url = runs_url
        self._runs: RunTracker = (
            parent._runs
            if parent is not None
            else RunTracker(store=run_store, url=runs_url, db=db, clock=self.clock)
        )
        if watch:
            self.watch(interval=watch_interval)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        env: str | None = None,
        tenant: str | None = None,
        clock: Callable[[], datetime] | None = None,
        operators: Mapping[str, Operator] | None = None,
        db: str | None = None,
        watch: bool = False,
        limits_url: str | None = None,
        run_store: RunStore | None = None,
        runs_url: str | None = None,
    ) -> Veto:
        """Load and compile a policy file or bundle directory (``base.yaml`` +
        ``tenants/<tenant>.yaml``); raises ``PolicyError`` naming file:line:col.

        ``db`` is where `authorize()` records decisions (opened on first use);
        ``watch=True`` reloads on file change (see `watch`).
        """
        path = Path(path)
        bundle = path if path.is_dir() else None
        loaded = load_bundle(path, tenant) if bundle else load_policy_file(path)
        return cls(
            loaded, db=db, env=env, tenant=tenant, clock=clock, operators=operators,
            source=path, bundle=bundle, watch=watch, limits_url=limits_url, run_store=run_store,
            runs_url=runs_url,
        )  # fmt: skip

    @classmethod
    def from_yaml(
        cls,
        text: str,
        *,
        env: str | None = None,
        tenant: str | None = None,
        clock: Callable[[], datetime] | None = None,
        operators: Mapping[str, Operator] | None = None,
        file: str = "<policy>",
        db: str | None = None,
        limits_url: str | None = None,
        run_store: RunStore | None = None,
        runs_url: str | None = None,
    ) -> Veto:
        return cls(
            load_policy_text(text, file=file),
            db=db,
            limits_url=limits_url,
            run_store=run_store,
            runs_url=runs_url,
            env=env,
            tenant=tenant,
            clock=clock,
            operators=operators,
        )

    def reload(self) -> str:
        """Re-read the policy file and swap it in atomically; returns the new revision.

        On a broken file this raises ``PolicyError`` and keeps the current policy.
        """
        if self._source is None:
            raise RuntimeError("this Veto was not loaded from a file; nothing to reload")
        with self._reload_lock:
            loaded = (
                load_bundle(self._source, self.tenant)
                if self._bundle is not None
                else load_policy_file(self._source)
            )
            compiled = compile_policy(loaded, operators=self._operators)
            self._policy = compiled
            if self._tenants:
                for child in list(self._tenants.values()):
                    child.reload()
            return compiled.revision

    def watch(self, *, interval: float = 0.5) -> None:
        """Reload whenever a policy file (or one it extends, or an overlay) changes.

        A broken edit keeps the last good revision: the error is logged and, when an
        audit store is open, recorded. No decision ever sees a half-loaded policy.
        """
        if self._watcher is None:
            from .policy.watch import PolicyWatcher  # on use: `veto check` needs no watcher

            self._watcher = PolicyWatcher(self, interval=interval)
            self._watcher.start()

    def files(self) -> tuple[Path, ...]:
        """Every file the current policy was built from (with `extends` and overlay)."""
        files = self._policy.loaded.files
        if self._bundle is not None and self.tenant is not None:
            # An overlay that does not exist yet may appear: watch for it too.
            files = (*files, (self._bundle / "tenants" / f"{self.tenant}.yaml").resolve())
        for child in list(self._tenants.values()):
            files = (*files, *child.files())  # for_tenant() children reload with their parent
        return tuple(dict.fromkeys(files))

    def _tenant_of(self, call: ToolCall) -> str | None:
        """The call's tenant: its own, else its principal's, else this instance's."""
        return call.tenant or call.principal.tenant or self.tenant

    def _tenant_veto(self, call: ToolCall) -> Veto | None:
        """For a bundle: the Veto of the call's tenant when it is not this one's
        (raises ``PolicyError`` when that tenant's overlay does not load)."""
        tenant = self._tenant_of(call)
        return self.for_tenant(tenant) if tenant is not None and tenant != self.tenant else None

    def for_tenant(self, tenant: str) -> Veto:
        """The Veto deciding for ``tenant``: its bundle overlay applied, compiled once,
        sharing this instance's audit and approval stores."""
        root = self._parent or self
        if tenant == root.tenant:
            return root
        child = root._tenants.get(tenant)
        if child is None:
            with root._reload_lock:
                child = root._tenants.get(tenant)
                if child is None:
                    loaded = (
                        load_bundle(root._bundle, tenant)
                        if root._bundle is not None
                        else root._policy.loaded
                    )
                    child = Veto(
                        loaded, env=root.env, tenant=tenant, clock=root.clock, operators=root._operators,
                        source=root._source, db=root.db, bundle=root._bundle, parent=root, limits_url=root.limits_url,
                    )  # fmt: skip
                    root._tenants[tenant] = child
        return child

    # --- introspection ------------------------------------------------------------------

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy

    @property
    def policy_name(self) -> str:
        return self._policy.name

    @property
    def policy_revision(self) -> str:
        return self._policy.revision

    @property
    def policy_text(self) -> str:
        """Canonical JSON of the policy (after `extends`): what the revision hashes."""
        return self._policy.loaded.canonical

    @property
    def redact(self) -> tuple[str, ...]:
        return self._policy.redact

    @property
    def audit_mode(self) -> str:
        return self._policy.audit_mode

    @property
    def retention_days(self) -> int | None:
        return self._policy.retention_days

    # --- deciding -----------------------------------------------------------------------

    def decide(self, call: ToolCall) -> Decision:
        """Decide one call. Never raises for a call's content: errors fail closed."""
        p = self._policy
        try:
            if self._bundle is not None and (other := self._tenant_veto(call)) is not None:
                return other.decide(call)
            decision = decide(
                p, call, call.env or self.env, call.tenant or call.principal.tenant or self.tenant,
                self.clock, self._runs.lookup,
            )  # fmt: skip
            if p.shadow_view is not None or not p.enforced:
                decision = self._shadowed(p, call, decision)
            return decision
        except PolicyError as exc:
            return make_decision(
                _DENY, (), (), (f"no valid policy for this call's tenant (fail closed): {exc}",),
                (), p.name, p.revision, None,
            )  # fmt: skip
        except Exception as exc:  # a bug or a broken plugin must not let a call through
            return make_decision(
                _DENY, (), (), (f"internal error while deciding (fail closed): {type(exc).__name__}: {exc}",),
                (f"{type(exc).__name__}: {exc}",), p.name, p.revision, None,
            )  # fmt: skip

    def _decide(self, p: CompiledPolicy, call: ToolCall) -> Decision:
        principal = call.principal
        return decide(
            p,
            call,
            call.env or self.env,
            call.tenant or principal.tenant or self.tenant,
            self.clock,
            self._runs.lookup,
        )

    # --- deciding with a durable record (what adapters call) ------------------------------

    @property
    def audit(self) -> AuditLog:
        """The audit trail at ``db`` (opened on first use; raises ``AuditUnavailable``)."""
        if self._parent is not None:
            return self._parent.audit
        if self._audit is None:
            with self._audit_lock:
                if self._audit is None:
                    from .audit import open_audit

                    self._audit = open_audit(self.db)
        return self._audit

    def close(self) -> None:
        if self._parent is None:
            self._runs.close()
        if self._limit_store is not None:
            self._limit_store.close()
            self._limit_store = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._approvals is not None:
            self._approvals.close()
            self._approvals = None
        if self._audit is not None:
            self._audit.close()
            self._audit = None

    @trace_authorize  # OpenTelemetry span + metrics when configured (telemetry.py)
    def authorize(self, call: ToolCall) -> Authorization:
        """Decide and durably record; the record is committed before this returns.

        If the record cannot be written the call is denied with reason
        ``audit unavailable`` (fail closed) unless the policy says
        ``audit: {mode: best_effort}``, which warns loudly instead.
        """
        if self._bundle is not None:
            try:
                other = self._tenant_veto(call)
            except PolicyError as exc:
                reason = f"no valid policy for tenant {self._tenant_of(call)!r}: {exc}"
                return Authorization(decision=self._refuse(reason), record_id=None)
            if other is not None:
                return other.authorize(call)
        refused = self._refuse_arguments(call)
        if refused is not None:
            return refused
        self._refresh_run(call)
        t0 = perf_counter_ns()
        decision = self.decide(call)
        # The evaluation time is the record's, not the decision's: equal decisions are
        # one shared value (DESIGN.md 2.2.4).
        latency_us = (perf_counter_ns() - t0) // 1000
        outcome = _shadow_outcome(decision)
        spent: list[tuple[str, str]] = []
        p = self._policy
        if decision.effect is _ALLOW and decision.enforced and p.limits:
            decision, spent = self._spend_limits(p, call, decision)
        if decision.effect is _APPROVE and outcome is None:
            return self._authorize_approval(call, decision, latency_us)
        try:
            audit = self.audit
            self._store_revision(audit)
            record = audit.record_decision(
                call,
                decision,
                env=self.env,
                tenant=self.tenant,
                redact=self._policy.redact,
                latency_us=latency_us,
                outcome=outcome,
            )
        except AuditUnavailable as exc:
            if self._policy.audit_mode == "best_effort":
                from .audit import warn_best_effort  # the rare path only

                warn_best_effort(exc)
                return Authorization(decision=decision, record_id=None)
            self._refund(spent)  # the call will not run: give its budget back
            return Authorization(decision=_audit_unavailable(decision, exc), record_id=None)
        return Authorization(decision=decision, record_id=record.id)

    # --- stateful limits (DESIGN.md 2.5) ---------------------------------------------------

    @property
    def limit_store(self) -> LimitStore:
        """Counters for `limits:` (``limits_url``, ``$VETO_LIMITS_URL``, else the audit db)."""
        if self._parent is not None:
            return self._parent.limit_store
        if self._limit_store is None:
            with self._audit_lock:
                if self._limit_store is None:
                    from .limits import open_limit_store

                    self._limit_store = open_limit_store(self.limits_url, default=self.db)
        return self._limit_store

    def decide_counted(self, call: ToolCall, counters: LimitStore) -> Decision:
        """`decide`, then the stateful limits spent in ``counters`` as `authorize` would
        spend them, recording nothing: how `veto replay` re-decides a recorded call."""
        if self._bundle is not None:
            try:
                other = self._tenant_veto(call)
            except PolicyError:
                return self.decide(call)  # decides it as a deny, with the reason
            if other is not None:
                return other.decide_counted(call, counters)
        decision = self.decide(call)
        p = self._policy
        if decision.effect is _ALLOW and decision.enforced and p.limits:
            decision, _ = self._spend_limits(p, call, decision, counters)
        return decision

    def _spend_limits(
        self, p: CompiledPolicy, call: ToolCall, decision: Decision, store: LimitStore | None = None
    ) -> tuple[Decision, list[tuple[str, str]]]:
        """Reserve this allowed call's share of every limit on its tool, atomically per
        limit; the first limit it would exceed decides instead (reservations already made
        for the call are given back). Any error fails closed with the limit's effect."""
        from .limits import LimitStoreUnavailable

        limits = p.limits_for(normalize_tool_name(call.tool))
        if not limits:
            return decision, []
        spent: list[tuple[str, str]] = []
        ctx = EvalContext(
            call, call.env or self.env, self._tenant_of(call), p.effective_roles, self.clock
        )
        now = (call.now or self.clock()).timestamp()
        for limit in limits:
            try:
                parts = [limit.id, *(canonical_json(getter(ctx)) for _, getter in limit.per)]
                amount = 1.0 if limit.amount is None else to_finite_float(limit.amount[1](ctx))
                if amount < 0:
                    raise EvalError(f"{limit.amount[0] if limit.amount else 'amount'} is negative")
                result = (store or self.limit_store).try_spend(
                    "|".join(parts), amount, limit.maximum, limit.window_s, now=now
                )
            except (EvalError, LimitStoreUnavailable, ValueError) as exc:
                self._refund(spent, store)
                why = exc.messages[0] if isinstance(exc, EvalError) else str(exc)
                return self._limit_decision(
                    decision,
                    limit,
                    f"{limit.reason} [{limit.id}] (cannot be counted: {why}; failing closed)",
                ), []
            if not result.ok:
                self._refund(spent, store)
                text = (
                    f"{limit.reason} [{limit.id}]: {result.total:g} used of {limit.maximum:g} per {limit.window}, "
                    f"this call adds {amount:g}"
                )
                return self._limit_decision(decision, limit, text), []
            assert result.token is not None
            spent.append(("|".join(parts), result.token))
        return decision, spent

    def _limit_decision(self, decision: Decision, limit: CompiledLimit, reason: str) -> Decision:
        return make_decision(
            limit.effect, (*decision.rule_ids, limit.id), (limit.id,), (reason,), decision.errors,
            decision.policy_name, decision.policy_revision, limit.approval,
        )  # fmt: skip

    def _refund(self, spent: list[tuple[str, str]], store: LimitStore | None = None) -> None:
        for key, token in spent:
            # The call is blocked either way; a spend left unrefunded only errs on the safe side.
            with contextlib.suppress(Exception):
                (store or self.limit_store).refund(key, token)

    # --- runs and data flow (DESIGN.md 2.7) ---------------------------------------------------

    def _refresh_run(self, call: ToolCall) -> None:
        """Catch the cached run up with the store before a durable decision: another
        process may have extended it (one `head()` round trip; only for flow policies)."""
        if self._policy.uses_runs and isinstance(call.run_id, str) and call.run_id:
            self._runs.refresh(self._tenant_of(call), call.run_id)

    @property
    def run_store(self) -> RunStore:
        """The run store (opened on first use; raises ``RunStoreUnavailable``)."""
        return self._runs.store

    def observe(self, call: ToolCall, output: Any, *, effect: Effect = _ALLOW) -> None:
        """Record the output of ``call``, which ran (allowed, or approved: ``effect``
        ``require_approval``), in its run: the call joins ``run.calls`` and, for every
        source whose ``tools`` and ``if`` match, the output's labels and text are kept.

        Raises ``ObservationError`` when the call has no ``run_id`` or the output
        cannot be recorded: the adapter must then withhold the output from the model.

        A policy with no ``sources`` and no rule reading ``run.*`` records nothing (no
        decision could read it, and each record is a store write): runs that started
        before a flow policy was deployed have no history from before it.
        """
        try:
            other = self._tenant_veto(call) if self._bundle is not None else None
        except PolicyError as exc:
            raise ObservationError(
                f"no valid policy for tenant {self._tenant_of(call)!r}: {exc}"
            ) from exc
        if other is not None:
            other.observe(call, output, effect=effect)
            return
        policy = self._policy
        if not (policy.uses_runs or policy.sources):
            return
        self._runs.observe(
            self._policy, call, output, tenant=self._tenant_of(call),
            env=call.env or self.env, effect=effect,
        )  # fmt: skip

    async def aobserve(self, call: ToolCall, output: Any, *, effect: Effect = _ALLOW) -> None:
        """`observe` for async code (the store write runs in a worker thread)."""
        policy = self._policy
        if self._bundle is None and not (policy.uses_runs or policy.sources):
            return  # nothing to record: no thread hop either
        import asyncio

        await asyncio.to_thread(self.observe, call, output, effect=effect)

    def observe_user(
        self,
        text: Any,
        *,
        run_id: str,
        principal: Principal | None = None,
        env: str | None = None,
        tenant: str | None = None,
    ) -> None:
        """Record the person's own input (a user message, a crew's task inputs, an
        Agents SDK run input) in the run as the pseudo-tool ``"@user"`` (2.7)."""
        call = ToolCall(
            tool=USER, args={}, principal=principal or Principal(), env=env, tenant=tenant,
            run_id=run_id,
        )  # fmt: skip
        self.observe(call, text)

    # --- approvals (the adapters' contract: DESIGN.md 5 and 9) ------------------------------

    @property
    def approvals(self) -> ApprovalService:
        """The approval service on the same ``db`` as the audit trail (opened on first
        use; raises ``ApprovalUnavailable`` / ``AuditUnavailable``).

        ``decide(id, approver=..., approve=..., via=..., reason=...)``,
        ``wait(id, timeout) -> ApprovalState``, ``consume(id) -> bool``,
        ``get(id)``, ``list(tenant=, state=)``, ``find(call)``, ``cancel(id)``.
        """
        if self._parent is not None:
            return self._parent.approvals
        if self._approvals is None:
            with self._approvals_lock:
                if self._approvals is None:
                    from .approvals import ApprovalService, open_approval_store

                    audit = self.audit
                    self._approvals = ApprovalService(
                        open_approval_store(self.db), audit, clock=self.clock, db=self.db,
                        tenant=self.tenant, env=self.env,
                    )  # fmt: skip
        return self._approvals

    def _authorize_approval(
        self, call: ToolCall, decision: Decision, latency_us: int
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

        redact = self._policy.redact
        try:
            service = self.approvals
            request, created = service.open_request(
                call, decision, tenant=self.tenant, env=self.env, redact=redact
            )
        except Exception as exc:
            error = describe_error(exc)
            denied = _approval_unavailable(decision, error)
            record_id = None
            with contextlib.suppress(Exception):  # a denial is still worth its record
                record_id = self.audit.record_decision(
                    call, denied, env=self.env, tenant=self.tenant, redact=redact,
                    latency_us=latency_us,
                ).id  # fmt: skip
            return Authorization(decision=denied, record_id=record_id, approval_error=error)
        try:
            audit = self.audit
            self._store_revision(audit)
            record = audit.record_decision(
                call, decision, env=self.env, tenant=self.tenant, redact=redact,
                latency_us=latency_us, approval=ApprovalInfo(id=request.id),
            )  # fmt: skip
            if created:
                service.announce(request, call, redact=redact)
        except Exception as exc:
            error = describe_error(exc)
            return Authorization(
                decision=_audit_unavailable(decision, exc), record_id=None, approval_error=error
            )
        return Authorization(decision=decision, record_id=record.id, approval=request)

    @trace_authorize  # OpenTelemetry span + metrics when configured (telemetry.py)
    def authorize_and_wait(self, call: ToolCall, timeout: float | None = None) -> Authorization:
        """`authorize`, then, when approval is required, block until the request is
        decided, expires, or ``timeout`` seconds pass (default: the rule's timeout).

        For blocking frameworks (CrewAI, sync tools, LangChain without a
        checkpointer). ``run_tool`` is True only for an allowed call, or when the
        request is APPROVED and this call consumed it now (``released``): a second
        release of the same request is impossible. When ``timeout`` runs out first
        the request is expired (nobody waits for it any more). Never raises for a
        store failure: the call is refused with ``approval_error`` set.
        """
        return self.wait_for_approval(self.authorize(call), timeout=timeout)

    @trace_approval_wait
    def wait_for_approval(self, auth: Authorization, timeout: float | None = None) -> Authorization:
        """The waiting half of `authorize_and_wait`, for an ``Authorization`` already
        obtained from `authorize` (e.g. after telling the user the call waits)."""
        request = auth.approval
        if auth.decision.effect is not _APPROVE or request is None or auth.released:
            return auth  # every allowed or denied call: no imports on this path
        from .approvals import ApprovalState
        from .approvals.service import describe_error

        try:
            service = self.approvals
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

    def check_approval(self, call: ToolCall) -> bool:
        """Non-blocking: True only if the request bound to exactly this call (tenant,
        run_id, tool_call_id, tool, args) is APPROVED and unconsumed, and it is
        consumed now; so True at most once per request.

        For frameworks that suspend and resume (LangGraph ``interrupt()``, OpenAI
        Agents ``RunState``): call `authorize` when the call first appears (it
        creates the request), and this when the run resumes. The call is decided
        again first: a policy that now denies it wins over the approval. Any
        failure is False (fail closed).
        """
        from .approvals import ApprovalState

        try:
            self._refresh_run(call)
            if self.decide(call).effect is _DENY:
                return False
            service = self.approvals
            request = service.find(call, tenant=self.tenant)
            if request is None or request.state is not ApprovalState.APPROVED:
                return False
            return request.consumed_at is None and service.consume(request.id)
        except Exception:
            return False

    def find_approval(self, call: ToolCall) -> ApprovalRequest | None:
        """The request bound to exactly this call, if any (expiry applied; nothing is
        consumed). Raises ``ApprovalUnavailable`` on a store failure."""
        return self.approvals.find(call, tenant=self.tenant)

    def _refuse_arguments(self, call: ToolCall) -> Authorization | None:
        """Arguments must be JSON values or have a tagged form (DESIGN.md 7), so two
        different values never share an ``args_digest``: anything else is denied, with
        its record (whose arguments are left out: they have no canonical form)."""
        check_args, arguments_error = _args_checker()
        try:
            check_args(call.args)
            return None
        except arguments_error as exc:
            decision = self._refuse(f"the call's arguments cannot be decided: {exc}")
        record_id = None
        with contextlib.suppress(Exception):  # a denial is still worth its record
            record_id = self.audit.record_decision(
                replace(call, args={}), decision, env=self.env, tenant=self.tenant
            ).id
        return Authorization(decision=decision, record_id=record_id)

    def _refuse(self, reason: str) -> Decision:
        p = self._policy
        return make_decision(_DENY, (), (), (reason,), (), p.name, p.revision, None)

    def _store_revision(self, audit: AuditLog) -> None:
        """Keep the text of every policy revision the first time it decides (evidence, replay)."""
        p = self._policy
        if p.revision not in self._stored_revisions:
            source = str(self._source) if self._source else p.loaded.root.file
            audit.store_policy_revision(p.revision, p.name, p.loaded.canonical, source)
            self._stored_revisions.add(p.revision)

    def _shadowed(self, p: CompiledPolicy, call: ToolCall, d: Decision) -> Decision:
        """Mark a decision of a shadow policy, or say what shadow rules would change."""
        shadow_effect: Effect | None = None
        shadow_ids: tuple[str, ...] = ()
        if p.shadow_view is not None:
            full = self._decide(p.shadow_view, call)
            if full.effect is not d.effect:
                shadow_effect, shadow_ids = full.effect, full.deciding_rule_ids
        return make_decision(
            d.effect, d.rule_ids, d.deciding_rule_ids, d.reasons, d.errors, d.policy_name, d.policy_revision,
            d.approval, p.enforced, shadow_effect, shadow_ids,
        )  # fmt: skip

    def explain(self, call: ToolCall) -> Explanation:
        """Every rule of the policy, whether it applied to this call and why."""
        if self._bundle is not None and (other := self._tenant_veto(call)) is not None:
            return other.explain(call)
        p = self._policy
        decision = self.decide(call)
        tool = normalize_tool_name(call.tool) if isinstance(call.tool, str) else str(call.tool)
        candidates = {r.id for r in p.candidates(tool)}
        env = call.env or self.env
        tenant = self._tenant_of(call)
        roles = p.effective_roles(call.principal.roles)
        ctx = EvalContext(call, env, tenant, p.effective_roles, self.clock, self._runs.lookup)
        traces: list[RuleTrace] = []
        taint: list[TaintTrace] = []
        for rule in p.rules:
            scope = None
            if rule.envs is not None and env not in rule.envs:
                scope = f"env {env!r} not in {sorted(rule.envs)}"
            elif rule.tenants is not None and tenant not in rule.tenants:
                scope = f"tenant {tenant!r} not in {sorted(rule.tenants)}"
            elif rule.roles is not None and rule.roles.isdisjoint(roles):
                scope = f"roles {sorted(roles)} do not include any of {sorted(rule.roles)}"
            elif rule.agents is not None and call.principal.agent not in rule.agents:
                scope = f"agent {call.principal.agent!r} not in {sorted(rule.agents)}"
            tool_matched = rule.id in candidates
            leaves: list[tuple[str, str]] = []
            errs: tuple[str, ...] = ()
            result: Effect | None = None
            if not tool_matched or scope is not None:
                condition = "skipped"
            elif rule.condition is None:
                condition, result = "none", rule.effect
            else:
                for leaf in rule.condition.leaves:
                    leaves.append((_describe_leaf(leaf), _leaf_outcome(leaf, ctx)))
                    found = _taint_trace(rule.id, leaf, ctx)
                    if found is not None:
                        taint.append(found)
                try:
                    ok = rule.condition.fn(ctx)
                    condition = "true" if ok else "false"
                    result = rule.effect if ok else rule.otherwise
                except EvalError as exc:
                    condition, errs = "error", exc.messages
                    result = rule.effect if rule.effect is not _ALLOW else rule.otherwise
            traces.append(
                RuleTrace(
                    rule_id=rule.id, effect=rule.effect, file=rule.file, line=rule.line, tool_matched=tool_matched,
                    scope=scope, condition=condition, leaves=tuple(leaves), errors=errs, result=result,
                )
            )  # fmt: skip
        run_labels: tuple[str, ...] | None = None
        run_error: str | None = None
        if call.run_id is not None:
            try:
                run_labels = tuple(ctx.run.labels)
            except EvalError as exc:
                run_error = "; ".join(exc.messages)
        return Explanation(
            decision=decision,
            tool=tool,
            env=env,
            tenant=tenant,
            roles=tuple(sorted(roles)),
            rules=tuple(traces),
            run_labels=run_labels,
            run_error=run_error,
            taint=tuple(taint),
        )


def _shadow_outcome(decision: Decision) -> str | None:
    """The audit outcome of a call let through although shadow mode would block it:
    ``shadow-denied`` / ``shadow-require_approval``; None when shadow changes nothing."""
    would = decision.effect if not decision.enforced else decision.shadow_effect
    if would is None or would is _ALLOW:
        return None
    if decision.enforced and decision.effect is not _ALLOW:
        return None  # enforced deny/approval: the call is blocked for real
    return f"shadow-{'denied' if would is _DENY else 'require_approval'}"


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


def _taint_trace(rule_id: str, leaf: Any, ctx: EvalContext) -> TaintTrace | None:
    """The observed outputs that taint a `tainted_by` leaf's value (None if none)."""
    if leaf.taint is None:
        return None
    labels, min_length = leaf.taint
    try:
        matches = ctx.run.matches(leaf.value(ctx), labels, min_length)
    except Exception:  # no run, no value: the rule trace already shows the error
        return None
    if not matches:
        return None
    return TaintTrace(
        rule_id=rule_id, field=leaf.field, labels=tuple(sorted(labels)), matches=matches
    )


def _describe_leaf(leaf: Any) -> str:
    return f"{leaf.field} {leaf.operator} {leaf.operand!r}"


def _leaf_outcome(leaf: Any, ctx: EvalContext) -> str:
    try:
        value = leaf.value(ctx)
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
    except EvalError as exc:
        return f"error: {'; '.join(exc.messages)}"
    try:
        return f"{'true' if leaf.fn(ctx) else 'false'} (value {shown})"
    except EvalError as exc:
        return f"error: {'; '.join(exc.messages)}"

"""`Veto`: the facade (DESIGN.md 3): construction, reload/watch, tenants, stores and
the public methods; `decide()` is the hot path.

`decide` is pure (no I/O, no shared mutable state beyond memo caches of pure
functions) and thread-safe; `reload()` swaps the compiled policy with a single
attribute assignment, so a decision sees either the old or the new policy whole.

Each stage of a call lives in its own module, which never imports this one:
`decision` (the compiled deciders; `decision.explain`), `authorize` (the ordered
pipeline: arguments, decide, limits, record, approval request, channels; waiting
for and resuming on approvals), `runs` (run state and `observe`, 2.7).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import authorize as pipeline
from ._lazy import lazy_exports
from .authorize import CallContext, tenant_of
from .authorize import shadow_outcome as _shadow_outcome  # noqa: F401  (its old home: kept for importers)
from .decision import decide
from .model import Authorization, Decision, Effect, Principal, ToolCall, make_decision
from .policy.compiler import CompiledPolicy, compile_policy
from .policy.errors import PolicyError
from .policy.loader import LoadedPolicy, load_bundle, load_policy_file, load_policy_text
from .policy.operators import Operator
from .runs.tracker import USER, ObservationError, RunTracker
from .telemetry import trace_approval_wait, trace_authorize

if TYPE_CHECKING:
    from .approvals import ApprovalRequest, ApprovalService
    from .audit import AuditLog
    from .decision.explain import Explanation, RuleTrace, TaintTrace
    from .limits import LimitStore
    from .policy.watch import PolicyWatcher
    from .runs.store import RunStore

__all__ = ["Explanation", "RuleTrace", "TaintTrace", "Veto"]

# Only `explain` needs the explanation types: deciding a call (`veto check`) does not
# import them (start-up, DESIGN.md 8); `from veto_core.engine import Explanation` works.
_EXPLAIN = "veto_core.decision.explain"
__getattr__, __dir__ = lazy_exports(
    globals(), {"Explanation": _EXPLAIN, "RuleTrace": _EXPLAIN, "TaintTrace": _EXPLAIN}
)

_ALLOW, _DENY, _APPROVE = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL


def _records_runs(policy: CompiledPolicy) -> bool:
    """Whether ``policy`` keeps a run history (DESIGN.md 2.7): it has ``sources``, or a
    rule reads ``run.*`` or ``tainted_by``. Otherwise no decision could read one, so
    `Veto.observe` records nothing (each record is a store write)."""
    return policy.uses_runs or bool(policy.sources)


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        return tenant_of(call, self.tenant)

    def _call_context(self) -> CallContext:
        """What the pipeline (`authorize.py`) needs from this Veto for one call."""
        return CallContext(
            policy=self._policy, env=self.env, tenant=self.tenant, clock=self.clock, runs=self._runs,
            stores=self, decide=self.decide, source=self._source, stored_revisions=self._stored_revisions,
        )  # fmt: skip

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
                return Authorization(decision=pipeline.refuse(self._policy, reason), record_id=None)
            if other is not None:
                return other.authorize(call)
        return pipeline.authorize(self._call_context(), call)

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
        return pipeline.decide_counted(self._call_context(), call, counters)

    # --- runs and data flow (DESIGN.md 2.7) ---------------------------------------------------

    def _refresh_run(self, call: ToolCall) -> None:
        """Catch the cached run of ``call`` up with the store (what `authorize` does
        before deciding; `veto replay` calls it after feeding a run's history)."""
        pipeline.refresh_run(self._call_context(), call)

    @property
    def observes_runs(self) -> bool:
        """False when `observe`, `aobserve` and `observe_user` are no-ops under the
        current policy (no ``sources``, no rule reading ``run.*`` or ``tainted_by``, and
        no bundle whose tenants could have them): an adapter may then skip all the work
        of preparing an observation (reading a tool's output or the person's input).
        Read it again for every call: it follows `reload` (one attribute read)."""
        return self._bundle is not None or _records_runs(self._policy)

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
        if not _records_runs(policy):
            return
        self._runs.observe(
            self._policy, call, output, tenant=self._tenant_of(call),
            env=call.env or self.env, effect=effect,
        )  # fmt: skip

    async def aobserve(self, call: ToolCall, output: Any, *, effect: Effect = _ALLOW) -> None:
        """`observe` for async code (the store write runs in a worker thread)."""
        if not self.observes_runs:
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
        return pipeline.wait_for_approval(self, auth, timeout)

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
        return pipeline.check_approval(self._call_context(), call)

    def find_approval(self, call: ToolCall) -> ApprovalRequest | None:
        """The request bound to exactly this call, if any (expiry applied; nothing is
        consumed). Raises ``ApprovalUnavailable`` on a store failure."""
        return self.approvals.find(call, tenant=self.tenant)

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
        from .decision.explain import explain

        p = self._policy
        return explain(
            p, call, self.decide(call), env=call.env or self.env, tenant=self._tenant_of(call),
            clock=self.clock, runs=self._runs.lookup,
        )  # fmt: skip

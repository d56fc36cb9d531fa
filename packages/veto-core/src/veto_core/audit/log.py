"""``AuditLog``: the audit trail's Python API (engine, approvals, CLI, dashboard)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from veto_core.audit.errors import AuditError, AuditUnavailable
from veto_core.audit.group_commit import GroupCommitter
from veto_core.audit.pending import PendingRecord, principal_fragments
from veto_core.audit.record import (
    DEFAULT_TENANT,
    ApprovalInfo,
    AuditRecord,
    SealedRecord,
    args_digest,
    args_mac,
    canonical_str,
    digest_json,
    mac_json,
    new_uuid7,
    plain_args_json,
    redact_plain,
    ts_to_us,
    user_digest,
)
from veto_core.audit.signing import load_signer, public_key_hex, sign
from veto_core.audit.sink import AuditQuery, AuditSink, Checkpoint, PolicyRevision, SinkConfig
from veto_core.audit.verify import ERASE_TOOL, PURGE_TOOL, VerifyReport, verify_chain
from veto_core.model import Decision, Effect, Principal, ToolCall

__all__ = [
    "ENV_DB",
    "AuditLog",
    "EraseResult",
    "PurgeResult",
    "default_audit_url",
    "open_audit",
    "outcome_for",
]

ENV_DB = "VETO_DB"

_OUTCOMES = {
    Effect.ALLOW: "allowed",
    Effect.DENY: "denied",
    Effect.REQUIRE_APPROVAL: "pending_approval",
}


def outcome_for(effect: Effect) -> str:
    """Default ``outcome`` of a decision record: allowed / denied / pending_approval."""
    return _OUTCOMES[effect]


def default_audit_url() -> str:
    """``$VETO_DB`` if set, else ``~/.veto/veto.db``."""
    env = os.environ.get(ENV_DB)
    if env:
        return env
    return str(Path.home() / ".veto" / "veto.db")


def open_audit(url: str | None = None) -> AuditLog:
    """Open the audit trail at ``url`` (``None``: ``$VETO_DB`` or ``~/.veto/veto.db``).

    Accepts ``sqlite:///relative.db``, ``sqlite:////absolute.db``, a plain path,
    ``postgresql://user@host:5432/db[?schema=name]``, ``jsonl:///path``; other
    schemes are answered by plugins (``veto_audit_sinks``). Raises
    :class:`AuditUnavailable` if no sink answers or the store cannot be opened.
    """
    from veto_core.plugins import get_plugin_manager

    config = SinkConfig.parse(url if url else default_audit_url())
    try:
        # Only the sink plugins: importing every channel would slow every `veto` command.
        pm = get_plugin_manager(builtins=("veto_core.audit.plugin",))
        answers = pm.hook.veto_audit_sinks(config=config)
    except AuditUnavailable:
        raise
    except Exception as exc:
        raise AuditUnavailable(f"cannot open audit sink {config.url!r}: {exc}") from exc
    sinks = [s for answer in answers for s in answer]
    if not sinks:
        raise AuditUnavailable(f"no audit sink for URL scheme {config.scheme!r} ({config.url})")
    # pluggy calls later-registered plugins first: a third-party sink overrides a built-in.
    return AuditLog(sinks[0])


@dataclass(frozen=True, kw_only=True, slots=True)
class PurgeResult:
    tenant: str
    deleted: int
    through_seq: int | None
    cutoff: _dt.datetime
    tombstone: Checkpoint | None


@dataclass(frozen=True, kw_only=True, slots=True)
class EraseResult:
    tenant: str
    records: int
    erasure_record_id: str | None


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class AuditLog:
    """The audit trail over one sink. Thread-safe; one instance per process and store."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink
        self._committer: GroupCommitter[PendingRecord, SealedRecord] = GroupCommitter(sink.append)
        self._principals: dict[tuple[str, Principal], tuple[str, str, str | None]] = {}

    @property
    def url(self) -> str:
        return self.sink.url

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sink.close()

    # -- writing -----------------------------------------------------------------

    def tenant_key(self, tenant: str) -> bytes:
        return self.sink.tenant_key(tenant)

    def args_digest(self, tenant: str, args: Mapping[str, Any]) -> str:
        """``HMAC-SHA256(tenant key, canonical args)``: what an approval request binds to."""
        return args_digest(self.sink.tenant_key(tenant), args)

    def record_decision(
        self,
        call: ToolCall,
        decision: Decision,
        *,
        env: str | None = None,
        tenant: str | None = None,
        redact: Iterable[str] = (),
        latency_us: int = 0,
        outcome: str | None = None,
        approval: ApprovalInfo | None = None,
        now: _dt.datetime | None = None,
    ) -> AuditRecord:
        """Durably record one decision; returns only after the commit (fsync) succeeded.

        ``env``/``tenant`` are the ``Veto`` instance defaults; the call's own
        ``env``/``tenant`` (then ``principal.tenant``) win. ``redact`` are the
        policy's ``redact:`` patterns. ``outcome`` defaults from the effect
        (allowed / denied / pending_approval); pass e.g. ``"shadow-denied"``.
        Raises :class:`AuditUnavailable` on any failure: the caller must deny.
        """
        try:
            return self._record(
                tenant=call.tenant or call.principal.tenant or tenant or DEFAULT_TENANT,
                env=call.env or env,
                principal=call.principal,
                framework=call.framework,
                run_id=call.run_id,
                tool=call.tool,
                tool_call_id=call.tool_call_id,
                args=call.args,
                redact=redact,
                effect=decision.effect.value,
                outcome=outcome or outcome_for(decision.effect),
                rule_ids=decision.rule_ids,
                reasons=decision.reasons,
                errors=decision.errors,
                policy_name=decision.policy_name,
                policy_revision=decision.policy_revision,
                approval=approval,
                latency_us=latency_us,
                now=now,
            )
        except AuditUnavailable:
            raise
        except Exception as exc:  # fail closed: whatever went wrong, the record is not there
            raise AuditUnavailable(f"audit record not written: {exc!r}") from exc

    def record_event(
        self,
        *,
        tenant: str | None,
        tool: str,
        outcome: str,
        env: str | None = None,
        principal: Principal | None = None,
        framework: str | None = None,
        run_id: str | None = None,
        tool_call_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        redact: Iterable[str] = (),
        effect: str | None = None,
        rule_ids: Iterable[str] = (),
        reasons: Iterable[str] = (),
        errors: Iterable[str] = (),
        policy_name: str | None = None,
        policy_revision: str | None = None,
        approval: ApprovalInfo | None = None,
        latency_us: int = 0,
        now: _dt.datetime | None = None,
        args_digest: str | None = None,
    ) -> AuditRecord:
        """Durably record a state change that is not a decision.

        Approvals use it for every lifecycle step, with ``approval`` set and the
        original call's ``tool``/``run_id``/``tool_call_id``/``args`` (so
        ``args_digest`` matches the request's), and ``outcome`` one of e.g.
        ``approval_requested``, ``approval_vote``, ``approved``, ``rejected``,
        ``expired``, ``cancelled``, ``approval_consumed``. Same durability and
        failure rule as :meth:`record_decision`. ``args_digest`` overrides the
        digest of ``args`` when only a redacted copy is at hand (later lifecycle
        steps pass the request's digest so every step names the same call).
        """
        try:
            return self._record(
                tenant=tenant or (principal.tenant if principal else None) or DEFAULT_TENANT,
                env=env,
                principal=principal or Principal(),
                framework=framework,
                run_id=run_id,
                tool=tool,
                tool_call_id=tool_call_id,
                args=args or {},
                redact=redact,
                effect=effect,
                outcome=outcome,
                rule_ids=tuple(rule_ids),
                reasons=tuple(reasons),
                errors=tuple(errors),
                policy_name=policy_name,
                policy_revision=policy_revision,
                approval=approval,
                latency_us=latency_us,
                now=now,
                digest=args_digest,
            )
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable(f"audit record not written: {exc!r}") from exc

    def _record(
        self,
        *,
        tenant: str,
        env: str | None,
        principal: Principal,
        framework: str | None,
        run_id: str | None,
        tool: str,
        tool_call_id: str | None,
        args: Mapping[str, Any],
        redact: Iterable[str],
        effect: str | None,
        outcome: str,
        rule_ids: tuple[str, ...],
        reasons: tuple[str, ...],
        errors: tuple[str, ...],
        policy_name: str | None,
        policy_revision: str | None,
        approval: ApprovalInfo | None,
        latency_us: int,
        now: _dt.datetime | None,
        digest: str | None = None,
    ) -> AuditRecord:
        key = self.sink.tenant_key(tenant)
        plain, plain_json = plain_args_json(args)
        if redact:
            stored: Any = redact_plain(plain, redact)
            stored_json = canonical_str(stored)
        else:
            stored, stored_json = json.loads(plain_json), plain_json
        frag_key = (tenant, principal)
        frags = self._principals.get(frag_key)
        if frags is None:
            ud = user_digest(key, principal.user)
            pj, pv = principal_fragments(principal, ud)
            frags = (pj, pv, ud)
            if len(self._principals) >= 4096:
                self._principals.clear()
            self._principals[frag_key] = frags
        pending = PendingRecord(
            id=new_uuid7(),
            ts_us=time.time_ns() // 1000 if now is None else ts_to_us(now),
            tenant=tenant,
            env=env,
            principal=principal,
            principal_json=frags[0],
            principal_view=frags[1],
            framework=framework,
            run_id=run_id,
            tool=tool,
            tool_call_id=tool_call_id,
            args=stored,
            args_json=stored_json,
            args_digest=digest_json(key, plain_json) if digest is None else digest,
            effect=effect,
            outcome=outcome,
            rule_ids=tuple(rule_ids),
            reasons=tuple(reasons),
            errors=tuple(errors),
            policy_name=policy_name,
            policy_revision=policy_revision,
            approval=approval,
            latency_us=int(latency_us),
            user_digest=frags[2],
            args_mac=mac_json(key, stored_json),
        )
        return self._committer.submit(pending).record

    # -- reading -----------------------------------------------------------------

    def iter_records(self, q: AuditQuery | None = None, /, **filters: Any) -> Iterator[AuditRecord]:
        """Stream records matching ``q`` (or the keyword filters of :class:`AuditQuery`)."""
        query = q if q is not None else AuditQuery(**filters)
        for r in self.sink.query(query):
            if query.matches(r):  # sinks push filters down; this is the exact check
                yield r

    def query(self, q: AuditQuery | None = None, /, **filters: Any) -> list[AuditRecord]:
        """A page of records (``limit``/``offset``; default limit 100)."""
        query = q if q is not None else AuditQuery(**({"limit": 100} | filters))
        return list(self.iter_records(query))

    def tenants(self) -> list[str]:
        return self.sink.tenants()

    def verify(self, tenant: str | None = None, *, public_key: str | None = None) -> VerifyReport:
        """Verify every tenant's chain (or one); ``public_key`` pins the checkpoint signer."""
        names = [tenant] if tenant is not None else self.sink.tenants()
        results = []
        for t in names:
            try:
                results.append(
                    verify_chain(
                        t,
                        self.sink.iter_chain(t),
                        key=self.sink.tenant_key(t),
                        head=self.sink.chain_head(t),
                        checkpoints=self.sink.checkpoints(t),
                        public_key=public_key,
                    )
                )
            except AuditError:
                raise
            except Exception as exc:
                raise AuditUnavailable(f"cannot verify tenant {t!r}: {exc!r}") from exc
        return VerifyReport(ok=all(r.ok for r in results), tenants=tuple(results))

    # -- checkpoints, retention, erasure -------------------------------------------

    def _signed(
        self, *, tenant: str, kind: str, seq: int, hash_: str, info: Mapping[str, Any]
    ) -> Checkpoint:
        key = load_signer(self.sink)
        unsigned = Checkpoint(
            tenant=tenant,
            kind=kind,
            seq=seq,
            hash=hash_,
            created_at=_now(),
            info=dict(info),
            public_key=public_key_hex(key),
            signature="",
        )
        return Checkpoint(
            tenant=tenant,
            kind=kind,
            seq=seq,
            hash=hash_,
            created_at=unsigned.created_at,
            info=dict(info),
            public_key=unsigned.public_key,
            signature=sign(key, unsigned.payload()),
        )

    def public_key(self) -> str:
        """Hex of the Ed25519 public key checkpoints are signed with (pin it for verify)."""
        return public_key_hex(load_signer(self.sink))

    def checkpoint(self, tenant: str | None = None) -> list[Checkpoint]:
        """Sign the current head of each tenant's chain (or one tenant's)."""
        out = []
        for t in [tenant] if tenant is not None else self.sink.tenants():
            head = self.sink.chain_head(t)
            if head is None:
                continue
            cp = self._signed(tenant=t, kind="checkpoint", seq=head[0], hash_=head[1], info={})
            self.sink.add_checkpoint(cp)
            out.append(cp)
        return out

    def purge(
        self, tenant: str, retention_days: int, *, now: _dt.datetime | None = None
    ) -> PurgeResult:
        """Delete the tenant's records older than ``retention_days``.

        Deletes the longest prefix of the chain whose records are all older than
        the cutoff, in one transaction with a signed tombstone naming the last
        deleted link; the remaining chain verifies from that tombstone. The purge
        itself is recorded in the chain.
        """
        if retention_days < 0:
            raise ValueError("retention_days must be >= 0")
        cutoff = (now or _now()) - _dt.timedelta(days=retention_days)
        through: tuple[int, str] | None = None
        for s in self.sink.iter_chain(tenant):
            if s.record.ts >= cutoff:
                break
            through = (s.record.seq, s.record.hash)
        if through is None:
            return PurgeResult(
                tenant=tenant, deleted=0, through_seq=None, cutoff=cutoff, tombstone=None
            )
        tomb = self._signed(
            tenant=tenant,
            kind="tombstone",
            seq=through[0],
            hash_=through[1],
            info={
                "reason": "retention",
                "retention_days": retention_days,
                "cutoff_us": int(cutoff.timestamp() * 1_000_000),
            },
        )
        deleted = self.sink.purge_through(tenant, through[0], tomb)
        self.record_event(
            tenant=tenant,
            tool=PURGE_TOOL,
            outcome="purged",
            args={"through_seq": through[0], "deleted": deleted, "retention_days": retention_days},
            reasons=(f"retention: deleted {deleted} records older than {retention_days} days",),
        )
        return PurgeResult(
            tenant=tenant, deleted=deleted, through_seq=through[0], cutoff=cutoff, tombstone=tomb
        )

    def erase_user(self, user: str, *, tenant: str | None = None) -> list[EraseResult]:
        """GDPR erasure: remove ``args`` and the user id from every record of ``user``.

        For each affected tenant, first records the erasure (subject named only by
        its keyed digest), then nulls the data in place; the chain still verifies
        because it covers ``args_digest`` and ``user_digest``, not the values.
        The store's files are compacted so the erased bytes are gone.
        """
        out = []
        for t in [tenant] if tenant is not None else self.sink.tenants():
            n = self.sink.count_user(t, user)
            if n == 0:
                continue
            key = self.sink.tenant_key(t)
            dig = user_digest(key, user)
            ev = self.record_event(
                tenant=t,
                tool=ERASE_TOOL,
                outcome="erased",
                args={"user_digest": dig, "records": n},
                reasons=(f"erasure of a data subject's personal data from {n} records",),
            )
            erased = self.sink.erase_user(t, user, ev.seq, args_mac(key, None))
            out.append(EraseResult(tenant=t, records=erased, erasure_record_id=ev.id))
        return out

    # -- policy revisions ------------------------------------------------------------

    def store_policy_revision(self, revision: str, name: str, content: str, source: str) -> None:
        """Keep the text of a policy revision (idempotent): evidence packs and replay need it."""
        self.sink.store_policy_revision(
            PolicyRevision(
                revision=revision, name=name, content=content, source=source, first_seen=_now()
            )
        )

    def policy_revisions(self) -> list[PolicyRevision]:
        return self.sink.policy_revisions()


def warn_best_effort(exc: BaseException) -> None:
    """For engines in ``audit_mode: best_effort``: the loud warning the policy asked for."""
    warnings.warn(
        f"VETO AUDIT UNAVAILABLE (best_effort mode: call NOT recorded): {exc}",
        RuntimeWarning,
        stacklevel=2,
    )

"""``AuditLog``: the audit trail's Python API (engine, approvals, CLI, dashboard)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from veto_core.audit.errors import AuditError, AuditUnavailable
from veto_core.audit.pending import PendingRecord, principal_fragments
from veto_core.audit.record import (
    DEFAULT_TENANT,
    ApprovalInfo,
    AuditRecord,
    SealedRecord,
    args_digest,
    args_mac,
    encode_plain,
    keyed_sha256,
    loads_plain,
    new_uuid7,
    plain_args_kind,
    redact_plain,
    ts_to_us,
    user_digest,
)
from veto_core.audit.signing import (
    KEY_FILE_NAME,
    Signer,
    default_key_path,
    load_signer,
    load_signer_plugin,
    public_key_hex,
    sign,
    write_key_file,
)
from veto_core.audit.sink import (
    ENV_DB,
    AuditQuery,
    AuditSink,
    Checkpoint,
    PolicyRevision,
    SinkConfig,
    default_audit_url,
)
from veto_core.audit.verify import (
    ERASE_TOOL,
    PURGE_TOOL,
    REGISTRY_TENANT,
    VerifyReport,
    verify_chain,
    verify_store,
)
from veto_core.audit.witness import AuditWitness, open_witnesses
from veto_core.audit.writer import AuditWriter
from veto_core.config import AuditConfig
from veto_core.identity import IdentityError, canonical_or_none
from veto_core.model import Decision, Effect, Principal, ToolCall

__all__ = [
    "ENV_DB",
    "AuditLog",
    "EraseResult",
    "PurgeResult",
    "default_audit_url",
    "open_audit",
    "outcome_for",
    "subject_matcher",
]


_log = logging.getLogger("veto.audit")

_OUTCOMES = {
    Effect.ALLOW: "allowed",
    Effect.DENY: "denied",
    Effect.REQUIRE_APPROVAL: "pending_approval",
}


def outcome_for(effect: Effect) -> str:
    """Default ``outcome`` of a decision record: allowed / denied / pending_approval."""
    return _OUTCOMES[effect]


def open_audit(
    url: str | None = None, *, create: bool = True, config: AuditConfig | None = None
) -> AuditLog:
    """Open the audit trail at ``url`` (``None``: ``$VETO_DB`` or ``~/.veto/veto.db``).

    Accepts ``sqlite:///relative.db``, ``sqlite:////absolute.db``, a plain path,
    ``postgresql://user@host:5432/db[?schema=name]``, ``jsonl:///path``; other
    schemes are answered by plugins (``veto_audit_sinks``). Raises
    :class:`AuditUnavailable` if no sink answers or the store cannot be opened,
    :class:`~veto_core.audit.errors.AuditStoreMissing` if ``create=False`` and
    there is no store. ``config`` (default: ``veto.toml`` ``[audit]`` and the
    environment) says where checkpoints are signed and published.
    """
    from veto_core.plugins import get_plugin_manager

    if config is None:
        from veto_core.config import ConfigError, load_config

        try:
            config = load_config().audit
        except ConfigError as exc:
            raise AuditUnavailable(f"audit settings: {exc}") from exc
    sink_config = SinkConfig.parse(
        url if url else default_audit_url(), create=create, durability=config.durability
    )
    try:
        # Only the sink plugins: importing every channel would slow every `veto` command.
        pm = get_plugin_manager(builtins=("veto_core.audit.plugin",))
        answers = pm.hook.veto_audit_sinks(config=sink_config)
    except AuditUnavailable:
        raise
    except Exception as exc:
        raise AuditUnavailable(f"cannot open audit sink {sink_config.url!r}: {exc}") from exc
    sinks = [s for answer in answers for s in answer]
    if not sinks:
        raise AuditUnavailable(
            f"no audit sink for URL scheme {sink_config.scheme!r} ({sink_config.url})"
        )
    # pluggy calls later-registered plugins first: a third-party sink overrides a built-in.
    try:
        witnesses = open_witnesses(config.witnesses)
    except BaseException:
        sinks[0].close()
        raise
    return AuditLog(sinks[0], config=config, witnesses=witnesses)


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


def subject_matcher(user: str, aliases: Iterable[str] = ()) -> Callable[[str], bool]:
    """Whether a stored user id belongs to the data subject ``user`` (DESIGN.md 2.8):
    it is ``user`` exactly, or its canonical identity is that of ``user`` or of one of
    ``aliases``. A stored id that is no valid identity (hidden characters) matches
    only exactly: it is someone else's spelling, not the subject's."""
    ids = {c for x in (user, *aliases) if (c := _identity(x)) is not None}

    def matches(stored: str) -> bool:
        if stored == user:
            return True
        c = _identity(stored)
        return c is not None and c in ids

    return matches


def _identity(value: str) -> str | None:
    try:
        return canonical_or_none(value)
    except IdentityError:
        return None


class AuditLog:
    """The audit trail over one sink. Thread-safe; one instance per process and store."""

    def __init__(
        self,
        sink: AuditSink,
        *,
        config: AuditConfig | None = None,
        signer: Signer | None = None,
        witnesses: tuple[AuditWitness, ...] = (),
    ) -> None:
        self.sink = sink
        self.config = config or AuditConfig()
        self.witnesses = witnesses
        self.notices: list[str] = []
        """What opening the store changed that an operator must hear (key migration)."""
        self._signer = signer
        # One writer per store: commits from every thread and task are batched.
        self._writer: AuditWriter[PendingRecord, SealedRecord] = AuditWriter(sink.append)
        # tenant -> (key, HMAC keyed for args_digest, HMAC keyed and fed b"args\0").
        self._macs: dict[str, tuple[bytes, Any, Any]] = {}
        self._principals: dict[tuple[str, Principal], tuple[str, str, str | None]] = {}
        # Automatic checkpoints: the last seq this log appended / signed, per tenant.
        self._appended: dict[str, int] = {}
        self._sealed: dict[str, int] = {}
        self._sealing = threading.Lock()
        self._retry: set[str] = set()
        self._migrate_legacy_seed()

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
        """Sign (and publish) the head of every chain this log extended, then close.

        A clean shutdown thereby seals its tail: deleting any record written
        before it is caught by ``verify``.
        """
        try:
            self._writer.close()  # commits what is queued; later records raise
            dirty = [
                t
                for t, seq in self._appended.items()
                if seq > self._sealed.get(t, 0) or t in self._retry
            ]
            if dirty:
                self._auto_checkpoint(dirty)
        finally:
            self.sink.close()

    def _migrate_legacy_seed(self) -> None:
        """Move a signing seed older versions kept in the store to a key file outside it."""
        try:
            seed = self.sink.legacy_signing_seed()
        except AuditError as exc:
            self.notices.append(f"could not check the store for a stored signing key: {exc}")
            return
        if seed is None:
            return
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        legacy_pub = public_key_hex(Ed25519PrivateKey.from_private_bytes(seed))
        configured = self.config.signing_key or os.environ.get("VETO_AUDIT_SIGNING_KEY")
        target = (
            Path(configured).expanduser()
            if configured and ("/" in configured or configured.endswith((".key", ".pem")))
            else default_key_path(SinkConfig.parse(self.sink.url))
        )
        try:
            if not write_key_file(target, seed):
                current = load_signer(str(target), SinkConfig.parse(self.sink.url), create=False)
                if current is None or current.public_key_hex() != legacy_pub:
                    target = target.with_name(f"{KEY_FILE_NAME}.legacy-{legacy_pub[:12]}")
                    write_key_file(target, seed)
            self.sink.drop_legacy_signing_seed()
        except AuditError as exc:
            msg = (
                f"SECURITY: this audit store still holds its checkpoint signing key "
                f"(public key {legacy_pub}); moving it to {target} failed: {exc}"
            )
        else:
            msg = (
                f"moved the checkpoint signing key (public key {legacy_pub}) out of the audit "
                f"store to {target}: a key stored with the records let whoever could write "
                "them re-sign a rewritten chain. Pin the public key in veto.toml "
                "([audit] public_key) and keep the key file out of the database's reach."
            )
        self.notices.append(msg)
        _log.warning("%s", msg)

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
                *self._decision_fields(
                    call, decision, env, tenant, redact, latency_us, outcome, approval, now
                )
            )
        except AuditUnavailable:
            raise
        except Exception as exc:  # fail closed: whatever went wrong, the record is not there
            raise AuditUnavailable(f"audit record not written: {exc!r}") from exc

    async def arecord_decision(
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
        """:meth:`record_decision` for asyncio: awaits the commit that holds the record
        without blocking the event loop (the record is built on the caller's thread and
        committed by the store's writer with those of every other thread and task).
        The first record of a tenant reads its key from the store on a worker thread."""
        import asyncio  # only callers already running asyncio pay for it (DESIGN.md 8)

        try:
            fields = self._decision_fields(
                call, decision, env, tenant, redact, latency_us, outcome, approval, now
            )
            if fields[0] not in self._macs:
                await asyncio.to_thread(self._tenant_macs, fields[0])
            sealed = (await self._writer.asubmit(self._pending(*fields))).record
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable(f"audit record not written: {exc!r}") from exc
        if sealed.seq - self._sealed.get(sealed.tenant, 0) >= self.config.checkpoint_every:
            await asyncio.to_thread(self._appended_one, sealed)  # signs: off the loop
        else:
            self._appended_one(sealed)
        return sealed

    @staticmethod
    def _decision_fields(
        call: ToolCall,
        decision: Decision,
        env: str | None,
        tenant: str | None,
        redact: Iterable[str],
        latency_us: int,
        outcome: str | None,
        approval: ApprovalInfo | None,
        now: _dt.datetime | None,
    ) -> tuple[Any, ...]:
        """The arguments of :meth:`_pending` for a decision, in its parameter order
        (positional: no keyword dict per record on the hot path)."""
        return (
            call.tenant or call.principal.tenant or tenant or DEFAULT_TENANT,
            call.env or env,
            call.principal,
            call.framework,
            call.run_id,
            call.tool,
            call.tool_call_id,
            call.args,
            redact,
            decision.effect.value,
            outcome or outcome_for(decision.effect),
            decision.rule_ids,
            decision.reasons,
            decision.errors,
            decision.policy_name,
            decision.policy_revision,
            approval,
            latency_us,
            now,
        )

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

    def _record(self, *args: Any, **fields: Any) -> AuditRecord:
        sealed = self._writer.submit(self._pending(*args, **fields)).record
        self._appended_one(sealed)
        return sealed

    def _appended_one(self, sealed: AuditRecord) -> None:
        # Cheap bookkeeping; signing happens once per ``checkpoint_every`` records.
        tenant = sealed.tenant
        if sealed.seq > self._appended.get(tenant, 0):
            self._appended[tenant] = sealed.seq
        if sealed.seq - self._sealed.get(tenant, 0) >= self.config.checkpoint_every:
            self._auto_checkpoint([tenant])

    def _tenant_macs(self, tenant: str) -> tuple[bytes, Any, Any]:
        macs = self._macs.get(tenant)
        if macs is None:
            key = self.sink.tenant_key(tenant)
            macs = (key, keyed_sha256(key), keyed_sha256(key, b"args\x00"))
            self._macs[tenant] = macs
        return macs

    def _pending(
        self,
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
    ) -> PendingRecord:
        """Everything of a record but its chain position, on the caller's thread."""
        key, digest_mac, args_mac_ = self._tenant_macs(tenant)
        plain, plain_json, kind = plain_args_kind(args)
        if redact:
            stored: Any = redact_plain(plain, redact)
            # Redaction only replaces values by strings: the args' encoder kind holds.
            stored_json = plain_json if stored is plain else encode_plain(stored, kind)
        else:
            stored, stored_json = loads_plain(plain_json), plain_json
        frag_key = (tenant, principal)
        frags = self._principals.get(frag_key)
        if frags is None:
            ud = user_digest(key, principal.user)
            pj, pv = principal_fragments(principal, ud)
            frags = (pj, pv, ud)
            if len(self._principals) >= 4096:
                self._principals.clear()
            self._principals[frag_key] = frags
        if digest is None:
            h = digest_mac.copy()
            h.update(plain_json.encode())
            digest = h.hexdigest()
        m = args_mac_.copy()
        m.update(stored_json.encode())
        return PendingRecord(  # positional, in its parameter order (the hot path)
            new_uuid7(),
            time.time_ns() // 1000 if now is None else ts_to_us(now),
            tenant,
            env,
            principal,
            frags[0],
            frags[1],
            framework,
            run_id,
            tool,
            tool_call_id,
            stored,
            stored_json,
            digest,
            effect,
            outcome,
            rule_ids if type(rule_ids) is tuple else tuple(rule_ids),
            reasons if type(reasons) is tuple else tuple(reasons),
            errors if type(errors) is tuple else tuple(errors),
            policy_name,
            policy_revision,
            approval,
            int(latency_us),
            frags[2],
            m.hexdigest(),
        )

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

    def verify(
        self,
        tenant: str | None = None,
        *,
        public_key: str | Collection[str] | None = None,
        witnesses: tuple[AuditWitness, ...] | None = None,
    ) -> VerifyReport:
        """Verify every tenant's chain (or one), the tenant registry and the policy texts.

        Signatures are checked against ``public_key`` (one hex key or several),
        else ``[audit] public_key``, else the local signing key if one exists;
        with none of them the report carries a warning: a forger's own key would
        pass. Heads held by ``witnesses`` (default: the configured ones) must
        still be in the chain.
        """
        pinned, warnings_ = self._pinned(public_key)
        wits = self.witnesses if witnesses is None else witnesses
        witnessed: list[Checkpoint] = []
        for w in wits:
            got = w.read()
            if not got:
                warnings_.append(f"witness {w.url} holds no checkpoints yet")
            witnessed.extend(got)
        if not wits:
            warnings_.append(
                "no witness configured ([audit] witness): deleting the newest records "
                "together with every checkpoint after them cannot be detected"
            )
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
                        public_key=pinned,
                        witnessed=[cp for cp in witnessed if cp.tenant == t],
                    )
                )
            except AuditError:
                raise
            except Exception as exc:
                raise AuditUnavailable(f"cannot verify tenant {t!r}: {exc!r}") from exc
        try:
            return verify_store(
                results,
                tenant=tenant,
                present=set(self.sink.tenants()),
                registries=self.sink.checkpoints(REGISTRY_TENANT),
                checkpoints=[cp for t in names for cp in self.sink.checkpoints(t)],
                witnessed=witnessed,
                policies=self.sink.policy_revisions(),
                pinned=pinned,
                warnings=tuple(warnings_),
            )
        except AuditError:
            raise
        except Exception as exc:
            raise AuditUnavailable(f"cannot verify the audit store: {exc!r}") from exc

    def _pinned(self, public_key: str | Collection[str] | None) -> tuple[frozenset[str], list[str]]:
        if isinstance(public_key, str):
            public_key = (public_key,)
        keys = frozenset(k.lower() for k in (public_key or ()) or self.config.public_keys)
        if keys:
            return keys, []
        local = self._signer or (
            load_signer_plugin(self.config.signer)
            if self.config.signer
            else load_signer(self.config.signing_key, SinkConfig.parse(self.sink.url), create=False)
        )
        if local is not None:
            return frozenset({local.public_key_hex()}), [
                f"no public key pinned: signatures checked against the local signing key "
                f"{local.public_key_hex()}; pin it ([audit] public_key or --public-key) "
                "to verify on another machine"
            ]
        return frozenset(), [
            "NO PUBLIC KEY PINNED and no local signing key: checkpoint signatures are "
            "checked only against the keys they name themselves, so anyone who can "
            "write the store can forge them. Pin the key: --public-key or [audit] public_key."
        ]

    # -- checkpoints, retention, erasure -------------------------------------------

    def signer(self) -> Signer:
        """The checkpoint signing key (created on first use; never in the store)."""
        if self._signer is None:
            if self.config.signer:
                self._signer = load_signer_plugin(self.config.signer)
            else:
                signer = load_signer(self.config.signing_key, SinkConfig.parse(self.sink.url))
                assert signer is not None
                self._signer = signer
        return self._signer

    def _signed(
        self, *, tenant: str, kind: str, seq: int, hash_: str, info: Mapping[str, Any]
    ) -> Checkpoint:
        signer = self.signer()
        unsigned = Checkpoint(
            tenant=tenant,
            kind=kind,
            seq=seq,
            hash=hash_,
            created_at=_now(),
            info=dict(info),
            public_key=signer.public_key_hex(),
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
            signature=sign(signer, unsigned.payload()),
        )

    def public_key(self) -> str:
        """Hex of the Ed25519 public key checkpoints are signed with (pin it for verify)."""
        return self.signer().public_key_hex()

    def _publish(self, cps: list[Checkpoint]) -> None:
        errors = []
        for w in self.witnesses:
            for cp in cps:
                try:
                    w.publish(cp)
                except Exception as exc:
                    errors.append(f"{w.url}: {exc}")
                    break
        if errors:
            raise AuditUnavailable("checkpoint not published to witness " + "; ".join(errors))

    def _registry(self) -> int:
        """Sign a new tenant registry if the store's tenants changed; its version."""
        regs = [c for c in self.sink.checkpoints(REGISTRY_TENANT) if c.kind == "registry"]
        newest = max(regs, key=lambda c: c.seq) if regs else None
        tenants = sorted(self.sink.tenants())
        if newest is not None and sorted(newest.info.get("tenants", ())) == tenants:
            return newest.seq
        version = (newest.seq if newest else 0) + 1
        digest = hashlib.sha256(json.dumps(tenants).encode("utf-8")).hexdigest()
        reg = self._signed(
            tenant=REGISTRY_TENANT,
            kind="registry",
            seq=version,
            hash_=digest,
            info={"tenants": tenants},
        )
        self.sink.add_checkpoint(reg)
        self._publish([reg])
        return version

    def checkpoint(self, tenant: str | None = None) -> list[Checkpoint]:
        """Sign the current head of each tenant's chain (or one tenant's), and the
        tenant registry; store them and publish them to every witness."""
        with self._sealing:
            return self._checkpoint([tenant] if tenant is not None else self.sink.tenants())

    def _checkpoint(self, tenants: list[str]) -> list[Checkpoint]:
        version = self._registry()
        out = []
        for t in tenants:
            head = self.sink.chain_head(t)
            if head is None:
                continue
            cp = self._signed(
                tenant=t, kind="checkpoint", seq=head[0], hash_=head[1], info={"registry": version}
            )
            self.sink.add_checkpoint(cp)
            self._sealed[t] = max(self._sealed.get(t, 0), head[0])
            out.append(cp)
        self._publish(out)
        return out

    def _auto_checkpoint(self, tenants: list[str]) -> None:
        """Best effort, never blocking a caller whose record is already durable."""
        if not self._sealing.acquire(blocking=False):
            return  # another thread is signing right now
        try:
            self._checkpoint(tenants)
        except Exception as exc:
            # Back off for another ``checkpoint_every`` records (a down witness must not
            # cost every call a failed attempt); close() tries once more.
            for t in tenants:
                self._sealed[t] = max(self._sealed.get(t, 0), self._appended.get(t, 0))
                self._retry.add(t)
            _log.warning("automatic audit checkpoint failed: %s", exc)
        else:
            self._retry.difference_update(tenants)
        finally:
            self._sealing.release()

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
        self._publish([tomb])
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

    def erase_user(
        self, user: str, *, tenant: str | None = None, aliases: Iterable[str] = ()
    ) -> list[EraseResult]:
        """GDPR erasure: remove ``args`` and the user id from every record of ``user``.

        ``user`` is matched as an identity (DESIGN.md 2.8): records whose user id is
        ``user`` spelled any way (case, spaces, compatibility forms) or one of
        ``aliases`` (the other ids the ``veto users`` table knows the person by) are
        erased. For each affected tenant and stored spelling, first records the erasure
        (subject named only by its keyed digest), then nulls the data in place; the
        chain still verifies because it covers ``args_digest`` and ``user_digest``, not
        the values. The store's files are compacted so the erased bytes are gone.
        """
        matches = subject_matcher(user, aliases)
        out = []
        for t in [tenant] if tenant is not None else self.sink.tenants():
            spellings = sorted(
                {
                    u
                    for s in self.sink.iter_chain(t)
                    if (u := s.record.principal.user) is not None and matches(u)
                }
            )
            for spelling in spellings:
                n = self.sink.count_user(t, spelling)
                if n == 0:
                    continue
                key = self.sink.tenant_key(t)
                dig = user_digest(key, spelling)
                ev = self.record_event(
                    tenant=t,
                    tool=ERASE_TOOL,
                    outcome="erased",
                    args={"user_digest": dig, "records": n},
                    reasons=(f"erasure of a data subject's personal data from {n} records",),
                )
                erased = self.sink.erase_user(t, spelling, ev.seq, args_mac(key, None))
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

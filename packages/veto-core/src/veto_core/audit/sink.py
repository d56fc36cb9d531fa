"""The storage contract every audit sink implements, and the values it exchanges.

A sink is a plugin: it answers the ``veto_audit_sinks(config)`` hook for its URL
scheme. The chain arithmetic (``seal``) and verification live outside the sinks,
so every sink hashes and checks records identically; a sink only has to store
rows, serialize chain appends per tenant, and commit durably.
"""

from __future__ import annotations

import abc
import datetime as _dt
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from veto_core.audit.errors import CorruptRecord
from veto_core.audit.record import (
    AuditRecord,
    SealedRecord,
    principal_to_dict,
    ts_from_us,
    ts_to_us,
)

#: The environment variable naming the default store (``veto`` commands, the server).
ENV_DB = "VETO_DB"


def default_audit_url() -> str:
    """``$VETO_DB`` if set, else ``~/.veto/veto.db`` (here, not in ``audit.log``: the
    approval store and ``veto approvals list`` need it without the audit log)."""
    env = os.environ.get(ENV_DB)
    if env:
        return env
    return str(Path.home() / ".veto" / "veto.db")


if TYPE_CHECKING:
    from veto_core.audit.pending import PendingRecord
    from veto_core.storage import Dialect

__all__ = [
    "AuditQuery",
    "AuditSink",
    "Checkpoint",
    "PolicyRevision",
    "SinkConfig",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class SinkConfig:
    """A parsed audit URL: ``sqlite:///path``, ``postgresql://...``, ``jsonl:///path``."""

    url: str
    scheme: str
    options: Mapping[str, str] = field(default_factory=dict)
    create: bool = True
    """False: open an existing store only (``AuditStoreMissing`` otherwise); verify and
    the other read commands never create the store they were asked to inspect."""
    durability: str = "fsync"
    """``fsync``: a commit is on stable storage when it returns; ``os``: handed to the
    OS (survives a crash of the process, not a power loss). See ``AuditConfig``."""

    @classmethod
    def parse(cls, url: str, *, create: bool = True, durability: str = "fsync") -> SinkConfig:
        if durability not in ("fsync", "os"):
            raise ValueError(f"audit durability must be 'fsync' or 'os', got {durability!r}")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("", "file") or (len(scheme) == 1 and url[1:2] == ":"):
            # A plain path (or a Windows drive letter): SQLite.
            return cls(url=url, scheme="sqlite", options={}, create=create, durability=durability)
        if scheme == "postgres":
            scheme = "postgresql"
        return cls(
            url=url,
            scheme=scheme,
            options=dict(parse_qsl(parts.query)),
            create=create,
            durability=durability,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    """A signed statement "tenant's chain had ``hash`` at ``seq``".

    ``kind="tombstone"``: records up to ``seq`` were purged; the remaining chain
    starts after it. ``info`` says why (retention cutoff, number deleted).
    """

    tenant: str
    kind: str
    seq: int
    hash: str
    created_at: _dt.datetime
    info: Mapping[str, Any]
    public_key: str
    signature: str

    def payload(self) -> dict[str, Any]:
        """What the signature covers."""
        return {
            "tenant": self.tenant,
            "kind": self.kind,
            "seq": self.seq,
            "hash": self.hash,
            "created_at": ts_to_us(self.created_at),
            "info": dict(self.info),
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.payload()
        d["created_at"] = self.created_at.isoformat()
        d["public_key"] = self.public_key
        d["signature"] = self.signature
        return d


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyRevision:
    revision: str
    name: str
    content: str
    source: str
    first_seen: _dt.datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditQuery:
    """Filters for :meth:`AuditLog.query`; ``None`` means "any".

    ``tenant=None`` searches every tenant (operators only: the dashboard always
    passes the viewer's tenant). ``text`` is a case-insensitive substring of any
    reason. Results are ordered by time (then tenant, seq), oldest first unless
    ``newest_first``.
    """

    tenant: str | None = None
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    tool: str | None = None
    outcome: str | None = None
    effect: str | None = None
    rule_id: str | None = None
    agent: str | None = None
    user: str | None = None
    run_id: str | None = None
    text: str | None = None
    #: Only calls let through although shadow mode would have blocked them (outcome shadow-*).
    shadow: bool = False
    limit: int | None = None
    offset: int = 0
    newest_first: bool = False

    def matches(self, r: AuditRecord) -> bool:
        """The reference semantics of the filters (sinks push them down to SQL)."""
        if self.tenant is not None and r.tenant != self.tenant:
            return False
        if self.since is not None and r.ts < self.since:
            return False
        if self.until is not None and r.ts >= self.until:
            return False
        if self.tool is not None and r.tool != self.tool:
            return False
        if self.outcome is not None and r.outcome != self.outcome:
            return False
        if self.effect is not None and r.effect != self.effect:
            return False
        if self.shadow and not r.outcome.startswith("shadow-"):
            return False
        if self.rule_id is not None and self.rule_id not in r.rule_ids:
            return False
        if self.agent is not None and r.principal.agent != self.agent:
            return False
        if self.user is not None and r.principal.user != self.user:
            return False
        if self.run_id is not None and r.run_id != self.run_id:
            return False
        if self.text is not None:
            needle = self.text.casefold()
            if not any(needle in reason.casefold() for reason in r.reasons):
                return False
        return True


class AuditSink(abc.ABC):
    """Storage for audit records, chain heads, keys, checkpoints and policy revisions.

    Every method raises :class:`~veto_core.audit.errors.AuditUnavailable` on a
    storage failure; none swallows an error.
    """

    url: str
    scheme: str

    @abc.abstractmethod
    def tenant_key(self, tenant: str) -> bytes:
        """The tenant's HMAC key, created (durably) on first use."""

    @abc.abstractmethod
    def append(self, batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        """Seal (``PendingRecord.seal``) and durably commit ``batch`` in one transaction.

        Must serialize chain appends per tenant across threads *and* processes,
        and return only once the records are on stable storage.
        """

    @abc.abstractmethod
    def iter_chain(self, tenant: str) -> Iterator[SealedRecord]:
        """Every stored record of ``tenant``, by ``seq``."""

    @abc.abstractmethod
    def chain_head(self, tenant: str) -> tuple[int, str] | None:
        """The (seq, hash) the store recorded as the chain's last link."""

    @abc.abstractmethod
    def tenants(self) -> list[str]: ...

    @abc.abstractmethod
    def query(self, q: AuditQuery) -> Iterator[AuditRecord]:
        """Records matching ``q`` (streamed: constant memory)."""

    @abc.abstractmethod
    def checkpoints(self, tenant: str) -> list[Checkpoint]: ...

    @abc.abstractmethod
    def add_checkpoint(self, cp: Checkpoint) -> None: ...

    @abc.abstractmethod
    def purge_through(self, tenant: str, seq: int, tombstone: Checkpoint) -> int:
        """Delete records ``<= seq`` and store ``tombstone`` in one transaction."""

    @abc.abstractmethod
    def count_user(self, tenant: str, user: str) -> int: ...

    @abc.abstractmethod
    def erase_user(self, tenant: str, user: str, before_seq: int, erased_mac: str) -> int:
        """Null ``args`` and ``principal.user`` of the user's records with seq < ``before_seq``.

        ``erased_mac`` is the ``args_mac`` of erased (``null``) args. The old bytes
        must not survive in the store's files.
        """

    def legacy_signing_seed(self) -> bytes | None:
        """A checkpoint signing seed that older versions kept in the store itself.

        ``AuditLog`` moves it to a key file outside the store and then calls
        :meth:`drop_legacy_signing_seed`: a key kept next to the records lets
        whoever can write them re-sign a rewritten chain.
        """
        return None

    def drop_legacy_signing_seed(self) -> None:
        """Delete the seed :meth:`legacy_signing_seed` returned (durably)."""
        return None

    @abc.abstractmethod
    def store_policy_revision(self, rev: PolicyRevision) -> None:
        """Insert if absent (a revision is immutable: its id is its content hash)."""

    @abc.abstractmethod
    def policy_revisions(self) -> list[PolicyRevision]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


# --------------------------------------------------------------------------- row mapping
# SQL sinks store one column per field so that every stored value is either
# hashed, MACed, or part of the chain bookkeeping: editing any of them is detected.

COLUMNS: tuple[str, ...] = (
    "tenant",
    "seq",
    "id",
    "ts_us",
    "env",
    "principal",
    "framework",
    "run_id",
    "tool",
    "tool_call_id",
    "args",
    "args_digest",
    "effect",
    "outcome",
    "rule_ids",
    "reasons",
    "errors",
    "policy_name",
    "policy_revision",
    "approval",
    "latency_us",
    "prev_hash",
    "hash",
    "user_digest",
    "args_mac",
)


def checkpoint_row(cp: Checkpoint) -> tuple[Any, ...]:
    """``(tenant, kind, seq, hash, created_us, info, public_key, signature)``."""
    return (
        cp.tenant,
        cp.kind,
        cp.seq,
        cp.hash,
        ts_to_us(cp.created_at),
        _dumps(dict(cp.info)),
        cp.public_key,
        cp.signature,
    )


def checkpoint_from_row(r: Sequence[Any]) -> Checkpoint:
    import json

    return Checkpoint(
        tenant=r[0],
        kind=r[1],
        seq=int(r[2]),
        hash=r[3],
        created_at=ts_from_us(int(r[4])),
        info=json.loads(r[5]),
        public_key=r[6],
        signature=r[7],
    )


def policy_revision_from_row(r: Sequence[Any]) -> PolicyRevision:
    """From ``(revision, name, content, source, first_seen_us)``."""
    return PolicyRevision(
        revision=r[0], name=r[1], content=r[2], source=r[3], first_seen=ts_from_us(int(r[4]))
    )


SELECT_RECORDS = f"SELECT {', '.join(COLUMNS)} FROM audit_records"


def query_sql(q: AuditQuery, dialect: Dialect) -> tuple[str, list[Any]]:
    """The ``SELECT`` for ``q`` in ``dialect`` (filters, order, paging) and its
    parameters: the SQL form of :meth:`AuditQuery.matches`, for every SQL sink."""
    p = dialect.placeholder
    where: list[str] = []
    params: list[Any] = []

    def add(clause: str, value: Any) -> None:
        where.append(clause)
        params.append(value)

    if q.tenant is not None:
        add(f"tenant = {p}", q.tenant)
    if q.since is not None:
        add(f"ts_us >= {p}", ts_to_us(q.since))
    if q.until is not None:
        add(f"ts_us < {p}", ts_to_us(q.until))
    for col, val in (
        ("tool", q.tool),
        ("outcome", q.outcome),
        ("effect", q.effect),
        ("run_id", q.run_id),
    ):
        if val is not None:
            add(f"{col} = {p}", val)
    if q.shadow:
        where.append(f"outcome LIKE 'shadow-{dialect.percent}'")
    if q.agent is not None:
        add(f"{dialect.json_text('principal', 'agent')} = {p}", q.agent)
    if q.user is not None:
        add(f"{dialect.json_text('principal', 'user')} = {p}", q.user)
    if q.rule_id is not None:
        add(dialect.json_array_has("rule_ids"), q.rule_id)
    if q.text is not None:
        # lower() folds ASCII only; matches() is the exact (casefold) check.
        add(dialect.json_array_any_contains("reasons"), q.text)
    sql = SELECT_RECORDS
    if where:
        sql += " WHERE " + " AND ".join(where)
    order = "DESC" if q.newest_first else "ASC"
    sql += f" ORDER BY ts_us {order}, tenant {order}, seq {order}"
    page, page_params = dialect.limit_offset(q.limit, q.offset)
    return sql + page, params + page_params


def _dumps(value: Any) -> str:
    from veto_core.audit.record import canonical_json

    return canonical_json(value).decode("utf-8")


def to_row(s: SealedRecord) -> tuple[Any, ...]:
    r = s.record
    return (
        r.tenant,
        r.seq,
        r.id,
        ts_to_us(r.ts),
        r.env,
        _dumps(principal_to_dict(r.principal)),
        r.framework,
        r.run_id,
        r.tool,
        r.tool_call_id,
        None if r.args is None else _dumps(r.args),
        r.args_digest,
        r.effect,
        r.outcome,
        _dumps(list(r.rule_ids)),
        _dumps(list(r.reasons)),
        _dumps(list(r.errors)),
        r.policy_name,
        r.policy_revision,
        None if r.approval is None else _dumps(r.approval.to_dict()),
        r.latency_us,
        r.prev_hash,
        r.hash,
        s.user_digest,
        s.args_mac,
    )


def from_row(row: Sequence[Any]) -> SealedRecord:
    """Decode a stored row; a row that does not decode is reported as corrupt (tampered)."""
    try:
        return _from_row(row)
    except Exception as exc:
        tenant = row[0] if len(row) > 0 else None
        seq = row[1] if len(row) > 1 else None
        rid = row[2] if len(row) > 2 else None
        raise CorruptRecord(
            str(tenant), seq, str(rid), f"undecodable stored record: {exc!r}"
        ) from exc


def _from_row(row: Sequence[Any]) -> SealedRecord:
    import json

    from veto_core.audit.record import ApprovalInfo, principal_from_dict

    (
        tenant,
        seq,
        id_,
        ts_us,
        env,
        principal,
        framework,
        run_id,
        tool,
        tool_call_id,
        args,
        args_digest,
        effect,
        outcome,
        rule_ids,
        reasons,
        errors,
        policy_name,
        policy_revision,
        approval,
        latency_us,
        prev_hash,
        hash_,
        user_digest,
        args_mac,
    ) = row
    rec = AuditRecord(
        id=id_,
        seq=int(seq),
        ts=ts_from_us(int(ts_us)),
        tenant=tenant,
        env=env,
        principal=principal_from_dict(json.loads(principal)),
        framework=framework,
        run_id=run_id,
        tool=tool,
        tool_call_id=tool_call_id,
        args=None if args is None else json.loads(args),
        args_digest=args_digest,
        effect=effect,
        outcome=outcome,
        rule_ids=tuple(json.loads(rule_ids)),
        reasons=tuple(json.loads(reasons)),
        errors=tuple(json.loads(errors)),
        policy_name=policy_name,
        policy_revision=policy_revision,
        approval=None if approval is None else ApprovalInfo.from_dict(json.loads(approval)),
        latency_us=int(latency_us),
        prev_hash=prev_hash,
        hash=hash_,
    )
    return SealedRecord(record=rec, user_digest=user_digest, args_mac=args_mac)

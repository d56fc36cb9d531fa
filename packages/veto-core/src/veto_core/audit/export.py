"""Streaming exports (JSONL, CSV, OCSF API Activity) and the SOC 2 evidence pack.

OCSF mapping (API Activity, ``class_uid`` 6003, category 6 "Application Activity"),
one event per audit record:

==========================  ====================================================
OCSF attribute              from the audit record
==========================  ====================================================
``activity_id``/``_name``   99 "Other" / the outcome (a tool call is not CRUD)
``type_uid``                600399
``time``                    ``ts`` in epoch milliseconds (``ts`` µs kept in unmapped)
``status_id``/``status``    1 Success (allowed, approved, shadow), 2 Failure (denied,
                            rejected, expired, cancelled, error), 0 Unknown otherwise /
                            the outcome
``disposition_id``          1 Allowed / 2 Blocked / 0 Unknown, from ``effect``+outcome
``severity_id``             1 Informational (allowed) / 3 Medium (blocked) / 2 Low
``message``                 ``reasons`` joined with "; "
``actor.user``              ``principal.user`` (``uid`` and ``name``)
``actor.app_name``          ``principal.agent``; ``actor.session.uid``: ``principal.session``
``actor.invoked_by``        ``framework``
``api.operation``           ``tool``; ``api.request.uid``: ``tool_call_id``
``api.service.name``        ``policy_name``
``resources[0]``            ``{"type": "tool", "name": tool, "data": args}``
``metadata``                ``uid`` = record id, ``correlation_uid`` = ``run_id``,
                            ``tenant_uid`` = tenant, ``sequence`` = seq, product Veto
``unmapped``                env, effect, rule_ids, errors, policy_revision, args_digest,
                            approval, latency_us, prev_hash, hash, roles
==========================  ====================================================
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from veto_core.audit.log import AuditLog
from veto_core.audit.record import AuditRecord, canonical_str, ts_to_iso, ts_to_us
from veto_core.audit.sink import AuditQuery

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_FORMATS",
    "EvidenceResult",
    "build_evidence_pack",
    "export_records",
    "to_ocsf",
]

EXPORT_FORMATS = ("jsonl", "csv", "ocsf")
OCSF_VERSION = "1.3.0"

_SUCCESS = {"allowed", "approved", "shadow-denied", "shadow", "approval_consumed"}
_FAILURE = {"denied", "rejected", "expired", "cancelled", "error"}


def to_ocsf(r: AuditRecord) -> dict[str, Any]:
    """One audit record as an OCSF API Activity event (see the module docstring)."""
    status_id = 1 if r.outcome in _SUCCESS else 2 if r.outcome in _FAILURE else 0
    if r.effect == "allow" or r.outcome in ("allowed", "approved"):
        disposition_id, disposition = 1, "Allowed"
    elif r.effect == "deny" or r.outcome in _FAILURE:
        disposition_id, disposition = 2, "Blocked"
    else:
        disposition_id, disposition = 0, "Unknown"
    p = r.principal
    return {
        "category_uid": 6,
        "category_name": "Application Activity",
        "class_uid": 6003,
        "class_name": "API Activity",
        "activity_id": 99,
        "activity_name": r.outcome,
        "type_uid": 600399,
        "type_name": "API Activity: Other",
        "time": ts_to_us(r.ts) // 1000,
        "severity_id": 1 if disposition_id == 1 else 3 if disposition_id == 2 else 2,
        "status_id": status_id,
        "status": r.outcome,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "message": "; ".join(r.reasons),
        "actor": {
            "user": {"uid": p.user, "name": p.user},
            "app_name": p.agent,
            "session": {"uid": p.session},
            "invoked_by": r.framework,
        },
        "api": {
            "operation": r.tool,
            "request": {"uid": r.tool_call_id},
            "service": {"name": r.policy_name},
        },
        "resources": [{"type": "tool", "name": r.tool, "data": r.args}],
        "metadata": {
            "version": OCSF_VERSION,
            "uid": r.id,
            "correlation_uid": r.run_id,
            "tenant_uid": r.tenant,
            "sequence": r.seq,
            "log_name": "veto.audit",
            "product": {"name": "Veto", "vendor_name": "Veto", "feature": {"name": "audit"}},
        },
        "unmapped": {
            "env": r.env,
            "effect": r.effect,
            "rule_ids": list(r.rule_ids),
            "errors": list(r.errors),
            "policy_revision": r.policy_revision,
            "args_digest": r.args_digest,
            "approval": None if r.approval is None else r.approval.to_dict(),
            "latency_us": r.latency_us,
            "prev_hash": r.prev_hash,
            "hash": r.hash,
            "roles": list(p.roles),
            "ts": ts_to_iso(r.ts),
        },
    }


CSV_COLUMNS = [
    "id",
    "seq",
    "ts",
    "tenant",
    "env",
    "agent",
    "roles",
    "user",
    "session",
    "framework",
    "run_id",
    "tool",
    "tool_call_id",
    "effect",
    "outcome",
    "rule_ids",
    "reasons",
    "errors",
    "policy_name",
    "policy_revision",
    "approval_id",
    "approvers",
    "approval_channel",
    "approval_decided_at",
    "latency_us",
    "args",
    "args_digest",
    "prev_hash",
    "hash",
]


def _csv_safe(value: Any) -> str:
    """Stringify; neutralize spreadsheet formulas (CSV injection) with a leading quote."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if s[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + s
    return s


def _csv_row(r: AuditRecord) -> list[str]:
    a = r.approval
    vals: list[Any] = [
        r.id, r.seq, ts_to_iso(r.ts), r.tenant, r.env, r.principal.agent,
        ";".join(r.principal.roles), r.principal.user, r.principal.session, r.framework,
        r.run_id, r.tool, r.tool_call_id, r.effect, r.outcome, ";".join(r.rule_ids),
        " | ".join(r.reasons), " | ".join(r.errors), r.policy_name, r.policy_revision,
        a.id if a else None, ";".join(a.approvers) if a else None, a.channel if a else None,
        ts_to_iso(a.decided_at) if a and a.decided_at else None, r.latency_us,
        None if r.args is None else canonical_str(r.args), r.args_digest, r.prev_hash, r.hash,
    ]  # fmt: skip
    return [_csv_safe(v) for v in vals]


def export_records(records: Iterable[AuditRecord], fmt: str, out: IO[str]) -> int:
    """Write ``records`` to ``out`` one at a time (constant memory). Returns the count."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    n = 0
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(CSV_COLUMNS)
        for r in records:
            w.writerow(_csv_row(r))
            n += 1
        return n
    encode = (lambda r: r.to_dict()) if fmt == "jsonl" else to_ocsf
    for r in records:
        out.write(json.dumps(encode(r), ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n


# --------------------------------------------------------------------------- evidence pack


@dataclass(frozen=True, kw_only=True, slots=True)
class EvidenceResult:
    path: Path
    records: int
    chain_ok: bool
    policy_revisions: int
    approvals: int


_README = """# Veto audit evidence pack

Generated {generated} from `{store}` for tenant(s) {tenants},
period {since} .. {until} (UTC).

| file | what it shows |
| --- | --- |
| `records.jsonl` | every audit record in the period, one JSON object a line (fields of DESIGN.md 4: who, what, where, which policy revision and rules, outcome, when, latency, hash chain links). Arguments appear as stored: after policy redaction (`[REDACTED]`) and erasure (`null`). |
| `verification.json` / `verification.txt` | result of verifying each tenant's **whole** hash chain, not only the period: `hash = SHA-256(prev_hash ‖ canonical JSON of the record without args)`, sequence continuity, per-record MACs, signed checkpoints and tombstones. `ok: true` means no record was edited, deleted, reordered or inserted. |
| `checkpoints.json` | Ed25519-signed checkpoints and retention tombstones (public key included); a tombstone marks where purged records ended so the remaining chain verifies. |
| `policies/index.json`, `policies/<revision>.txt` | every policy revision in force during the period (referenced by a record, or first seen in the period): its text, source and SHA-256 of the text. A record's `policy_revision` names the exact policy that decided it. |
| `approvals_summary.json` | approval requests seen in the period, their final state, approvers and decision times, and totals by outcome. |
| `manifest.json` | SHA-256 of every other file in this pack. |

Re-run the check yourself: `veto audit verify --db {store}`.
"""


def build_evidence_pack(
    log: AuditLog,
    out_path: Path,
    *,
    since: _dt.datetime | None = None,
    until: _dt.datetime | None = None,
    tenant: str | None = None,
    public_key: str | None = None,
) -> EvidenceResult:
    """Write a SOC 2 evidence pack (zip) for the period; records are streamed."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    q = AuditQuery(tenant=tenant, since=since, until=until)
    digests: dict[str, str] = {}
    revisions_used: Counter[str] = Counter()
    approvals: dict[str, dict[str, Any]] = {}
    outcomes: Counter[str] = Counter()
    count = 0
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        h = hashlib.sha256()
        with z.open("records.jsonl", "w") as raw:
            for r in log.iter_records(q):
                line = (json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=True) + "\n").encode()
                raw.write(line)
                h.update(line)
                count += 1
                outcomes[r.outcome] += 1
                if r.policy_revision:
                    revisions_used[r.policy_revision] += 1
                if r.approval is not None:
                    a = approvals.setdefault(
                        r.approval.id,
                        {"id": r.approval.id, "tenant": r.tenant, "tool": r.tool,
                         "run_id": r.run_id, "tool_call_id": r.tool_call_id, "events": 0},
                    )  # fmt: skip
                    a["events"] += 1
                    a["last_outcome"] = r.outcome
                    a["approvers"] = list(r.approval.approvers)
                    a["channel"] = r.approval.channel
                    a["decided_at"] = (
                        ts_to_iso(r.approval.decided_at) if r.approval.decided_at else None
                    )
        digests["records.jsonl"] = h.hexdigest()

        def put(name: str, data: str) -> None:
            b = data.encode("utf-8")
            digests[name] = hashlib.sha256(b).hexdigest()
            z.writestr(name, b)

        report = log.verify(tenant, public_key=public_key)
        put("verification.json", json.dumps(report.to_dict(), indent=2, sort_keys=True))
        lines = [f"overall: {'OK' if report.ok else 'BROKEN'}"]
        for t in report.tenants:
            lines.append(
                f"tenant {t.tenant}: {'OK' if t.ok else 'BROKEN'}; {t.records} records "
                f"(seq {t.first_seq}..{t.last_seq}, anchored after seq {t.anchor_seq}); "
                f"{t.checkpoints} signed checkpoints"
            )
            lines.extend(f"  broken: {b}" for b in t.problems)
        put("verification.txt", "\n".join(lines) + "\n")
        cps = [
            cp.to_dict()
            for t in ([tenant] if tenant is not None else log.tenants())
            for cp in log.sink.checkpoints(t)
        ]
        put("checkpoints.json", json.dumps(cps, indent=2, sort_keys=True))

        index = []
        stored = {p.revision: p for p in log.policy_revisions()}
        for rev_id, p in stored.items():
            in_period = (since is None or p.first_seen >= since) and (
                until is None or p.first_seen < until
            )
            if rev_id not in revisions_used and not in_period:
                continue
            put(f"policies/{rev_id}.txt", p.content)
            index.append(
                {"revision": rev_id, "name": p.name, "source": p.source,
                 "first_seen": ts_to_iso(p.first_seen), "records": revisions_used.get(rev_id, 0),
                 "content_sha256": hashlib.sha256(p.content.encode()).hexdigest(),
                 "content_file": f"policies/{rev_id}.txt"}
            )  # fmt: skip
        for rev_id in sorted(set(revisions_used) - set(stored)):
            index.append({"revision": rev_id, "records": revisions_used[rev_id],
                          "content_file": None, "note": "content not stored"})  # fmt: skip
        put("policies/index.json", json.dumps(index, indent=2, sort_keys=True))

        finals = Counter(a.get("last_outcome", "?") for a in approvals.values())
        put(
            "approvals_summary.json",
            json.dumps(
                {"requests": len(approvals), "by_final_outcome": dict(finals),
                 "records_by_outcome": dict(outcomes), "approvals": list(approvals.values())},
                indent=2, sort_keys=True,
            ),
        )  # fmt: skip
        put(
            "README.md",
            _README.format(
                generated=ts_to_iso(_dt.datetime.now(_dt.UTC)),
                store=log.url,
                tenants=tenant or "all",
                since=ts_to_iso(since) if since else "beginning",
                until=ts_to_iso(until) if until else "now",
            ),
        )
        z.writestr("manifest.json", json.dumps(digests, indent=2, sort_keys=True))
    return EvidenceResult(
        path=out_path,
        records=count,
        chain_ok=report.ok,
        policy_revisions=len(index),
        approvals=len(approvals),
    )


def iter_text(records: Iterable[AuditRecord], fmt: str) -> Iterator[str]:
    """Exported text chunk by chunk (for HTTP streaming responses in the dashboard)."""
    for r in records:
        buf = io.StringIO()
        if fmt == "csv":
            csv.writer(buf).writerow(_csv_row(r))
        else:
            export_records([r], fmt, buf)
        yield buf.getvalue()

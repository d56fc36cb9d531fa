"""Chain verification: one pass over a tenant's records, naming the first broken link."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

from veto_core.audit.errors import CorruptRecord
from veto_core.audit.record import (
    GENESIS_HASH,
    SealedRecord,
    args_mac,
    compute_hash,
    user_digest,
)
from veto_core.audit.signing import verify_signature
from veto_core.audit.sink import Checkpoint, PolicyRevision

__all__ = [
    "REGISTRY_TENANT",
    "BrokenLink",
    "TenantVerification",
    "VerifyReport",
    "verify_chain",
    "verify_store",
]

REGISTRY_TENANT = ""
"""Where the signed tenant registry is kept among the checkpoints (no tenant is named "")."""

MAX_PROBLEMS = 1000
ERASE_TOOL = "veto.audit.erase"
PURGE_TOOL = "veto.audit.purge"


@dataclass(frozen=True, kw_only=True, slots=True)
class BrokenLink:
    tenant: str
    seq: int | None
    record_id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"record seq {self.seq}" if self.seq is not None else "chain"
        rid = f" (id {self.record_id})" if self.record_id else ""
        return f"tenant {self.tenant!r}: {where}{rid}: {self.reason}"


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantVerification:
    tenant: str
    ok: bool
    records: int
    first_seq: int | None
    last_seq: int | None
    anchor_seq: int
    checkpoints: int
    broken: BrokenLink | None
    problems: tuple[BrokenLink, ...] = ()
    """Every broken link found (capped), in chain order; ``broken`` is the first."""

    def to_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "ok": self.ok,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "anchor_seq": self.anchor_seq,
            "checkpoints": self.checkpoints,
            "broken": None
            if self.broken is None
            else {
                "seq": self.broken.seq,
                "id": self.broken.record_id,
                "reason": self.broken.reason,
            },
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifyReport:
    ok: bool
    tenants: tuple[TenantVerification, ...]
    problems: tuple[BrokenLink, ...] = ()
    """Store-wide problems: forged or rolled-back tenant registry, edited policy texts."""
    warnings: tuple[str, ...] = ()
    """What this verification could not rule out (no pinned key, no witness)."""
    pinned_keys: tuple[str, ...] = ()

    @property
    def first_broken(self) -> BrokenLink | None:
        for t in self.tenants:
            if t.broken is not None:
                return t.broken
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "tenants": [t.to_dict() for t in self.tenants],
            "problems": [str(p) for p in self.problems],
            "warnings": list(self.warnings),
            "pinned_keys": list(self.pinned_keys),
        }


def verify_chain(
    tenant: str,
    rows: Iterator[SealedRecord],
    *,
    key: bytes,
    head: tuple[int, str] | None,
    checkpoints: list[Checkpoint],
    public_key: str | Collection[str] | None = None,
    witnessed: Sequence[Checkpoint] = (),
) -> TenantVerification:
    """Check every link of one tenant's chain.

    The chain starts at genesis, or right after the newest tombstone (a purge).
    Each record must: carry the next ``seq``; link to the previous hash; re-hash
    to its stored ``hash``; have stored ``args`` matching ``args_mac`` and a user
    id matching ``user_digest``. Erased records must be covered by a later
    erasure record for the same data subject. The last record must match the
    recorded chain head, and every signed checkpoint must match its record,
    as must every head a witness saw (signed by a pinned key).
    """
    pinned = (public_key,) if isinstance(public_key, str) else tuple(public_key or ())
    count = 0
    first: int | None = None
    last: int | None = None
    found: list[BrokenLink] = []

    def note(seq: int | None, rid: str | None, reason: str) -> None:
        if len(found) < MAX_PROBLEMS:
            found.append(BrokenLink(tenant=tenant, seq=seq, record_id=rid, reason=reason))

    def result(anchor: int) -> TenantVerification:
        return TenantVerification(
            tenant=tenant,
            ok=not found,
            records=count,
            first_seq=first,
            last_seq=last,
            anchor_seq=anchor,
            checkpoints=len(checkpoints),
            broken=found[0] if found else None,
            problems=tuple(found),
        )

    # Signatures first: a forged tombstone must not move the anchor.
    for cp in checkpoints:
        bad = verify_signature(cp, pinned)
        if bad is not None:
            note(cp.seq, None, f"{cp.kind} at seq {cp.seq}: {bad}")
    seen: dict[int, Checkpoint] = {}  # witnessed heads by seq
    for cp in witnessed:
        bad = verify_signature(cp, pinned)
        if bad is not None:
            note(cp.seq, None, f"witnessed {cp.kind} at seq {cp.seq}: {bad}")
        elif cp.kind == "checkpoint":
            seen[cp.seq] = cp
    if found:
        return result(0)
    tombstones = [cp for cp in checkpoints if cp.kind == "tombstone"]
    anchor = max(tombstones, key=lambda c: c.seq) if tombstones else None
    expected_seq = (anchor.seq if anchor else 0) + 1
    prev_hash = anchor.hash if anchor else GENESIS_HASH
    anchor_seq = anchor.seq if anchor else 0
    at_seq: dict[int, Checkpoint] = {
        cp.seq: cp for cp in checkpoints if cp.kind == "checkpoint" and cp.seq > anchor_seq
    }
    erased: list[tuple[int, str, str | None]] = []  # (seq, id, user_digest) awaiting coverage
    erasures: list[tuple[int, str]] = []  # (seq of erasure record, subject digest)

    try:
        for s in rows:
            r = s.record
            problems: list[str] = []
            if r.seq != expected_seq:
                if r.seq > expected_seq:
                    missing = (
                        f"seq {expected_seq}"
                        if r.seq == expected_seq + 1
                        else f"seqs {expected_seq}..{r.seq - 1}"
                    )
                    problems.append(f"{missing} missing before it (deleted record)")
                else:
                    problems.append(f"expected seq {expected_seq} (duplicate or reordered record)")
            if r.tenant != tenant:
                problems.append(f"stored tenant {r.tenant!r} differs from its chain")
            if r.prev_hash != prev_hash:
                problems.append(
                    "prev_hash does not match the previous record's hash "
                    "(reordered, inserted or deleted record)"
                )
            if not hmac.compare_digest(compute_hash(r, s.user_digest), r.hash):
                problems.append("content does not match its hash (edited record)")
            if not hmac.compare_digest(args_mac(key, r.args), str(s.args_mac)):
                problems.append("stored args do not match their MAC (edited args)")
            if r.principal.user is not None:
                if s.user_digest != user_digest(key, r.principal.user):
                    problems.append("user id does not match its digest (edited user)")
            elif s.user_digest is not None or r.args is None:
                if s.user_digest is None:
                    problems.append("args erased without a data subject")
                erased.append((r.seq, r.id, s.user_digest))
            signed = at_seq.pop(r.seq, None)
            if signed is not None and signed.hash != r.hash:
                problems.append(f"does not match the signed checkpoint at seq {signed.seq}")
            w = seen.pop(r.seq, None)
            if w is not None and w.hash != r.hash:
                problems.append(
                    f"differs from the head a witness saw at seq {w.seq} (chain rewritten)"
                )
            if problems:
                note(r.seq, r.id, "; ".join(problems))
            elif r.tool == ERASE_TOOL and r.outcome == "erased" and r.args is not None:
                subject = r.args.get("user_digest")
                if isinstance(subject, str):
                    erasures.append((r.seq, subject))
            count += 1
            if first is None:
                first = r.seq
            last = r.seq
            expected_seq = r.seq + 1
            prev_hash = r.hash
    except CorruptRecord as exc:
        note(exc.seq if isinstance(exc.seq, int) else None, exc.record_id, str(exc))
        return result(anchor_seq)

    for seq, rid, dig in erased:
        if not any(eseq > seq and subject == dig for eseq, subject in erasures):
            note(seq, rid, "personal data removed without an erasure record")
    if at_seq:
        cp_seq = min(at_seq)
        note(
            cp_seq,
            None,
            f"signed checkpoint at seq {cp_seq} names a record that is missing "
            "(records deleted from the end)",
        )
    for seq in list(seen):
        if seq <= anchor_seq:
            del seen[seq]  # purged since; the tombstone (signature checked) covers it
    if seen:
        w_seq = max(seen)
        note(
            w_seq,
            None,
            f"a witness saw the chain at seq {w_seq} but the store ends at seq "
            f"{last if last is not None else anchor_seq} (records deleted from the end, "
            "head rewound)",
        )
    if head is not None:
        if last is None:
            if head[0] != anchor_seq:
                note(head[0], None, f"chain head says seq {head[0]} but no records remain")
        elif (head[0], head[1]) != (last, prev_hash):
            note(
                last,
                None,
                f"chain head is seq {head[0]} but the last record is seq {last} "
                "(records deleted from or appended to the end)",
            )
    elif last is not None:
        note(last, None, "records exist but the store has no chain head")
    return result(anchor_seq)


def _problem(tenant: str, reason: str, seq: int | None = None) -> BrokenLink:
    return BrokenLink(tenant=tenant, seq=seq, record_id=None, reason=reason)


def verify_store(
    results: list[TenantVerification],
    *,
    tenant: str | None,
    present: set[str],
    registries: list[Checkpoint],
    checkpoints: list[Checkpoint],
    witnessed: list[Checkpoint],
    policies: list[PolicyRevision],
    pinned: Collection[str],
    warnings: tuple[str, ...],
) -> VerifyReport:
    """The checks above single chains: vanished tenants, the signed tenant registry
    (not deleted, not rolled back), and stored policy texts against their revision."""
    problems: list[BrokenLink] = []
    regs: list[Checkpoint] = []
    for reg in (r for r in registries if r.kind == "registry"):
        bad = verify_signature(reg, pinned)
        if bad is not None:
            problems.append(_problem(tenant or "*", f"tenant registry v{reg.seq}: {bad}"))
        else:
            regs.append(reg)
    newest = max((r.seq for r in regs), default=0)
    # Every checkpoint names the registry version current when it was signed, and a
    # witness holds every registry: the newest one must still be in the store.
    required = max(
        [int(cp.info.get("registry", 0)) for cp in checkpoints if cp.kind == "checkpoint"]
        + [r.seq for r in witnessed if r.kind == "registry" and not verify_signature(r, pinned)],
        default=0,
    )
    if required > newest:
        problems.append(
            _problem(
                tenant or "*",
                f"signed tenant registry v{required} is missing (the store's newest is "
                f"v{newest}): registry deleted or rolled back",
            )
        )
    expected: set[str] = set()
    for r in regs:
        expected.update(str(t) for t in r.info.get("tenants", ()))
    for cp in witnessed:
        if not verify_signature(cp, pinned):
            expected.update(str(t) for t in cp.info.get("tenants", ()))
            if cp.kind != "registry":
                expected.add(cp.tenant)
    if tenant is not None:
        expected &= {tenant}
    out = list(results)
    for t in sorted(expected - present - {REGISTRY_TENANT}):
        link = _problem(
            t,
            "tenant is in the signed tenant registry or a witness, but its records, "
            "chain head and checkpoints are gone (tenant removed)",
        )
        out.append(
            TenantVerification(
                tenant=t,
                ok=False,
                records=0,
                first_seq=None,
                last_seq=None,
                anchor_seq=0,
                checkpoints=0,
                broken=link,
                problems=(link,),
            )
        )
    for p in policies:
        actual = hashlib.sha256(p.content.encode("utf-8")).hexdigest()
        if not hmac.compare_digest(actual, p.revision):
            problems.append(
                _problem(
                    tenant or "*",
                    f"stored text of policy revision {p.revision[:12]} ({p.name}) does not "
                    f"hash to its revision (edited policy text; it hashes to {actual[:12]})",
                )
            )
    ok = all(r.ok for r in out) and not problems
    return VerifyReport(
        ok=ok,
        tenants=tuple(out),
        problems=tuple(problems),
        warnings=warnings,
        pinned_keys=tuple(sorted(pinned)),
    )

"""Chain verification: one pass over a tenant's records, naming the first broken link."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
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
from veto_core.audit.sink import Checkpoint

__all__ = ["BrokenLink", "TenantVerification", "VerifyReport", "verify_chain"]

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

    @property
    def first_broken(self) -> BrokenLink | None:
        for t in self.tenants:
            if t.broken is not None:
                return t.broken
        return None

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "tenants": [t.to_dict() for t in self.tenants]}


def verify_chain(
    tenant: str,
    rows: Iterator[SealedRecord],
    *,
    key: bytes,
    head: tuple[int, str] | None,
    checkpoints: list[Checkpoint],
    public_key: str | None = None,
) -> TenantVerification:
    """Check every link of one tenant's chain.

    The chain starts at genesis, or right after the newest tombstone (a purge).
    Each record must: carry the next ``seq``; link to the previous hash; re-hash
    to its stored ``hash``; have stored ``args`` matching ``args_mac`` and a user
    id matching ``user_digest``. Erased records must be covered by a later
    erasure record for the same data subject. The last record must match the
    recorded chain head, and every signed checkpoint must match its record.
    """
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
        bad = verify_signature(cp, public_key)
        if bad is not None:
            note(cp.seq, None, f"{cp.kind} at seq {cp.seq}: {bad}")
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

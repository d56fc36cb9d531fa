"""Tamper evidence: any single stored field edited, a record deleted, reordered or
inserted, is caught by ``verify``, which names the record."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import call, decision

from veto_core.audit import ApprovalInfo, AuditLog, open_audit
from veto_core.audit.sink import COLUMNS
from veto_core.model import Effect


def _populate(log: AuditLog, n: int = 6) -> list[Any]:
    recs = []
    for i in range(n):
        recs.append(
            log.record_decision(
                call(
                    args={"i": i, "to": f"p{i}@example.com"},
                    user=f"user{i % 2}",
                    run_id=f"run{i}",
                    tool_call_id=f"c{i}",
                ),
                decision(
                    Effect.DENY if i % 3 == 0 else Effect.ALLOW,
                    rules=(f"rule{i}",),
                    reasons=(f"reason {i}",),
                    errors=("e",),
                ),
                env="prod",
                latency_us=10 + i,
                approval=ApprovalInfo(
                    id=f"ap{i}",
                    approvers=("alice",),
                    channel="slack",
                    decided_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
                ),
            )
        )
    log.record_decision(call(tenant="other"), decision(), env="prod")  # a second chain
    return recs


def _mutated(col: str, value: Any) -> Any:
    if col in ("seq", "ts_us", "latency_us"):
        return int(value) + 1_000
    if col == "principal":
        return value.replace('"agent":"bot"', '"agent":"evil-bot"')
    if col == "approval":
        return value.replace('"alice"', '"mallory"')
    if col in ("rule_ids", "reasons", "errors"):
        return value[:-1] + ',"x"]'
    if col == "args":
        return value.replace("example.com", "evil.com")
    if col == "user_digest":
        return "0" * 64
    return str(value) + "x"


@pytest.mark.parametrize("col", COLUMNS)
def test_editing_any_single_stored_field_is_detected(db_path: Path, col: str) -> None:
    log = open_audit(str(db_path))
    recs = _populate(log)
    assert log.verify().ok
    target = recs[3]
    con = sqlite3.connect(db_path)
    (value,) = con.execute(
        f"SELECT {col} FROM audit_records WHERE tenant = 'acme' AND seq = 4"
    ).fetchone()
    new = _mutated(col, value)
    assert new != value
    con.execute(f"UPDATE audit_records SET {col} = ? WHERE tenant = 'acme' AND seq = 4", (new,))
    con.commit()
    con.close()
    report = log.verify()
    assert not report.ok
    named = [b for t in report.tenants for b in t.problems]
    assert any(b.record_id == target.id or (b.seq == 4 and b.tenant == "acme") for b in named), (
        named
    )
    log.close()


def _raw(db: Path, *sql: tuple[str, tuple[Any, ...]]) -> None:
    con = sqlite3.connect(db)
    for stmt, params in sql:
        con.execute(stmt, params)
    con.commit()
    con.close()


def test_deleting_a_record_is_detected_and_named(db_path: Path) -> None:
    log = open_audit(str(db_path))
    recs = _populate(log)
    _raw(db_path, ("DELETE FROM audit_records WHERE tenant = 'acme' AND seq = 3", ()))
    b = log.verify().first_broken
    assert b is not None and b.seq == 4 and b.record_id == recs[3].id
    assert "seq 3 missing" in b.reason


def test_deleting_the_last_record_is_detected(db_path: Path) -> None:
    log = open_audit(str(db_path))
    recs = _populate(log)
    _raw(db_path, ("DELETE FROM audit_records WHERE tenant = 'acme' AND seq = 6", ()))
    b = log.verify("acme").first_broken
    assert b is not None and b.seq == 5 and "chain head" in b.reason
    assert recs[4].seq == 5


def test_reordering_two_records_is_detected(db_path: Path) -> None:
    log = open_audit(str(db_path))
    recs = _populate(log)
    _raw(
        db_path,
        ("UPDATE audit_records SET seq = -1 WHERE tenant = 'acme' AND seq = 2", ()),
        ("UPDATE audit_records SET seq = 2 WHERE tenant = 'acme' AND seq = 3", ()),
        ("UPDATE audit_records SET seq = 3 WHERE tenant = 'acme' AND seq = -1", ()),
    )
    b = log.verify().first_broken
    assert b is not None and b.seq == 2 and b.record_id == recs[2].id


def test_swapping_contents_keeping_seq_is_detected(db_path: Path) -> None:
    """Reorder by moving everything but seq: the prev_hash links break."""
    log = open_audit(str(db_path))
    recs = _populate(log)
    cols = [c for c in COLUMNS if c not in ("tenant", "seq")]
    con = sqlite3.connect(db_path)
    r2 = con.execute(
        f"SELECT {', '.join(cols)} FROM audit_records WHERE tenant='acme' AND seq=2"
    ).fetchone()
    r3 = con.execute(
        f"SELECT {', '.join(cols)} FROM audit_records WHERE tenant='acme' AND seq=3"
    ).fetchone()
    con.execute("DELETE FROM audit_records WHERE tenant='acme' AND seq IN (2, 3)")
    for seq, row in ((2, r3), (3, r2)):
        con.execute(
            f"INSERT INTO audit_records (tenant, seq, {', '.join(cols)}) VALUES ('acme', ?, {', '.join('?' for _ in cols)})",
            (seq, *row),
        )
    con.commit()
    con.close()
    b = log.verify().first_broken
    assert b is not None and b.seq == 2 and b.record_id == recs[2].id


def test_inserting_a_record_is_detected(db_path: Path) -> None:
    log = open_audit(str(db_path))
    _populate(log)
    con = sqlite3.connect(db_path)
    # Make room after seq 3 and insert a copy of record 2 re-labelled as a new record.
    for seq in range(6, 3, -1):
        con.execute(
            "UPDATE audit_records SET seq = ? WHERE tenant='acme' AND seq = ?", (seq + 1, seq)
        )
    row = con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM audit_records WHERE tenant='acme' AND seq=2"
    ).fetchone()
    forged = list(row)
    forged[COLUMNS.index("seq")] = 4
    forged[COLUMNS.index("id")] = "01900000-0000-7000-8000-00000000f0f0"
    con.execute(
        f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
        forged,
    )
    con.commit()
    con.close()
    report = log.verify()
    assert report.first_broken is not None
    assert report.first_broken.record_id == "01900000-0000-7000-8000-00000000f0f0"


def test_signed_checkpoint_catches_truncation_with_forged_head(db_path: Path) -> None:
    log = open_audit(str(db_path))
    _populate(log)
    log.checkpoint()
    # Delete the tail AND rewrite the chain head to match: only the checkpoint knows.
    con = sqlite3.connect(db_path)
    seq5 = con.execute("SELECT hash FROM audit_records WHERE tenant='acme' AND seq=5").fetchone()[0]
    con.execute("DELETE FROM audit_records WHERE tenant='acme' AND seq = 6")
    con.execute("UPDATE audit_chain_heads SET seq = 5, hash = ? WHERE tenant = 'acme'", (seq5,))
    con.commit()
    con.close()
    b = log.verify("acme").first_broken
    assert b is not None and b.seq == 6 and "checkpoint" in b.reason


def test_forged_checkpoint_signature_is_detected(db_path: Path) -> None:
    log = open_audit(str(db_path))
    _populate(log)
    log.checkpoint("acme")
    _raw(db_path, ("UPDATE audit_checkpoints SET seq = seq - 1 WHERE tenant='acme'", ()))
    b = log.verify("acme").first_broken
    assert b is not None and "invalid signature" in b.reason


def test_pinned_public_key(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_audit(str(db_path))
    _populate(log)
    log.checkpoint("acme")
    pub = log.public_key()
    assert log.verify(public_key=pub).ok
    assert not log.verify(public_key="11" * 32).ok


def test_tampering_detected_in_postgres(pg_url: str) -> None:
    import psycopg

    log = open_audit(pg_url)
    recs = _populate(log)
    schema = pg_url.split("schema=")[1]
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as con:
        con.execute(
            f'UPDATE "{schema}".audit_records SET outcome = %s WHERE tenant = %s AND seq = 2',
            ("allowed!", "acme"),
        )
    b = log.verify().first_broken
    assert b is not None and b.record_id == recs[1].id
    log.close()


def test_tampering_detected_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = open_audit(f"jsonl:///{path}")
    recs = _populate(log)
    text = path.read_text()
    assert "reason 2" in text
    path.write_text(text.replace("reason 2", "reason Z"))
    log2 = open_audit(f"jsonl:///{path}")
    b = log2.verify().first_broken
    assert b is not None and b.record_id == recs[2].id

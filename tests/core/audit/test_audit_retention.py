"""Retention purge and GDPR erasure keep the remaining chain verifiable."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from audit_helpers import call, decision

from veto_core.audit import AuditLog, open_audit

NOW = dt.datetime.now(dt.UTC)


def _old_and_new(log: AuditLog) -> None:
    for i in range(5):
        log.record_decision(call(args={"i": i}), decision(), now=NOW - dt.timedelta(days=100 - i))
    for i in range(3):
        log.record_decision(call(args={"j": i}), decision(), now=NOW - dt.timedelta(days=1))
    log.record_decision(call(tenant="beta"), decision(), now=NOW - dt.timedelta(days=200))


def test_purge_then_verify_passes(any_log: AuditLog) -> None:
    _old_and_new(any_log)
    res = any_log.purge("acme", retention_days=30)
    assert res.deleted == 5 and res.through_seq == 5 and res.tombstone is not None
    remaining = any_log.query(tenant="acme")
    assert [r.seq for r in remaining] == [6, 7, 8, 9]
    assert remaining[-1].outcome == "purged" and remaining[-1].tool == "veto.audit.purge"
    report = any_log.verify()
    assert report.ok, report
    acme = next(t for t in report.tenants if t.tenant == "acme")
    assert acme.anchor_seq == 5 and acme.first_seq == 6
    # Other tenants untouched; a second purge is a no-op that still verifies.
    assert len(any_log.query(tenant="beta")) == 1
    assert any_log.purge("acme", retention_days=30).deleted == 0
    assert any_log.verify().ok


def test_purge_without_tombstone_would_fail(db_path: Path) -> None:
    """The tombstone is what makes a purge legitimate: deleting the prefix by hand is caught."""
    import sqlite3

    log = open_audit(str(db_path))
    _old_and_new(log)
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM audit_records WHERE tenant='acme' AND seq <= 2")
    con.commit()
    con.close()
    b = log.verify("acme").first_broken
    assert b is not None and b.seq == 3


def test_erase_user_then_verify_and_bytes_gone(db_path: Path) -> None:
    log = open_audit(str(db_path))
    subject = "jane.doe-SUBJECT-7731"
    secret_arg = "jane-private-address-Elm-Street-42"
    for i in range(20):
        log.record_decision(
            call(user=subject, args={"address": secret_arg, "i": i}), decision(), env="prod"
        )
        log.record_decision(call(user="bob", args={"i": i}), decision(), env="prod")
    log.record_decision(call(user=subject, tenant="beta", args={"a": secret_arg}), decision())
    assert log.verify().ok
    results = log.erase_user(subject)
    assert sorted((r.tenant, r.records) for r in results) == [("acme", 20), ("beta", 1)]
    report = log.verify()
    assert report.ok, report
    erased = log.query(tenant="acme", run_id="run-1", limit=None)
    mine = [r for r in erased if r.args is None]
    assert len(mine) == 20 and all(r.principal.user is None for r in mine)
    assert all(r.principal.agent == "bot" for r in mine)  # the rest of the record stays
    bobs = log.query(tenant="acme", user="bob", limit=None)
    assert len(bobs) == 20 and all(r.args is not None for r in bobs)
    events = log.query(outcome="erased", limit=None)
    assert len(events) == 2 and all(subject not in str(e.to_dict()) for e in events)
    log.close()
    for f in db_path.parent.iterdir():
        raw = f.read_bytes()
        assert subject.encode() not in raw, f
        assert secret_arg.encode() not in raw, f


def test_erased_record_without_erasure_event_is_detected(db_path: Path) -> None:
    import sqlite3

    log = open_audit(str(db_path))
    rec = log.record_decision(call(user="x"), decision())
    log.record_decision(call(user="y"), decision())
    con = sqlite3.connect(db_path)
    con.execute(
        'UPDATE audit_records SET args = NULL, principal = replace(principal, \'"user":"x"\', \'"user":null\') '
        "WHERE seq = 1"
    )
    con.commit()
    con.close()
    b = log.verify().first_broken
    assert b is not None and b.record_id == rec.id


def test_erase_postgres_and_jsonl(pg_url: str, tmp_path: Path) -> None:
    for url in (pg_url, f"jsonl:///{tmp_path / 'a.jsonl'}"):
        log = open_audit(url)
        for i in range(3):
            log.record_decision(call(user="zed", args={"p": "zed-data"}), decision())
            log.record_decision(call(user="amy", args={"i": i}), decision())
        assert [r.records for r in log.erase_user("zed")] == [3]
        assert log.verify().ok
        assert all(r.principal.user != "zed" for r in log.query(limit=None))
        log.close()
    assert b"zed-data" not in (tmp_path / "a.jsonl").read_bytes()

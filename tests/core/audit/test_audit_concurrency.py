"""8 threads x 10,000 durable records into SQLite and PostgreSQL: none lost or duplicated."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from audit_helpers import call, decision

from veto_core.audit import AuditLog, open_audit

THREADS = 8
PER_THREAD = 10_000


def _hammer(log: AuditLog, tenants: tuple[str, ...]) -> list[str]:
    returned: list[list[str]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    d = decision()
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            c = call(tenant=tenants[t % len(tenants)], run_id=f"thread-{t}")
            barrier.wait()
            for i in range(PER_THREAD):
                rec = log.record_decision(c, d, env="prod", latency_us=i)
                returned[t].append(rec.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    return [i for ids in returned for i in ids]


def _check(log: AuditLog, ids: list[str], tenants: tuple[str, ...]) -> None:
    assert len(ids) == THREADS * PER_THREAD and len(set(ids)) == len(ids)
    stored = [r.id for r in log.iter_records()]
    dup = [k for k, v in Counter(stored).items() if v > 1]
    assert not dup
    assert set(stored) == set(ids)
    report = log.verify()
    assert report.ok, report.first_broken
    assert sum(t.records for t in report.tenants) == THREADS * PER_THREAD
    for t in report.tenants:
        assert t.first_seq == 1 and t.last_seq == t.records
    assert {t.tenant for t in report.tenants} == set(tenants)


def test_sqlite_8_threads_x_10000(tmp_path: pytest.TempPathFactory) -> None:
    tenants = ("acme", "beta")
    log = open_audit(str(tmp_path / "veto.db"))  # type: ignore[operator]
    _check(log, _hammer(log, tenants), tenants)


def test_postgres_8_threads_x_10000(pg_url: str) -> None:
    tenants = ("acme", "beta")
    log = open_audit(pg_url)
    try:
        _check(log, _hammer(log, tenants), tenants)
    finally:
        log.close()


def test_two_processes_share_one_sqlite_chain(tmp_path: pytest.TempPathFactory) -> None:
    """Chain appends are serialized across processes, not just threads."""
    import subprocess
    import sys

    db = tmp_path / "shared.db"  # type: ignore[operator]
    open_audit(str(db)).close()
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from audit_helpers import call, decision;"
        "from veto_core.audit import open_audit;"
        "log = open_audit(sys.argv[1]);"
        "[log.record_decision(call(), decision()) for _ in range(300)]"
    )
    here = str(__import__("pathlib").Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), here]) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    log = open_audit(str(db))
    report = log.verify()
    assert report.ok and report.tenants[0].records == 900

"""Two OS processes: a waiter blocks in `wait`, another process decides (or nobody does).

PostgreSQL wakes the waiter through LISTEN/NOTIFY (within 1 s); SQLite by polling
(within 2 s). With no decision the waiter returns EXPIRED at the deadline (±0.5 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from approval_helpers import call, make_veto

from veto_core.approvals import ApprovalState, Approver

HERE = Path(__file__).parent
LIMIT = {"sqlite": 2.0, "postgresql": 1.0}


def _spawn(url: str, rid: str, timeout: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "waiter.py"), url, rid, timeout],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read()  # type: ignore[union-attr]
    return proc


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def _backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "denied"])
def test_a_decision_in_one_process_wakes_a_waiter_in_another(db_url: str, approve: bool) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call()).approval.id
    waiter = _spawn(db_url, rid, "30")
    time.sleep(0.5)  # the waiter is blocked in wait() now
    assert waiter.poll() is None
    veto.approvals.decide(rid, approver=Approver(id="fiona", roles=("finance",)), approve=approve)
    decided_at = time.time()
    result = _result(waiter)
    expected = ApprovalState.APPROVED if approve else ApprovalState.DENIED
    assert result["state"] == expected.value
    latency = float(result["returned_at"]) - decided_at  # type: ignore[arg-type]
    assert latency < LIMIT[_backend(db_url)], f"waiter woke {latency:.3f}s after the decision"
    veto.close()


def test_with_no_decision_the_waiter_returns_expired_at_the_deadline(db_url: str) -> None:
    veto = make_veto(db_url, timeout="2s")
    auth = veto.authorize(call())
    rid = auth.approval.id
    deadline = auth.approval.expires_at.timestamp()
    waiter = _spawn(db_url, rid, "none")  # wait(timeout=None): until the request's deadline
    result = _result(waiter)
    assert result["state"] == ApprovalState.EXPIRED.value
    assert abs(float(result["returned_at"]) - deadline) <= 0.5  # type: ignore[arg-type]
    assert veto.approvals.get(rid).state is ApprovalState.EXPIRED
    veto.close()


def test_wait_never_hangs_past_its_own_timeout(db_url: str) -> None:
    veto = make_veto(db_url)  # the request itself lives for an hour
    rid = veto.authorize(call()).approval.id
    start = time.monotonic()
    assert veto.approvals.wait(rid, timeout=0.4) is ApprovalState.PENDING
    assert 0.35 < time.monotonic() - start < 0.9
    veto.close()


_CREATE = """
import sys
sys.path.insert(0, {here!r})
from approval_helpers import call, make_veto
veto = make_veto({url!r})
print(veto.authorize(call()).approval.id, flush=True)
veto.close()
"""


def test_the_same_call_in_several_processes_gets_one_request(db_url: str) -> None:
    make_veto(db_url).close()  # migrate once, so the race is about the request, not the schema
    code = _CREATE.format(here=str(HERE), url=db_url)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(ids) == 1
    veto = make_veto(db_url)
    assert [r.id for r in veto.approvals.list()] == list(ids)
    requested = veto.audit.query(outcome="approval_requested")
    assert len(requested) == 1  # announced (and notified) once
    veto.close()

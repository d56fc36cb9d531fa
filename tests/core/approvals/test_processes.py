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


class Waiter:
    """A warm waiter process (started before the request exists)."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "waiter.py"), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if line.strip() != word:
            self.proc.kill()
            raise AssertionError(f"waiter said {line!r}: {self.proc.stderr.read()}")

    def wait_for(self, rid: str, timeout: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{rid} {timeout}\n")
        self.proc.stdin.flush()
        self._expect("waiting")

    def result(self) -> dict[str, object]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()  # blocks until the waiter's wait() returned
        _, err = self.proc.communicate(input="", timeout=30)  # closes stdin: it exits
        assert line.strip(), err
        assert self.proc.returncode == 0, err
        return dict(json.loads(line))


def _backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "denied"])
def test_a_decision_in_one_process_wakes_a_waiter_in_another(db_url: str, approve: bool) -> None:
    veto = make_veto(db_url)
    waiter = Waiter(db_url)
    rid = veto.authorize(call()).approval.id
    waiter.wait_for(rid, "30")
    time.sleep(0.5)  # the waiter is blocked in wait() now
    assert waiter.proc.poll() is None
    veto.approvals.decide(rid, approver=Approver(id="fiona", roles=("finance",)), approve=approve)
    decided_at = time.time()
    result = waiter.result()
    expected = ApprovalState.APPROVED if approve else ApprovalState.DENIED
    assert result["state"] == expected.value
    latency = float(result["returned_at"]) - decided_at  # type: ignore[arg-type]
    assert latency < LIMIT[_backend(db_url)], f"waiter woke {latency:.3f}s after the decision"
    veto.close()


def test_with_no_decision_the_waiter_returns_expired_at_the_deadline(db_url: str) -> None:
    veto = make_veto(db_url, timeout="2s")
    waiter = Waiter(db_url)
    auth = veto.authorize(call())
    rid = auth.approval.id
    deadline = auth.approval.expires_at.timestamp()
    waiter.wait_for(rid, "none")  # wait(timeout=None): until the request's deadline
    assert time.time() < deadline - 0.5, "the machine is too slow for this timing test"
    result = waiter.result()
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
    warm = make_veto(db_url)
    assert warm.approvals  # create the schema once: the race is about the request
    warm.close()
    code = _CREATE.format(here=str(HERE), url=db_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    ids = {out.strip() for out, _ in outputs}
    assert len(ids) == 1
    veto = make_veto(db_url)
    assert [r.id for r in veto.approvals.list()] == list(ids)
    requested = veto.audit.query(outcome="approval_requested")
    assert len(requested) == 1  # announced (and notified) once
    veto.close()

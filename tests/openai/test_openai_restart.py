"""Interrupt → RunState.to_json → a NEW process → decide in the store → resume.

Approved in the store: the tool runs exactly once (and a second resume of the same
saved state runs it no more). Rejected: zero times. Approved in the SDK only
(``state.approve`` without a store approval): zero times.

The first test resumes in a real second Python process; the others (to keep the suite
fast: importing the SDK takes seconds) resume with everything rebuilt from scratch in
this process: a fresh ``Veto`` on the same database, a fresh agent and model, and
``RunState.from_json`` of the saved JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import restart_app

APP = Path(__file__).resolve().parent / "restart_app.py"


def _run(*args: str, home: Path) -> dict[str, Any]:
    env = {**os.environ, "HOME": str(home), "OPENAI_API_KEY": "test"}
    env.pop("VETO_DB", None)
    proc = subprocess.run(
        [sys.executable, str(APP), *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _start(tmp_path: Path) -> str:
    out = restart_app.start(tmp_path)
    assert out["interruptions"] == 1 and out["runs"] == 0
    (request_id,) = out["requests"]
    return str(request_id)


def _decide(tmp_path: Path, request_id: str, approve: bool) -> None:
    veto = restart_app.make_veto(tmp_path)
    try:
        veto.approvals.decide(request_id, approver="alice", approve=approve, via="test")
    finally:
        veto.close()


def _outcomes(tmp_path: Path) -> list[str]:
    veto = restart_app.make_veto(tmp_path)
    try:
        return [r.outcome for r in veto.audit.query(tenant="acme", limit=None)]
    finally:
        veto.close()


def test_approve_in_store_then_resume_in_new_process_runs_once(tmp_path: Path) -> None:
    request_id = _start(tmp_path)
    _decide(tmp_path, request_id, approve=True)
    out = _run("resume", str(tmp_path), "store", home=tmp_path)
    assert out["runs"] == 1
    assert out["seen"] == {"call_refund_1": "refunded 500.00"}
    assert out["final"] == "done" and out["interruptions"] == 0
    outcomes = _outcomes(tmp_path)
    assert outcomes.count("pending_approval") == 1  # one decision record, made before the pause
    assert "approval_consumed" in outcomes
    # The run kept its history across the processes: the person's input, observed once
    # as the first process started the run, then the approved call's output, observed
    # by the second process with the effect it was decided with.
    assert restart_app.events(tmp_path) == [
        {"tool": "@user", "effect": "allow", "id": None, "text": "refund 500"},
        {"tool": "issue_refund", "effect": "require_approval", "id": "call_refund_1", "text": ""},
    ]
    # Resuming the same saved state again (a replay, a second worker) runs nothing more.
    again = restart_app.resume(tmp_path, "store")
    assert again["runs"] == 1
    assert "approved but already used" in again["seen"]["call_refund_1"]


def test_reject_in_store_then_resume_fresh_runs_zero_times(tmp_path: Path) -> None:
    request_id = _start(tmp_path)
    _decide(tmp_path, request_id, approve=False)
    out = restart_app.resume(tmp_path, "store")
    assert out["runs"] == 0
    text = out["seen"]["call_refund_1"]
    assert "(rejected)" in text and "refunds-large" in text and request_id in text


@pytest.mark.parametrize("store_state", ["pending", "rejected"])
def test_approve_in_sdk_only_runs_zero_times(tmp_path: Path, store_state: str) -> None:
    request_id = _start(tmp_path)
    if store_state == "rejected":
        _decide(tmp_path, request_id, approve=False)
    out = restart_app.resume(tmp_path, "sdk")
    assert out["runs"] == 0
    text = out["seen"]["call_refund_1"]
    assert "refunds-large" in text and " was not run " in text
    if store_state == "pending":
        assert "approved in the SDK only" in text
        veto = restart_app.make_veto(tmp_path)
        try:  # nobody can approve it into the void later
            assert veto.approvals.get(request_id).state.value == "cancelled"
        finally:
            veto.close()

"""What adapters rely on: authorize, authorize_and_wait, wait_for_approval, check_approval."""

from __future__ import annotations

import threading
import time

from approval_helpers import call, make_veto

from veto_core import Effect, Veto
from veto_core.approvals import ApprovalState, Approver

FIN = Approver(id="fiona", roles=("finance",))


def test_allowed_and_denied_calls_pass_through(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    allowed = veto.authorize_and_wait(call("read"))
    assert allowed.run_tool and allowed.approval is None
    denied = veto.authorize_and_wait(call("unknown_tool"))
    assert not denied.run_tool and denied.decision.effect is Effect.DENY
    veto.close()


def test_authorize_and_wait_releases_once_when_approved_meanwhile(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call()).approval.id

    def approve_soon() -> None:
        time.sleep(0.3)
        veto.approvals.decide(rid, approver=FIN, approve=True)

    t = threading.Thread(target=approve_soon)
    t.start()
    start = time.monotonic()
    auth = veto.authorize_and_wait(call(), timeout=10)
    t.join()
    assert auth.run_tool and auth.released and time.monotonic() - start < 3
    assert auth.approval.state is ApprovalState.APPROVED and auth.approval.consumed
    assert "released to run" in auth.reason
    # A second release of the same call is impossible, through either path.
    again = veto.authorize_and_wait(call(), timeout=1)
    assert not again.run_tool and "already used" in again.reason
    assert veto.check_approval(call()) is False
    veto.close()


def test_authorize_and_wait_expires_the_request_when_the_caller_gives_up(db_url: str) -> None:
    veto = make_veto(db_url)
    start = time.monotonic()
    auth = veto.authorize_and_wait(call(), timeout=0.5)
    took = time.monotonic() - start
    assert not auth.run_tool and 0.45 < took < 1.5
    assert auth.approval.state is ApprovalState.EXPIRED
    assert "expired" in auth.reason and "stopped waiting" in auth.reason
    # A late approval cannot release it.
    rid = auth.approval.id
    assert veto.approvals.get(rid).state is ApprovalState.EXPIRED
    veto.close()


def test_authorize_and_wait_defaults_to_the_rules_timeout(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url, timeout="0.6s")
    start = time.monotonic()
    auth = veto.authorize_and_wait(call())
    assert not auth.run_tool and auth.approval.state is ApprovalState.EXPIRED
    assert 0.5 < time.monotonic() - start < 1.6
    assert "deadline" in (auth.approval.final_reason or "")
    veto.close()


def test_denied_request_reason_reaches_the_model(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    rid = veto.authorize(call()).approval.id
    veto.approvals.decide(rid, approver=FIN, approve=False, reason="vendor not verified")
    auth = veto.authorize_and_wait(call(), timeout=1)
    assert not auth.run_tool and "denied: vendor not verified" in auth.reason
    veto.close()


def test_check_approval_is_non_blocking_and_true_once(db_url: str) -> None:
    veto = make_veto(db_url)
    assert veto.check_approval(call()) is False  # no request yet
    auth = veto.authorize(call())
    assert veto.check_approval(call()) is False  # pending
    assert veto.find_approval(call()).id == auth.approval.id
    veto.approvals.decide(auth.approval.id, approver=FIN, approve=True)
    assert veto.check_approval(call()) is True
    assert veto.check_approval(call()) is False
    assert veto.find_approval(call()).consumed
    veto.close()


def test_check_approval_refuses_when_the_policy_now_denies(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    rid = veto.authorize(call()).approval.id
    veto.approvals.decide(rid, approver=FIN, approve=True)
    lockdown = Veto.from_yaml(
        "version: 1\nname: lockdown\nrules:\n  - {id: stop, effect: deny, tools: ['*']}\n",
        tenant="acme",
        db=sqlite_url,
    )
    assert lockdown.check_approval(call()) is False
    assert veto.approvals.get(rid).consumed_at is None  # the refusal consumed nothing
    assert veto.check_approval(call()) is True
    veto.close()
    lockdown.close()


def test_wait_for_approval_after_authorize(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    auth = veto.authorize(call())
    veto.approvals.decide(auth.approval.id, approver=FIN, approve=True)
    out = veto.wait_for_approval(auth, timeout=5)
    assert out.run_tool and out.record_id == auth.record_id
    assert veto.wait_for_approval(out).run_tool  # an already released auth is returned as is
    veto.close()

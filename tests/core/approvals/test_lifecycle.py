"""Lifecycle rules: binding, idempotency, quorum, veto, self-approval, eligibility,
expiry, cancel, restart, audit records, channels, fail closed."""

from __future__ import annotations

import pytest
from approval_helpers import REQUESTER, call, make_veto

from veto_core import Effect, Principal
from veto_core.approvals import (
    ApprovalClosed,
    ApprovalNotFound,
    ApprovalState,
    Approver,
    NotEligible,
    SelfApproval,
    open_approvals,
)
from veto_core.testing import FakeClock, RecordingChannel

FIN = Approver(id="fiona", roles=("finance",))
FIN2 = Approver(id="frank", roles=("finance",))


def test_require_approval_creates_one_pending_request_bound_to_the_call(db_url: str) -> None:
    veto = make_veto(db_url)
    auth = veto.authorize(call(args={"amount": 500, "card": "4111"}))
    assert auth.decision.effect is Effect.REQUIRE_APPROVAL and not auth.run_tool
    req = auth.approval
    assert req is not None and req.state is ApprovalState.PENDING
    assert (req.tenant, req.run_id, req.tool_call_id, req.tool) == (
        "acme",
        "run-1",
        "call-1",
        "pay",
    )
    assert req.args_digest == veto.audit.args_digest("acme", {"amount": 500, "card": "4111"})
    assert req.args == {"amount": 500, "card": "[REDACTED]"}  # approvers see the redacted copy
    assert (
        req.approvers == ("role:finance",) and req.quorum == 1 and req.requester == REQUESTER.user
    )
    assert "pending" in auth.reason
    # The same call asking again gets the same request (idempotent), not a second one.
    again = veto.authorize(call(args={"amount": 500, "card": "4111"}))
    assert again.approval is not None and again.approval.id == req.id
    assert [r.id for r in veto.approvals.list(tenant="acme")] == [req.id]
    # The decision record names the request.
    decisions = veto.audit.query(tenant="acme", outcome="pending_approval")
    assert {r.approval.id for r in decisions if r.approval} == {req.id}
    veto.close()


def test_quorum_counts_distinct_approvers_and_one_deny_vetoes(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call("wire")).approval.id
    svc = veto.approvals
    after = svc.decide(rid, approver=FIN, approve=True)
    assert after.state is ApprovalState.PENDING and after.approved_by == ("fiona",)
    # The same approver voting twice is still one approval.
    after = svc.decide(rid, approver=FIN, approve=True)
    after = svc.decide(rid, approver=Approver(id="FIONA", roles=("finance",)), approve=True)
    assert after.state is ApprovalState.PENDING and len(after.votes) == 1
    after = svc.decide(rid, approver=Approver(id="carol"), approve=True, via="slack")
    assert after.state is ApprovalState.APPROVED and after.approved_by == ("fiona", "carol")
    assert [v.via for v in after.votes] == ["console", "slack"]

    rid2 = veto.authorize(call("wire", tool_call_id="call-2")).approval.id
    svc.decide(rid2, approver=FIN, approve=True)
    denied = svc.decide(rid2, approver=FIN2, approve=False, reason="not this vendor")
    assert denied.state is ApprovalState.DENIED and denied.final_reason == "not this vendor"
    with pytest.raises(ApprovalClosed, match="denied"):
        svc.decide(rid2, approver=Approver(id="carol"), approve=True)
    assert not svc.consume(rid2)
    veto.close()


def test_requester_can_never_approve_its_own_call(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call("restart")).approval.id  # approvers: role:ops, bob, human
    svc = veto.approvals
    for who in (
        Approver(id="alice@example.com", roles=("finance",)),
        Approver(id="Alice@Example.com"),
        Approver(id="alice", email="alice@example.com"),
        Approver(id="bot"),  # the agent itself
    ):
        with pytest.raises(SelfApproval, match=r"requested this call .* cannot approve it"):
            svc.decide(rid, approver=who, approve=True)
    assert svc.get(rid).state is ApprovalState.PENDING and svc.get(rid).votes == ()
    # A listed approver who is not the requester may.
    assert svc.decide(rid, approver="bob", approve=True).state is ApprovalState.APPROVED
    veto.close()


def test_requester_may_withdraw_by_denying(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    rid = veto.authorize(call()).approval.id
    out = veto.approvals.decide(rid, approver="alice@example.com", approve=False)
    assert out.state is ApprovalState.DENIED
    veto.close()


def test_ineligible_approvers_are_refused(db_url: str) -> None:
    veto = make_veto(db_url)
    svc = veto.approvals
    rid = veto.authorize(call()).approval.id  # role:finance
    for who in (Approver(id="bob"), Approver(id="bob", roles=("support", "financial"))):
        with pytest.raises(NotEligible, match=r"needs 1 of role:finance \[pay\] \(roles held"):
            svc.decide(rid, approver=who, approve=True)
    with pytest.raises(NotEligible):
        svc.decide(rid, approver="bob", approve=False)  # an outsider cannot deny either
    wire = veto.authorize(call("wire")).approval.id  # role:finance, carol, dave@example.com
    svc.decide(wire, approver=Approver(id="dave", email="Dave@Example.com"), approve=True)
    with pytest.raises(NotEligible):
        svc.decide(wire, approver=Approver(id="carol2"), approve=True)
    assert svc.decide(wire, approver="carol", approve=True).state is ApprovalState.APPROVED
    veto.close()


def test_approvers_bound_to_another_tenant_cannot_see_or_decide(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call()).approval.id
    with pytest.raises(ApprovalNotFound):
        veto.approvals.decide(
            rid, approver=Approver(id="fin", roles=("finance",), tenant="globex"), approve=True
        )
    with pytest.raises(ApprovalNotFound):
        veto.approvals.get(rid, tenant="globex")
    assert veto.approvals.list(tenant="globex") == []
    ok = Approver(id="fin", roles=("finance",), tenant="acme")
    assert veto.approvals.decide(rid, approver=ok, approve=True).state is ApprovalState.APPROVED
    veto.close()


def test_timeout_expires_and_is_never_approved_after_the_deadline(db_url: str) -> None:
    clock = FakeClock()
    veto = make_veto(db_url, timeout="10m", clock=clock)
    svc = veto.approvals
    rid = veto.authorize(call()).approval.id
    clock.advance(599)
    assert svc.get(rid).state is ApprovalState.PENDING
    clock.advance(1)
    with pytest.raises(ApprovalClosed, match="expired"):
        svc.decide(rid, approver=FIN, approve=True)
    req = svc.get(rid)
    assert req.state is ApprovalState.EXPIRED and req.votes == ()
    assert svc.wait(rid, timeout=5) is ApprovalState.EXPIRED  # returns at once
    assert not svc.consume(rid)
    assert not veto.check_approval(call())
    # Persisted when observed: another process (a fresh service) sees EXPIRED too.
    other = open_approvals(db_url)
    assert other.store.get(rid).state is ApprovalState.EXPIRED  # type: ignore[union-attr]
    other.close()
    expired = veto.audit.query(tenant="acme", outcome="expired")
    assert [r.approval.id for r in expired if r.approval] == [rid]
    veto.close()


def test_pending_requests_expire_when_listed(sqlite_url: str) -> None:
    clock = FakeClock()
    veto = make_veto(sqlite_url, timeout="1m", clock=clock)
    rid = veto.authorize(call()).approval.id
    clock.advance(61)
    assert veto.approvals.list(state="pending") == []
    assert [r.id for r in veto.approvals.list(state="expired")] == [rid]
    veto.close()


def test_restart_keeps_pending_requests_and_their_votes(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call("wire")).approval.id
    veto.approvals.decide(rid, approver=FIN, approve=True, reason="looks fine")
    veto.authorize(call(tool_call_id="call-2"))
    veto.close()

    fresh = make_veto(db_url)  # a new process would do exactly this
    pending = {r.id: r for r in fresh.approvals.list(state="pending")}
    assert len(pending) == 2 and rid in pending
    kept = pending[rid]
    assert [(v.approver, v.approve, v.reason) for v in kept.votes] == [
        ("fiona", True, "looks fine")
    ]
    # The same call after the restart finds its request, with the vote still counting.
    again = fresh.authorize(call("wire"))
    assert again.approval.id == rid and again.approval.approved_by == ("fiona",)
    done = fresh.approvals.decide(rid, approver="carol", approve=True)
    assert done.state is ApprovalState.APPROVED
    assert fresh.check_approval(call("wire")) is True
    fresh.close()


def test_cancel_only_moves_a_pending_request(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    svc = veto.approvals
    rid = veto.authorize(call()).approval.id
    assert svc.cancel(rid, by="ops", reason="run abandoned").state is ApprovalState.CANCELLED
    with pytest.raises(ApprovalClosed, match="cancelled"):
        svc.decide(rid, approver=FIN, approve=True)
    rid2 = veto.authorize(call(tool_call_id="c2")).approval.id
    svc.decide(rid2, approver=FIN, approve=True)
    assert svc.cancel(rid2).state is ApprovalState.APPROVED  # decided: left as it is
    veto.close()


def test_every_state_change_is_an_audit_record(db_url: str) -> None:
    veto = make_veto(db_url)
    a = veto.authorize(call("wire"))
    rid = a.approval.id
    veto.approvals.decide(rid, approver=FIN, approve=True)
    veto.approvals.decide(rid, approver="carol", approve=True, via="slack")
    assert veto.approvals.consume(rid)
    records = [r for r in veto.audit.query(tenant="acme", limit=None) if r.approval]
    assert [r.outcome for r in records] == [
        "pending_approval",
        "approval_requested",
        "approval_vote",
        "approval_vote",
        "approved",
        "approval_consumed",
    ]
    assert {r.approval.id for r in records} == {rid}  # type: ignore[union-attr]
    # Every step names the same call: same digest, run, tool call.
    assert {(r.args_digest, r.run_id, r.tool_call_id, r.tool) for r in records} == {
        (a.approval.args_digest, "run-1", "call-1", "wire")
    }
    votes = [r for r in records if r.outcome == "approval_vote"]
    assert [(v.approval.approvers, v.approval.channel) for v in votes] == [  # type: ignore[union-attr]
        (("fiona",), "console"),
        (("carol",), "slack"),
    ]
    assert veto.audit.verify().ok
    veto.close()


def test_channels_are_notified_once_and_a_failing_one_stops_nothing(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url, channels="[broken, good]")
    broken, good, other = (
        RecordingChannel("broken", fail=True),
        RecordingChannel("good"),
        RecordingChannel("other"),
    )
    veto.approvals.use_channels([broken, good, other])
    auth = veto.authorize(call())
    veto.authorize(call())  # the same call again: no second notification
    assert len(broken.seen) == 1 and len(good.seen) == 1 and other.seen == []  # only listed ones
    req, links = good.seen[0]
    assert req.id == auth.approval.id and req.id in links.approve_command
    assert f"--db {sqlite_url}" in links.approve_command
    # The failure did not approve anything and is on record.
    assert veto.approvals.get(req.id).state is ApprovalState.PENDING
    (failed,) = veto.audit.query(tenant="acme", outcome="approval_notify_failed")
    assert "broken" in failed.reasons[0] and "is down" in failed.reasons[0]
    # A rule that lists no channels notifies every enabled one.
    rid = veto.authorize(call("restart")).approval.id
    assert [r.id for r, _ in other.seen] == [rid] and good.seen[-1][0].id == rid
    veto.close()


def test_approval_store_failure_denies_the_call(tmp_path: object) -> None:
    veto = make_veto("jsonl:///" + str(tmp_path) + "/audit.jsonl")  # audit works, approvals cannot
    auth = veto.authorize(call())
    assert not auth.run_tool and auth.decision.effect is Effect.DENY
    assert "approval unavailable" in auth.decision.reason and auth.approval_error
    assert veto.audit.query(outcome="denied")[0].id == auth.record_id
    waited = veto.authorize_and_wait(call(), timeout=0.1)
    assert not waited.run_tool
    assert veto.check_approval(call()) is False
    veto.close()


def test_unreachable_store_denies_the_call() -> None:
    veto = make_veto("nosuchscheme://nowhere")
    auth = veto.authorize(call())
    assert not auth.run_tool and auth.decision.effect is Effect.DENY
    assert not veto.authorize_and_wait(call(), timeout=0.1).run_tool
    assert veto.check_approval(call()) is False


def test_requests_without_a_user_bind_to_the_agent(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    p = Principal(agent="ops-bot", roles=("support",))
    rid = veto.authorize(call("restart", principal=p)).approval.id
    with pytest.raises(SelfApproval):
        veto.approvals.decide(rid, approver="ops-bot", approve=True)
    assert (
        veto.approvals.decide(rid, approver="human", approve=True).state is ApprovalState.APPROVED
    )
    veto.close()

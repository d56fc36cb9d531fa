"""GDPR erasure reaches the approval requests a data subject made, not only the audit trail."""

from __future__ import annotations

from pathlib import Path

from approval_helpers import call, make_veto
from click.testing import CliRunner

from veto_core import Principal
from veto_core.approvals import ApprovalState, Approver
from veto_core.cli import main

SUBJECT = Principal(agent="bot", roles=("support",), user="erin@example.com")
OTHER = Principal(agent="bot", roles=("support",), user="frank@example.com")


def test_erase_cancels_pending_requests_and_removes_their_personal_data(
    db_url: str, tmp_path: Path
) -> None:
    url = db_url
    veto = make_veto(url)
    secret = {"amount": 500, "to": "ERIN-PRIVATE-IBAN-0042"}
    pending = veto.authorize(call(args=secret, principal=SUBJECT, tool_call_id="c1")).approval
    decided = veto.authorize(call(args=secret, principal=SUBJECT, tool_call_id="c2")).approval
    others = veto.authorize(
        call(args={"amount": 1, "to": "FRANK-IBAN"}, principal=OTHER, tool_call_id="c3")
    ).approval
    assert pending and decided and others
    veto.approvals.decide(
        decided.id, approver=Approver(id="gina", roles=("finance",)), approve=True
    )
    veto.close()

    result = CliRunner().invoke(main, ["audit", "erase", "--db", url, "--user", SUBJECT.user or ""])
    assert result.exit_code == 0, result.output
    assert "approval requests: erased 2" in result.output

    veto = make_veto(url)
    after_pending = veto.approvals.get(pending.id)
    after_decided = veto.approvals.get(decided.id)
    assert after_pending.state is ApprovalState.CANCELLED  # its call can never run now
    assert after_decided.state is ApprovalState.APPROVED
    for request in (after_pending, after_decided):
        assert (
            request.args is None and request.requester is None and request.principal.agent == "bot"
        )
    untouched = veto.approvals.get(others.id)
    assert untouched.args == {"amount": 1, "to": "FRANK-IBAN"} and untouched.requester == OTHER.user
    assert veto.audit.verify().ok
    veto.close()
    if url.startswith("sqlite:///"):
        files = Path(url.removeprefix("sqlite:///")).parent.glob("veto.db*")
        raw = b"".join(p.read_bytes() for p in files)
        assert b"ERIN-PRIVATE-IBAN-0042" not in raw
        assert b"FRANK-IBAN" in raw

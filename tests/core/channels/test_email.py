"""Email channel against a real SMTP server (aiosmtpd) started in the test: the
message arrives, the link's GET changes nothing, only the POST decides, once, for
the approver it was sent to, before it expires."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from channel_helpers import (
    DASHBOARD,
    SECRET_KEY,
    SMTP_USER,
    SmtpServer,
    World,
    csrf_of,
    free_port,
    html_of,
    link_token,
    text_of,
)
from click.testing import CliRunner

from veto_core.approvals.channels.common import UserDirectory
from veto_core.approvals.channels.email import EmailChannel, TokenError, make_token, read_token
from veto_core.cli import main
from veto_core.config import EmailConfig

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def mail_for(world: World, address: str, n_total: int = 2) -> Any:
    world.smtp.inbox.wait_for(n_total)
    (msg,) = world.smtp.inbox.to(address)
    return msg


def post(client: Any, token: str, decision: str = "approve", csrf: str | None = None) -> Any:
    if csrf is None:
        csrf = csrf_of(client.get(f"/approve/{token}").text)
    return client.post(
        f"/approve/{token}",
        data={"decision": decision, "csrf_token": csrf, "reason": ""},
        follow_redirects=False,
    )


def test_one_message_per_eligible_approver(world: World) -> None:
    req = world.call(amount=250.0).approval
    msgs = world.smtp.inbox.wait_for(2)
    time.sleep(0.1)
    assert sorted(m["To"] for m in msgs) == ["alice@acme.test", "fiona@acme.test"]
    # dave (not finance), victor (viewer) and agent-user (the requester) get nothing
    assert world.smtp.inbox.logins and world.smtp.inbox.logins[0] == SMTP_USER
    msg = world.smtp.inbox.to("alice@acme.test")[0]
    assert msg["From"] == "veto@acme.test" and "issue_refund" in msg["Subject"]
    assert msg["X-Veto-Request"] == req.id
    text, html = text_of(msg), html_of(msg)
    for part in (text, html):
        assert "issue_refund" in part and "support-bot" in part and "refunds-large" in part
        assert "Refunds need a finance approver" in part and "[REDACTED]" in part
        assert "4111111111111111" not in part and SECRET_KEY not in part
        assert f"{DASHBOARD}/approve/" in part
    claims = read_token(SECRET_KEY, link_token(msg))
    assert claims.request_id == req.id and claims.approver == "alice"
    assert claims.expires_at <= req.expires_at
    # each approver's link is their own
    other = read_token(SECRET_KEY, link_token(world.smtp.inbox.to("fiona@acme.test")[0]))
    assert other.approver == "fiona" and other.jti != claims.jti


def test_get_changes_nothing_and_post_approves_once(world: World) -> None:
    req = world.call().approval
    token = link_token(mail_for(world, "alice@acme.test"))
    alice = world.client("alice")
    for _ in range(3):  # scanners and people may open it any number of times
        page = alice.get(f"/approve/{token}")
        assert page.status_code == 200
        assert "issue_refund" in page.text and "Approve" in page.text and "Deny" in page.text
        # The page needs the session of the approver the link was sent to: an eligible
        # approver sees the real values there, as on the dashboard (the mail never has them).
        assert "4111111111111111" in page.text and "Unredacted for you" in page.text
    assert world.state(req.id) == "pending"
    assert world.veto.approvals.get(req.id).votes == ()
    r = post(alice, token)
    assert r.status_code == 200, r.text
    assert "You approved this call" in r.text
    assert "4111111111111111" not in r.text  # the request ended: its real values are erased
    assert world.state(req.id) == "approved"
    assert ("approval_vote", "email") in world.outcomes(req.id)
    again = post(alice, token, csrf=csrf_of(r.text))
    assert again.status_code == 410 and "used already" in again.text
    assert alice.get(f"/approve/{token}").status_code == 410


def test_second_post_with_the_same_token_is_refused(world: World) -> None:
    req = world.call("wire_transfer").approval  # quorum 2: a second vote would count
    token = link_token(mail_for(world, "alice@acme.test"))
    alice = world.client("alice")
    csrf = csrf_of(alice.get(f"/approve/{token}").text)
    assert post(alice, token, "approve", csrf).status_code == 200
    assert len(world.veto.approvals.get(req.id).votes) == 1
    r = post(alice, token, "deny", csrf)  # the same link again, this time to deny
    assert r.status_code == 410
    after = world.veto.approvals.get(req.id)
    assert after.state.value == "pending" and len(after.votes) == 1
    # fiona's own link still works and completes the quorum
    fiona = world.client("fiona")
    assert post(fiona, link_token(world.smtp.inbox.to("fiona@acme.test")[0])).status_code == 200
    assert world.state(req.id) == "approved"


def test_expired_and_forged_tokens_are_refused(world: World) -> None:
    req = world.call().approval
    alice = world.client("alice")
    past = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=1)
    expired = make_token(
        SECRET_KEY, request_id=req.id, approver="alice", tenant="acme", expires_at=past
    )
    page = alice.get(f"/approve/{expired}")
    assert page.status_code == 403 and "expired" in page.text
    r = alice.post(f"/approve/{expired}", data={"decision": "approve", "csrf_token": "x"})
    assert r.status_code == 403
    future = _dt.datetime.now(_dt.UTC) + _dt.timedelta(hours=1)
    forged = make_token(
        "another-key", request_id=req.id, approver="alice", tenant="acme", expires_at=future
    )
    assert alice.get(f"/approve/{forged}").status_code == 403
    genuine = link_token(mail_for(world, "alice@acme.test"))
    _body, sig = genuine.split(".")
    tampered = (
        make_token(
            SECRET_KEY, request_id=req.id, approver="fiona", tenant="acme", expires_at=future
        ).split(".")[0]
        + "."
        + sig
    )
    assert alice.get(f"/approve/{tampered}").status_code == 403
    for junk in ("x", "a.b.c", "%00", "." * 5):
        assert alice.get(f"/approve/{junk}").status_code in (403, 404)
    with pytest.raises(TokenError):
        read_token(SECRET_KEY, expired)
    assert world.state(req.id) == "pending"


def test_token_for_a_used_by_b_is_refused(world: World) -> None:
    req = world.call().approval
    token = link_token(mail_for(world, "alice@acme.test"))
    fiona = world.client("fiona")  # an eligible approver, but not the one it was sent to
    page = fiona.get(f"/approve/{token}")
    assert page.status_code == 403 and "sent to another approver" in page.text
    assert "4111111111111111" not in page.text
    r = fiona.post(
        f"/approve/{token}", data={"decision": "approve", "csrf_token": fiona_csrf(fiona)}
    )
    assert r.status_code == 403
    assert world.state(req.id) == "pending"
    # not logged in: to the login page, and nothing decided
    anon = world.client()
    r = anon.get(f"/approve/{token}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fapprove%2F")
    r = anon.post(f"/approve/{token}", data={"decision": "approve"}, follow_redirects=False)
    assert r.status_code == 303
    # without the CSRF token: refused; the link is not burnt by it
    alice = world.client("alice")
    r = alice.post(f"/approve/{token}", data={"decision": "approve", "csrf_token": "wrong"})
    assert r.status_code == 403
    assert world.state(req.id) == "pending"
    assert post(alice, token).status_code == 200  # alice herself, properly
    assert world.state(req.id) == "approved"


def fiona_csrf(client: Any) -> str:
    token = client.get("/api/me").json()["csrf_token"]
    assert isinstance(token, str)
    return token


def test_deny_by_link(world: World) -> None:
    req = world.call().approval
    fiona = world.client("fiona")
    token = link_token(mail_for(world, "fiona@acme.test"))
    r = post(fiona, token, "deny")
    assert r.status_code == 200 and "You denied this call" in r.text
    assert world.state(req.id) == "denied"


def test_unreachable_smtp_leaves_request_pending_and_recorded(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    dead = world.config.email
    cfg = type(world.config)(
        db=world.db,
        secret_key=SECRET_KEY,
        dashboard_url=DASHBOARD,
        email=EmailConfig(smtp_url=f"smtp://127.0.0.1:{free_port()}?timeout=2", sender=dead.sender),
    )
    world.veto.approvals.use_channels([EmailChannel(cfg, directory=UserDirectory(world.db))])
    with caplog.at_level(logging.WARNING, logger="veto.approvals"):
        req = world.call().approval
    assert req is not None and world.state(req.id) == "pending"
    assert ("approval_notify_failed", "email") in world.outcomes(req.id)
    assert any("'email' failed" in r.getMessage() for r in caplog.records)


def test_cli_test_email(
    world: World, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = tmp_path / "veto.toml"
    conf.write_text(f'[email]\nsmtp_url = "{smtp.url}"\nfrom = "veto@acme.test"\n')
    monkeypatch.delenv("VETO_SMTP_URL", raising=False)
    result = CliRunner().invoke(
        main, ["channels", "test", "email", "--to", "ops@acme.test", "--config", str(conf)]
    )
    assert result.exit_code == 0, result.output
    (msg,) = smtp.inbox.wait_for(1)
    assert msg["To"] == "ops@acme.test"
    result = CliRunner().invoke(main, ["channels", "test", "email", "--config", str(conf)])
    assert result.exit_code == 2 and "--to" in result.output  # a usage error


def test_agent_blocked_on_approval_is_released_by_an_email_link(world: World) -> None:
    runs: list[int] = []
    outcome: dict[str, Any] = {}

    def agent() -> None:
        auth = world.veto.authorize_and_wait(world.tool_call(amount=900.0), timeout=20)
        outcome["auth"] = auth
        if auth.run_tool:
            runs.append(1)  # the tool body

    t = threading.Thread(target=agent)
    t.start()
    msg = mail_for(world, "fiona@acme.test")
    token = link_token(msg)
    fiona = world.client("fiona")
    assert fiona.get(f"/approve/{token}").status_code == 200
    time.sleep(0.2)
    assert runs == [] and t.is_alive()  # the GET released nothing
    assert post(fiona, token).status_code == 200
    t.join(timeout=15)
    assert not t.is_alive()
    assert runs == [1] and outcome["auth"].released
    assert post(fiona, token).status_code == 410
    assert world.veto.approvals.consume(msg["X-Veto-Request"]) is False
    assert runs == [1]


def test_a_link_shows_real_values_only_to_an_eligible_approver(world: World) -> None:
    # A link for dave (an approver, but not of finance) could only come from a changed
    # role or a leaked secret: his page may show the request, never its real values.
    req = world.call().approval
    token = make_token(
        SECRET_KEY, request_id=req.id, approver="dave", tenant="acme", expires_at=req.expires_at
    )
    page = world.client("dave").get(f"/approve/{token}")
    assert page.status_code == 200 and "issue_refund" in page.text
    assert "4111111111111111" not in page.text and "[REDACTED]" in page.text

"""Slack channel: the message on a local fake Slack Web API, and signed interaction
POSTs to ``veto serve`` (valid → decided; forged, stale, replayed, ineligible,
self-approval → refused and nothing decided)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from channel_helpers import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    World,
    free_port,
    interaction_body,
    signed_headers,
    wait_until,
)
from click.testing import CliRunner

from veto_core.approvals import ApprovalState
from veto_core.approvals.channels.common import UserDirectory
from veto_core.approvals.channels.slack import DENY_ACTION, SlackChannel
from veto_core.cli import main
from veto_core.config import SlackConfig

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def click(world: World, request_id: str, user: str, action: str = "veto_approve", **kw: Any) -> Any:
    body = interaction_body(request_id, user, action)
    return world.client().post(
        "/slack/interactions", content=body, headers=signed_headers(body, **kw)
    )


def texts(call: Any) -> str:
    return json.dumps(call.data.get("blocks")) + str(call.data.get("text"))


def test_message_has_everything_needed_and_nothing_secret(world: World) -> None:
    auth = world.call(amount=250.0)
    req = auth.approval
    (post,) = world.slack.wait_for("chat.postMessage")
    assert post.data["channel"] == "C0VETO"
    blocks = post.data["blocks"]
    flat = json.dumps(blocks)
    assert "issue_refund" in flat and "support-bot" in flat and "agent-user" in flat
    assert "refunds-large" in flat and "Refunds need a finance approver" in flat
    assert '\\"amount\\": 250.0' in flat  # arguments, pretty-printed
    assert "[REDACTED]" in flat and "4111111111111111" not in flat  # the policy's redaction
    assert f"<!date^{int(req.expires_at.timestamp())}^" in flat  # expiry
    actions = next(b for b in blocks if b["type"] == "actions")
    buttons = {e["action_id"]: e["value"] for e in actions["elements"]}
    assert buttons == {"veto_approve": req.id, "veto_deny": req.id}
    raw = json.dumps(post.data)
    assert BOT_TOKEN not in raw and SIGNING_SECRET not in raw
    assert world.state(req.id) == "pending"


def test_valid_click_approves_and_updates_the_message(world: World) -> None:
    req = world.call().approval
    r = click(world, req.id, "UALICE")  # alice, found by email through users.info
    assert r.status_code == 200, r.text
    assert world.state(req.id) == "approved"
    (info,) = world.slack.of("users.info")
    assert info.data["user"] == "UALICE"
    (update,) = world.slack.of("chat.update")
    assert update.data["channel"] == "C0VETO" and update.data["ts"] == "1700000000.000001"
    assert "Approved* by alice" in texts(update)
    assert "veto_approve" not in json.dumps(update.data["blocks"])  # buttons gone
    assert ("approval_vote", "slack") in world.outcomes(req.id)
    assert ("approved", "slack") in world.outcomes(req.id)


def test_explicit_mapping_and_deny(world: World) -> None:
    req = world.call().approval
    assert click(world, req.id, "UFIONA", DENY_ACTION).status_code == 200
    assert world.state(req.id) == "denied"
    assert world.slack.of("users.info") == []  # the mapping needed no lookup
    (update,) = world.slack.of("chat.update")
    assert "Denied* by fiona" in texts(update)


def test_wrong_signature_refused(world: World) -> None:
    req = world.call().approval
    r = click(world, req.id, "UALICE", secret="not-the-signing-secret")
    assert r.status_code == 401
    body = interaction_body(req.id, "UALICE")
    headers = signed_headers(body)
    tampered = body.replace(b"UALICE", b"UFIONA")  # signature of another body
    assert (
        world.client().post("/slack/interactions", content=tampered, headers=headers).status_code
        == 401
    )
    missing = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (
        world.client().post("/slack/interactions", content=body, headers=missing).status_code == 401
    )
    assert world.state(req.id) == "pending"
    assert world.slack.of("users.info") == [] and world.slack.of("chat.update") == []


def test_stale_timestamp_refused(world: World) -> None:
    req = world.call().approval
    r = click(world, req.id, "UALICE", timestamp=int(time.time()) - 6 * 60)  # signed correctly
    assert r.status_code == 401
    r = click(world, req.id, "UALICE", timestamp=int(time.time()) + 6 * 60)  # from the future
    assert r.status_code == 401
    assert world.state(req.id) == "pending"


def test_replayed_payload_decides_nothing(world: World) -> None:
    req = world.call("wire_transfer").approval  # quorum 2
    body = interaction_body(req.id, "UALICE")
    headers = signed_headers(body)
    assert (
        world.client().post("/slack/interactions", content=body, headers=headers).status_code == 200
    )
    assert len(world.veto.approvals.get(req.id).votes) == 1
    replay = world.client().post("/slack/interactions", content=body, headers=headers)
    assert replay.status_code == 409
    assert len(world.veto.approvals.get(req.id).votes) == 1
    assert len(world.slack.of("chat.update")) == 1
    assert [o for o, _ in world.outcomes(req.id)].count("approval_vote") == 1
    # the update after the first vote shows the count and keeps the buttons
    (update,) = world.slack.of("chat.update")
    assert "1 of 2 approvals" in texts(update) and "veto_approve" in json.dumps(update.data)
    # a second, different approver completes the quorum
    assert click(world, req.id, "UFIONA").status_code == 200
    assert world.state(req.id) == "approved"


@pytest.mark.parametrize(
    ("slack_user", "expect"),
    [
        ("UDAVE", "needs 1 of role:finance"),  # approver, not finance
        ("UAGENT", "cannot approve"),  # the requester itself
        ("UVICTOR", "may not decide approvals"),  # viewer role
        ("USTRANGER", "not linked to a Veto approver"),  # unknown email
        ("UNOSUCHUSER", "not linked to a Veto approver"),  # users.info fails
    ],
)
def test_refused_clickers_decide_nothing(world: World, slack_user: str, expect: str) -> None:
    req = world.call().approval
    assert click(world, req.id, slack_user).status_code == 200  # Slack gets its ack
    assert world.state(req.id) == "pending"
    assert world.veto.approvals.get(req.id).votes == ()
    (eph,) = world.slack.of("chat.postEphemeral")
    assert eph.data["user"] == slack_user and expect in eph.data["text"], eph.data["text"]
    assert world.slack.of("chat.update") == []


def test_already_decided_and_expired_update_the_message(world: World) -> None:
    req = world.call().approval
    assert click(world, req.id, "UALICE").status_code == 200
    assert click(world, req.id, "UFIONA", DENY_ACTION).status_code == 200  # too late
    assert world.state(req.id) == "approved"
    updates = world.slack.of("chat.update")
    assert len(updates) == 2 and "Approved* by alice" in texts(updates[1])
    assert "no longer be decided" in world.slack.of("chat.postEphemeral")[0].data["text"]

    quick = world.call("quick_tool").approval  # 1 s timeout
    time.sleep(1.1)
    assert click(world, quick.id, "UALICE").status_code == 200
    assert world.state(quick.id) == "expired"
    assert "Expired*" in texts(world.slack.of("chat.update")[-1])


def test_unknown_request_and_foreign_payloads(world: World) -> None:
    r = click(world, "0190aaaa-0000-7000-8000-000000000000", "UALICE")
    assert r.status_code == 200
    assert "does not exist" in world.slack.of("chat.postEphemeral")[0].data["text"]
    body = b"payload=" + json.dumps({"type": "view_submission"}).encode()
    r = world.client().post("/slack/interactions", content=body, headers=signed_headers(body))
    assert r.status_code == 200
    body = b"nothing=here"
    r = world.client().post("/slack/interactions", content=body, headers=signed_headers(body))
    assert r.status_code == 400


def test_unreachable_slack_leaves_request_pending_and_recorded(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    dead = SlackConfig(
        bot_token=BOT_TOKEN, channel="C0VETO", api_url=f"http://127.0.0.1:{free_port()}/api/"
    )
    world.veto.approvals.use_channels([SlackChannel(dead, directory=UserDirectory(world.db))])
    with caplog.at_level(logging.WARNING, logger="veto.approvals"):
        auth = world.call()
    req = auth.approval
    assert req is not None and world.state(req.id) == "pending"
    assert ("approval_notify_failed", "slack") in world.outcomes(req.id)
    assert any(
        "'slack' failed" in r.getMessage() and req.id in r.getMessage() for r in caplog.records
    )
    assert world.veto.approvals.wait(req.id, timeout=0.1) is ApprovalState.PENDING


def test_plugin_from_environment_and_cli_test(
    world: World, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "veto.toml").write_text("")
    monkeypatch.setenv("VETO_CONFIG", str(tmp_path / "veto.toml"))  # env only
    for k, v in {
        "VETO_SLACK_BOT_TOKEN": BOT_TOKEN,
        "VETO_SLACK_API_URL": fake_slack.url,
        "VETO_SLACK_CHANNEL": "CENV",
        "VETO_DB": world.db,
    }.items():
        monkeypatch.setenv(k, v)
    world.veto.approvals.use_channels(None)  # the plugins' channels again
    names = [c.name for c in world.veto.approvals.channels()]
    assert "slack" in names and "email" not in names
    world.call()
    assert fake_slack.wait_for("chat.postMessage")[0].data["channel"] == "CENV"

    result = CliRunner().invoke(main, ["channels", "test", "slack"])
    assert result.exit_code == 0, result.output
    assert "posted to CENV" in result.output
    monkeypatch.setenv("VETO_SLACK_API_URL", f"http://127.0.0.1:{free_port()}/api/")
    result = CliRunner().invoke(main, ["channels", "test", "slack"])
    assert result.exit_code == 1 and "test failed" in result.output


def test_agent_blocked_on_approval_is_released_by_a_slack_click(world: World) -> None:
    runs: list[int] = []
    outcome: dict[str, Any] = {}

    def agent() -> None:
        auth = world.veto.authorize_and_wait(world.tool_call(amount=900.0), timeout=20)
        outcome["auth"] = auth
        if auth.run_tool:
            runs.append(1)  # the tool body

    t = threading.Thread(target=agent)
    t.start()
    (post,) = world.slack.wait_for("chat.postMessage")
    actions = next(b for b in post.data["blocks"] if b["type"] == "actions")
    request_id = actions["elements"][0]["value"]
    time.sleep(0.2)
    assert runs == [] and t.is_alive()  # blocked until someone decides
    body = interaction_body(request_id, "UALICE")
    headers = signed_headers(body)
    assert (
        world.client().post("/slack/interactions", content=body, headers=headers).status_code == 200
    )
    t.join(timeout=15)
    assert not t.is_alive()
    assert runs == [1] and outcome["auth"].released
    # the same click again: refused, and the tool does not run again
    assert (
        world.client().post("/slack/interactions", content=body, headers=headers).status_code == 409
    )
    assert world.veto.approvals.consume(request_id) is False
    assert runs == [1]
    wait_until(lambda: world.slack.of("chat.update"), what="message update")


def test_direct_messages_to_eligible_mapped_approvers(world: World) -> None:
    dm = SlackConfig(
        bot_token=BOT_TOKEN,
        api_url=world.slack.url,
        users={"UFIONA": "fiona", "UDAVE": "dave", "UAGENT": "agent-user", "UGHOST": "nobody"},
    )
    world.veto.approvals.use_channels([SlackChannel(dm, directory=UserDirectory(world.db))])
    req = world.call().approval
    posts = world.slack.wait_for("chat.postMessage")
    time.sleep(0.1)
    assert [p.data["channel"] for p in world.slack.of("chat.postMessage")] == ["UFIONA"]
    assert posts[0].data["blocks"][-1]["elements"][0]["value"] == req.id
    # nobody to tell: a recorded failure, the request stays pending
    world.veto.approvals.use_channels(
        [SlackChannel(SlackConfig(bot_token=BOT_TOKEN, api_url=world.slack.url))]
    )
    other = world.call().approval
    assert ("approval_notify_failed", "slack") in world.outcomes(other.id)
    assert world.state(other.id) == "pending"


def test_slack_gets_its_ack_before_the_slow_work(world: World) -> None:
    """A real server: the 200 comes back at once although users.info and chat.update
    take 2 s each here; the vote lands afterwards."""
    import httpx
    import uvicorn

    req = world.call().approval
    world.slack.delay_s = 2.0
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            world.app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn")
    try:
        body = interaction_body(req.id, "UALICE")
        start = time.monotonic()
        r = httpx.post(
            f"http://127.0.0.1:{port}/slack/interactions",
            content=body,
            headers=signed_headers(body),
            timeout=10,
        )
        took = time.monotonic() - start
        assert r.status_code == 200 and took < 1.5, took
        wait_until(lambda: world.state(req.id) == "approved", timeout=10, what="the vote")
        world.slack.wait_for("chat.update", timeout=10)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

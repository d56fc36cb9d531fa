"""Real-browser tests: Playwright drives Debian's /usr/bin/chromium (headless) against
a uvicorn server in a background thread. Never downloads a browser.

FAILS when /usr/bin/chromium is missing, unless VETO_SKIP_CHROMIUM=1 (then skips).
Screenshots of every page go to tests/core/server/artifacts/.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ARTIFACTS, PASSWORD, POLICY_V2, LiveServer, World

from veto_core import Veto
from veto_core.approvals import ApprovalState
from veto_core.audit.export import export_records
from veto_core.audit.sink import AuditQuery

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("VETO_SKIP_CHROMIUM") == "1":
            pytest.skip("VETO_SKIP_CHROMIUM=1 and no /usr/bin/chromium")
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium "
            "(or set VETO_SKIP_CHROMIUM=1 to skip the browser tests)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(browser: Any, server: LiveServer, username: str, screenshot: str | None = None) -> Any:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    page.goto(server.url + "/approvals")
    assert "/login" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    if screenshot:
        shot(page, screenshot)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/approvals")
    return page


@dataclass
class Agent:
    """An agent blocked in its own thread until its approval request is decided."""

    world: World
    veto: Veto
    amount: float
    runs: list[str] = field(default_factory=list)
    approval_id: str | None = None
    final: ApprovalState | None = None
    created: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Agent:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.created.wait(10), "the agent did not create its request"
        return self

    def _run(self) -> None:
        auth = self.world.call(self.veto, self.amount)
        assert auth.approval is not None
        self.approval_id = auth.approval.id
        self.created.set()
        self.final = self.veto.approvals.wait(auth.approval.id, timeout=60)
        if self.final is ApprovalState.APPROVED and self.veto.approvals.consume(auth.approval.id):
            self.runs.append("issue_refund")  # the tool body

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the agent is still blocked"


def test_approve_and_deny_in_the_browser(browser: Any, live_server: LiveServer) -> None:
    world = live_server.world
    page = log_in(browser, live_server, "fiona", screenshot="login")
    watcher = log_in(browser, live_server, "victor")  # a second viewer, read-only
    page.wait_for_selector(".live.on")
    watcher.wait_for_selector(".live.on")
    assert page.locator("article.request").count() == 0

    # Two agents block in other threads; their requests appear live (server-sent events).
    a = Agent(world, world.acme, 250).start()
    b = Agent(world, world.acme, 900).start()
    card_a = page.locator(f"#req-{a.approval_id}")
    card_b = page.locator(f"#req-{b.approval_id}")
    card_a.wait_for(state="visible", timeout=5000)
    card_b.wait_for(state="visible", timeout=5000)
    watcher.locator(f"#req-{a.approval_id}").wait_for(state="visible", timeout=5000)
    text = card_a.inner_text()
    assert "issue_refund" in text and "refunds-large" in text and "support-bot" in text
    assert "Refunds over 100 need a finance approver" in text
    # fiona may approve: she sees the card number redaction hides from the audit trail
    # (issue 16 item 3); the viewer does not.
    assert "4111111111111111" in text and "audit trail keeps them redacted" in text
    watcher_text = watcher.locator(f"#req-{a.approval_id}").inner_text()
    assert "[REDACTED]" in watcher_text and "4111" not in watcher_text
    assert "left" in text
    shot(page, "approvals")
    assert a.runs == [] and b.runs == []

    # Approve A: the agent's tool runs exactly once; the card leaves every viewer's list.
    t0 = time.monotonic()
    card_a.locator("button.approve").click()
    card_a.wait_for(state="detached", timeout=2000)
    watcher.locator(f"#req-{a.approval_id}").wait_for(state="detached", timeout=2000)
    assert time.monotonic() - t0 < 2.5
    a.join()
    assert a.final is ApprovalState.APPROVED
    assert a.runs == ["issue_refund"]

    # Deny B with a reason: the tool never runs.
    card_b.locator("input[name=reason]").fill("not this customer")
    card_b.locator("button.deny").click()
    card_b.wait_for(state="detached", timeout=2000)
    watcher.locator(f"#req-{b.approval_id}").wait_for(state="detached", timeout=2000)
    b.join()
    assert b.final is ApprovalState.DENIED
    assert b.runs == []
    assert a.runs == ["issue_refund"]  # still exactly once
    page.wait_for_selector("p.empty")
    shot(watcher, "approvals-viewer-empty")

    # The dashboard decisions are recorded with the approver and channel "dashboard".
    req_a = world.acme.approvals.get(a.approval_id)
    assert [(v.approver, v.via, v.approve) for v in req_a.votes] == [("fiona", "dashboard", True)]
    req_b = world.acme.approvals.get(b.approval_id)
    assert [(v.approver, v.via, v.reason) for v in req_b.votes] == [
        ("fiona", "dashboard", "not this customer")
    ]
    votes = [
        r
        for r in world.acme.audit.iter_records(AuditQuery(tenant="acme", outcome="approval_vote"))
        if r.approval is not None
    ]
    assert {(r.approval.channel, r.approval.approvers) for r in votes if r.approval} == {
        ("dashboard", ("fiona",))
    }

    # Audit page: the filter finds the records of the approved request.
    page.click("nav >> text=Audit")
    page.wait_for_selector("table.records")
    shot(page, "audit")
    page.fill("#filters input[name=tool]", "issue_refund")
    page.select_option("#filters select[name=outcome]", "approved")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**outcome=approved**")
    rows = page.locator("tr.record")
    assert rows.count() == 1
    assert "approved" in rows.first.inner_text()
    shot(page, "audit-filtered")
    rows.first.locator("a").first.click()
    page.wait_for_selector("text=Chain position")
    assert "prev_hash" in page.content()
    shot(page, "audit-record")

    # Exports download the same bytes as the CLI, and the evidence pack verifies.
    page.goto(live_server.url + "/audit?tenant=acme&tool=issue_refund")
    with page.expect_download() as dl:
        page.click("a.button >> text=JSONL")
    data = Path(dl.value.path()).read_text()
    expected = io.StringIO()
    export_records(
        world.acme.audit.iter_records(AuditQuery(tenant="acme", tool="issue_refund")),
        "jsonl",
        expected,
    )
    assert data == expected.getvalue() and data.count("\n") >= 6
    with page.expect_download() as dl:
        page.click("a.button >> text=Evidence pack")
    with zipfile.ZipFile(dl.value.path()) as z:
        verification = json.loads(z.read("verification.json"))
        manifest = json.loads(z.read("manifest.json"))
        assert verification["ok"] is True
        import hashlib

        for name, digest in manifest.items():
            assert hashlib.sha256(z.read(name)).hexdigest() == digest, name
        records = [json.loads(x) for x in z.read("records.jsonl").splitlines()]
        assert records and {r["tenant"] for r in records} == {"acme"}
    for p in (page, watcher):
        p.context.close()


def test_policies_diff_and_explain_pages(browser: Any, live_server: LiveServer) -> None:
    world = live_server.world
    world.call(world.acme, 20)
    v2 = Veto.from_yaml(POLICY_V2, env="prod", tenant="acme", db=world.db)
    try:
        world.call(v2, 30)
    finally:
        v2.close()
    page = log_in(browser, live_server, "alice")
    page.click("nav >> text=Policies")
    page.wait_for_selector("table.records")
    assert page.locator("table.records tbody tr").count() == 2
    shot(page, "policies")
    page.click("button >> text=Compare selected")
    page.wait_for_selector("pre.diff")
    body = page.inner_text("main")
    assert "rule crm-reads" in body and "refunds-small" in body
    shot(page, "policy-diff")
    page.go_back()
    page.locator("table.records tbody tr").first.locator("a").first.click()
    page.wait_for_selector("pre.args")
    assert '"crm-reads"' in page.inner_text("pre.args")
    shot(page, "policy-revision")

    page.click("nav >> text=Explain")
    page.fill(
        "textarea[name=call]",
        json.dumps({"tool": "issue_refund", "args": {"amount": 75}, "env": "prod"}),
    )
    page.click("button >> text=Explain")
    page.wait_for_selector("table.trace")
    text = page.inner_text("main")
    assert "require_approval" in text  # under the latest revision 75 > 50
    shot(page, "explain")
    page.context.close()

"""Issue 16 item 4: the approver's reason survives the live refreshes of the approvals list
(server-sent events and the periodic refresh) and is sent with Approve as well as Deny.

Drives Debian's /usr/bin/chromium; FAILS when it is missing unless VETO_SKIP_CHROMIUM=1.
"""

from __future__ import annotations

from typing import Any

from server_helpers import World, serve
from test_server_browser import Agent, browser, log_in

from veto_core.approvals import ApprovalState

__all__ = ["browser"]

COUNT_SWAPS = """() => {
  window.__vetoSwaps = 0;
  document.body.addEventListener("htmx:afterSwap", () => { window.__vetoSwaps += 1; });
}"""


def _wait_swaps(page: Any, at_least: int) -> None:
    page.wait_for_function(f"() => window.__vetoSwaps >= {at_least}", timeout=10_000)


def test_reason_typed_across_refreshes_is_recorded_with_approve(browser: Any, world: World) -> None:
    # The periodic refresh every 1 s instead of 15 s: the same trigger, sooner.
    with serve(world, list_refresh_s=1.0) as server:
        page = log_in(browser, server, "fiona")
        page.wait_for_selector(".live.on")
        page.evaluate(COUNT_SWAPS)
        agent = Agent(world, world.acme, 250).start()
        card = page.locator(f"#req-{agent.approval_id}")
        card.wait_for(state="visible", timeout=5000)
        box = card.locator("input[name=reason]")
        box.click()
        page.keyboard.type("refund checked ", delay=20)

        # A server-sent event: another request appears, the whole list is swapped.
        other = Agent(world, world.acme, 300).start()
        page.locator(f"#req-{other.approval_id}").wait_for(state="visible", timeout=5000)
        swaps = page.evaluate("window.__vetoSwaps")
        page.keyboard.type("against ", delay=20)  # still typing into the same box

        # The periodic refresh (no change on the server) swaps the list again, twice.
        _wait_swaps(page, swaps + 2)
        page.keyboard.type("invoice 7731", delay=20)
        _wait_swaps(page, swaps + 3)

        card = page.locator(f"#req-{agent.approval_id}")
        assert card.locator("input[name=reason]").input_value() == (
            "refund checked against invoice 7731"
        )
        card.locator("button.approve").click()
        card.wait_for(state="detached", timeout=5000)
        agent.join()
        assert agent.final is ApprovalState.APPROVED and agent.runs == ["issue_refund"]
        assert agent.approval_id is not None
        req = world.acme.approvals.get(agent.approval_id)
        assert [(v.approver, v.approve, v.reason) for v in req.votes] == [
            ("fiona", True, "refund checked against invoice 7731")
        ]

        # The other card's box was left empty; deny it with a reason typed after a refresh.
        other_card = page.locator(f"#req-{other.approval_id}")
        other_card.locator("input[name=reason]").fill("duplicate")
        swaps = page.evaluate("window.__vetoSwaps")
        _wait_swaps(page, swaps + 1)
        other_card.locator("button.deny").click()
        other_card.wait_for(state="detached", timeout=5000)
        other.join()
        assert other.approval_id is not None
        denied = world.acme.approvals.get(other.approval_id)
        assert denied.state is ApprovalState.DENIED and denied.final_reason == "duplicate"
        page.context.close()

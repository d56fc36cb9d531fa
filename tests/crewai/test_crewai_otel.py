"""OpenTelemetry through the CrewAI adapter (issue 18 item 2): each decision's
``execute_tool`` span is a child of the caller's current span, and an approval wait
is a child of its call's span.

CrewAI's own tracing (off in these tests) starts its "call tool" span from its event
bus and never makes it the current span where the tool runs, so there is no
framework tool span to nest under: the Veto span nests under the span current where
the crew was kicked off, through CrewAI's threads (sync and async kickoff).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from crew_helpers import kickoff, make_crew, make_tool, scripted_llm

import veto_crewai
from contract import POLICY, TOOL_SPECS, Counter, ScriptedCall, wait_until
from otel_helpers import Otel, assert_calls_nested, assert_child_of, otel
from veto_core import Principal, Veto, telemetry

__all__ = ["otel"]

CALLS = [
    ScriptedCall(id="c-read", tool="read_file", args={"path": "/data/a.txt"}),
    ScriptedCall(id="c-del", tool="delete_file", args={"path": "/data/a.txt"}),
    ScriptedCall(id="c-pay", tool="issue_refund", args={"amount": 500}),
]
EFFECTS = {"c-read": "allow", "c-del": "deny", "c-pay": "require_approval"}


@pytest.fixture
def veto(tmp_path: Path) -> Any:
    v = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


def approve_when_pending(veto: Veto) -> threading.Thread:
    def run() -> None:
        if wait_until(lambda: bool(veto.approvals.list(state="pending", limit=None)), 20):
            for r in veto.approvals.list(state="pending", limit=None):
                veto.approvals.decide(r.id, approver="alice", approve=True, via="test")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("mode", ["install", "guard_tools"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_spans_nest_under_the_callers_span(
    veto: Veto, otel: Otel, mode: str, is_async: bool
) -> None:
    counters = {s.name: Counter() for s in TOOL_SPECS}
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS]
    if mode == "install":
        veto_crewai.install(veto, principal=Principal(user="u1"))
    else:
        tools = list(veto_crewai.guard_tools(tools, veto, principal=Principal(user="u1")))
    crew = make_crew(scripted_llm(CALLS), tools)
    approver = approve_when_pending(veto)
    with otel.provider.get_tracer("app").start_as_current_span("handle ticket"):
        kickoff(crew, is_async=is_async)
    approver.join(5)
    assert [counters[n].value for n in ("read_file", "delete_file", "issue_refund")] == [1, 0, 1]
    assert_calls_nested(otel, "handle ticket", EFFECTS)
    (pay,) = [
        s for s in otel.tool_spans() if (s.attributes or {})["gen_ai.tool.call.id"] == "c-pay"
    ]
    (wait,) = otel.spans(telemetry.WAIT_SPAN)
    assert_child_of(wait, pay)
    assert (wait.attributes or {})["veto.approval.state"] == "approved"
    assert (pay.attributes or {})["veto.outcome"] == "approved"
    for span in otel.tool_spans():
        assert (span.attributes or {})["veto.framework"] == "crewai"

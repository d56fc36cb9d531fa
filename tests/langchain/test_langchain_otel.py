"""OpenTelemetry through the LangChain adapter (issue 18 item 2): each decision's
``execute_tool`` span is a child of the span current where the tool call happens.

LangChain itself opens no OpenTelemetry span around a tool call, so the Veto span
nests under the caller's span (sync and async agents), or under the tool span of a
tracing middleware placed before ``VetoMiddleware`` (what an OpenTelemetry
middleware for ``create_agent`` does).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from lc_helpers import invoke, make_tool, scripted_model

from contract import POLICY, TOOL_SPECS, Counter, ScriptedCall
from otel_helpers import Otel, assert_calls_nested, assert_child_of, otel
from veto_core import Principal, Veto
from veto_langchain import VetoMiddleware, guard_tool

__all__ = ["otel"]

CALLS = [
    ScriptedCall(id="c-read", tool="read_file", args={"path": "/data/a.txt"}),
    ScriptedCall(id="c-del", tool="delete_file", args={"path": "/data/a.txt"}),
]
EFFECTS = {"c-read": "allow", "c-del": "deny"}


@pytest.fixture
def veto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOME", str(tmp_path))
    v = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


class ToolSpans(AgentMiddleware):
    """An OpenTelemetry tool span around each tool call, as a tracing middleware would."""

    def __init__(self, otel: Otel) -> None:
        super().__init__()
        self.tracer = otel.provider.get_tracer("app-tracing")

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        with self.tracer.start_as_current_span(f"tool {request.tool_call['name']}"):
            return handler(request)

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        with self.tracer.start_as_current_span(f"tool {request.tool_call['name']}"):
            return await handler(request)


def agent(veto: Veto, counters: dict[str, Counter], *middleware: Any) -> Any:
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS]
    mw = [*middleware, VetoMiddleware(veto, principal=Principal(agent="bot", user="u1"))]
    return create_agent(scripted_model(CALLS), tools, middleware=mw)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_spans_nest_under_the_callers_span(veto: Veto, otel: Otel, is_async: bool) -> None:
    counters = {s.name: Counter() for s in TOOL_SPECS}
    with otel.provider.get_tracer("app").start_as_current_span("handle ticket"):
        invoke(agent(veto, counters), {"messages": [("user", "go")]}, is_async=is_async)
    assert (counters["read_file"].value, counters["delete_file"].value) == (1, 0)
    assert_calls_nested(otel, "handle ticket", EFFECTS)
    for span in otel.tool_spans():
        assert (span.attributes or {})["veto.framework"] == "langchain"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_spans_nest_under_a_tool_span_of_the_framework(
    veto: Veto, otel: Otel, is_async: bool
) -> None:
    counters = {s.name: Counter() for s in TOOL_SPECS}
    invoke(
        agent(veto, counters, ToolSpans(otel)), {"messages": [("user", "go")]}, is_async=is_async
    )
    for call in CALLS:
        (outer,) = otel.spans(f"tool {call.tool}")
        (mine,) = [
            s for s in otel.tool_spans() if (s.attributes or {})["gen_ai.tool.call.id"] == call.id
        ]
        assert_child_of(mine, outer)
        assert (mine.attributes or {})["veto.effect"] == EFFECTS[call.id]


def test_guarded_tool_invoked_directly(veto: Veto, otel: Otel) -> None:
    counter = Counter()
    read = guard_tool(make_tool(TOOL_SPECS[0], counter), veto, principal=Principal(agent="bot"))
    with otel.provider.get_tracer("app").start_as_current_span("script"):
        read.invoke({"path": "/data/b.txt"})
    assert counter.value == 1
    (outer,) = otel.spans("script")
    (mine,) = otel.tool_spans()
    assert_child_of(mine, outer)
    assert (mine.attributes or {})["veto.outcome"] == "allowed"


def test_trace_example_prints_the_span_tree(tmp_path: Path) -> None:
    """examples/otel_trace.py (the trace shown in the docs) runs offline."""
    example = Path(__file__).resolve().parents[2] / "examples" / "otel_trace.py"
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("VETO_DB", None)
    # The CrewAI tests' conftest disables the OpenTelemetry SDK process-wide (CrewAI's own
    # telemetry); this example configures an SDK of its own and must not inherit that.
    env.pop("OTEL_SDK_DISABLED", None)
    proc = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    lines = [re.sub(r"\(\d+\.\d ms\)", "(ms)", line) for line in proc.stdout.splitlines()]
    assert lines[0] == "handle ticket #4711  (ms)"
    assert sorted(x for x in lines if x.startswith("  execute_tool")) == [
        "  execute_tool issue_refund  (ms)  effect=require_approval  outcome=approved  "
        "deciding_rule_ids=['refunds-large']  approval.state=approved",
        "  execute_tool lookup_customer  (ms)  effect=allow  outcome=allowed  "
        "deciding_rule_ids=['crm-reads']",
        "  execute_tool send_email  (ms)  effect=deny  outcome=denied  "
        "deciding_rule_ids=['no-external-mail']",
    ]
    wait = lines.index("    veto.approval.wait  (ms)  outcome=approved  approval.state=approved")
    assert lines[wait - 1].startswith("  execute_tool issue_refund")
    assert "veto.decisions{send_email, denied} = 1" in lines

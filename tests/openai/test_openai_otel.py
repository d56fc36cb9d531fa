"""OpenTelemetry through the OpenAI Agents adapter (issue 18 item 2): each decision's
``execute_tool`` span is a child of the caller's current span.

The Agents SDK traces with its own tracing (not OpenTelemetry; off in these tests),
so no OpenTelemetry tool span of the framework exists: the Veto span nests under the
span current where the run started, through the SDK's tasks and threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agents import Agent
from oa_helpers import Call, ScriptedModel, make_tool, run

from contract import POLICY, TOOL_SPECS, Counter
from otel_helpers import Otel, assert_calls_nested, otel
from veto_core import Principal, Veto
from veto_openai import guard_agent

__all__ = ["otel"]

EFFECTS = {"c-read": "allow", "c-del": "deny"}


@pytest.fixture
def veto(tmp_path: Path) -> Any:
    v = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_spans_nest_under_the_callers_span(veto: Veto, otel: Otel, is_async: bool) -> None:
    counters = {s.name: Counter() for s in TOOL_SPECS}
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS]
    model = ScriptedModel(
        [
            Call("c-read", "read_file", {"path": "/data/a.txt"}),
            Call("c-del", "delete_file", {"path": "/data/a.txt"}),
        ]
    )
    agent = guard_agent(
        Agent(name="bot", model=model, tools=tools), veto, principal=Principal(user="u1")
    )
    with otel.provider.get_tracer("app").start_as_current_span("handle ticket"):
        run(agent, "go", is_async=is_async)
    assert (counters["read_file"].value, counters["delete_file"].value) == (1, 0)
    assert_calls_nested(otel, "handle ticket", EFFECTS)
    for span in otel.tool_spans():
        assert (span.attributes or {})["veto.framework"] == "openai-agents"

"""Flow rules (DESIGN.md 2.7) cannot be bypassed through what the Agents SDK shows the
model without a guarded tool body in between: tool outputs carried into a new run as
history (a ``Session``, ``result.to_input_list()``), and hosted tools whose output never
passes Veto (a source labelling them means the run's labels would be incomplete)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionTool,
    HostedMCPTool,
    Runner,
    SQLiteSession,
    WebSearchTool,
    function_tool,
)
from agents.exceptions import InputGuardrailTripwireTriggered
from agents.run_context import RunContextWrapper
from agents.tool import MCPToolApprovalRequest
from oa_helpers import Call, ScriptedModel

from veto_core import Veto
from veto_openai import INPUT_GUARDRAIL_NAME, guard_agent, guard_tools, run_config

IBAN = "DE89370400440532013000"
POLICY = """
version: 1
name: flow-bypasses
default: deny
sources:
  - {id: inbox, tools: [read_inbox, web_search, mcp__docs__fetch], labels: [untrusted]}
rules:
  - {id: reads, effect: allow, tools: [read_inbox, web_search, image_generation]}
  - {id: mcp, effect: allow, tools: ["mcp__docs__*"]}
  - id: pay-tainted
    effect: deny
    tools: [send_money]
    if: {field: args.iban, tainted_by: untrusted}
    reason: The account came from untrusted text
  - {id: pay, effect: allow, tools: [send_money]}
"""


def ctx(run: str) -> dict[str, Any]:
    return {"veto": {"run_id": run}}


@pytest.fixture
def veto(tmp_path: Any) -> Iterator[Veto]:
    v = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


@pytest.fixture
def paid() -> list[str]:
    return []


@pytest.fixture
def tools(paid: list[str]) -> list[FunctionTool]:
    @function_tool
    def read_inbox() -> str:
        """Reads the inbox."""
        return f"Invoice: pay {IBAN} today"

    @function_tool
    def send_money(iban: str) -> str:
        """Pays."""
        paid.append(iban)
        return "paid"

    return [read_inbox, send_money]


def events(veto: Veto, run: str) -> list[Any]:
    return list(veto.run_store.load("acme", run, now=veto.clock()))


def read_then(tools: list[FunctionTool], veto: Veto, **kw: Any) -> Any:
    """Turn 1 (run ``t1``): the model reads the inbox."""
    agent = guard_agent(
        Agent(name="bot", model=ScriptedModel([Call("r1", "read_inbox", {})]), tools=tools), veto
    )
    return Runner.run_sync(agent, "Read my mail", run_config=run_config(), context=ctx("t1"), **kw)


def pay_agent(tools: list[FunctionTool], veto: Veto) -> tuple[Agent[Any], ScriptedModel]:
    model = ScriptedModel([Call("p1", "send_money", {"iban": IBAN})])
    return guard_agent(Agent(name="bot", model=model, tools=tools), veto), model


# --- 6: history carried into a new run ---------------------------------------------------------


def test_session_history_tool_output_is_recorded_in_the_new_run(
    veto: Veto, tools: list[FunctionTool], paid: list[str], tmp_path: Any
) -> None:
    session = SQLiteSession("conv-1", str(tmp_path / "s.db"))
    read_then(tools, veto, session=session)
    agent, model = pay_agent(tools, veto)
    Runner.run_sync(agent, "ok pay it", session=session, run_config=run_config(), context=ctx("t2"))
    assert paid == []
    assert "pay-tainted" in model.seen["p1"]
    (inbox,) = [e for e in events(veto, "t2") if e.tool == "read_inbox"]
    assert inbox.tool_call_id == "r1" and set(inbox.labels) == {"untrusted"}
    assert IBAN in inbox.text


def test_to_input_list_history_tool_output_is_recorded_in_the_new_run(
    veto: Veto, tools: list[FunctionTool], paid: list[str]
) -> None:
    first = read_then(tools, veto)
    items = [*first.to_input_list(), {"role": "user", "content": "ok pay it"}]
    agent, model = pay_agent(tools, veto)
    Runner.run_sync(agent, items, run_config=run_config(), context=ctx("t2"))
    assert paid == []
    assert "pay-tainted" in model.seen["p1"]
    assert [e.tool for e in events(veto, "t2")] == ["@user", "read_inbox"]


def test_history_already_recorded_in_the_run_is_not_recorded_again(
    veto: Veto, tools: list[FunctionTool], paid: list[str], tmp_path: Any
) -> None:
    session = SQLiteSession("conv-1", str(tmp_path / "s.db"))
    read_then(tools, veto, session=session)
    agent, _model = pay_agent(tools, veto)
    Runner.run_sync(agent, "ok pay it", session=session, run_config=run_config(), context=ctx("t1"))
    assert paid == []
    assert [(e.tool, e.tool_call_id) for e in events(veto, "t1")] == [
        ("@user", None),
        ("read_inbox", "r1"),
        ("@user", None),
    ]


def test_history_output_of_an_unknown_tool_fails_closed(
    veto: Veto, tools: list[FunctionTool], paid: list[str]
) -> None:
    items: Any = [
        {"role": "user", "content": "Read my mail"},
        {"type": "function_call_output", "call_id": "r1", "output": f"Invoice: pay {IBAN}"},
        {"role": "user", "content": "ok pay it"},
    ]
    agent, model = pay_agent(tools, veto)
    with pytest.raises(InputGuardrailTripwireTriggered) as info:
        Runner.run_sync(agent, items, run_config=run_config(), context=ctx("t2"))
    assert paid == [] and model.turns == 0
    result = info.value.guardrail_result
    assert result.guardrail.get_name() == INPUT_GUARDRAIL_NAME
    assert "'r1'" in result.output.output_info["veto"]["reason"]


def test_history_output_that_cannot_be_recorded_fails_closed(
    veto: Veto, tools: list[FunctionTool], paid: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from veto_core.runs import RunStoreUnavailable

    first = read_then(tools, veto)
    store = veto.run_store
    original = store.append

    def append(tenant: Any, run_id: str, event: Any, **kwargs: Any) -> int:
        if event.tool == "read_inbox":
            raise RunStoreUnavailable("run store is down (test)")
        return int(original(tenant, run_id, event, **kwargs))

    monkeypatch.setattr(store, "append", append)
    agent, model = pay_agent(tools, veto)
    items = [*first.to_input_list(), {"role": "user", "content": "ok pay it"}]
    with pytest.raises(InputGuardrailTripwireTriggered) as info:
        Runner.run_sync(agent, items, run_config=run_config(), context=ctx("t2"))
    assert paid == [] and model.turns == 0
    assert "run store is down" in info.value.guardrail_result.output.output_info["veto"]["reason"]


def test_hosted_mcp_output_in_history_is_recorded(
    veto: Veto, tools: list[FunctionTool], paid: list[str]
) -> None:
    items: Any = [
        {"role": "user", "content": "Fetch the docs"},
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "server_label": "docs",
            "name": "fetch",
            "arguments": "{}",
            "output": f"Pay {IBAN}",
        },
        {"role": "user", "content": "ok pay it"},
    ]
    agent, _model = pay_agent(tools, veto)
    Runner.run_sync(agent, items, run_config=run_config(), context=ctx("t2"))
    assert paid == []
    (fetched,) = [e for e in events(veto, "t2") if e.tool == "mcp__docs__fetch"]
    assert set(fetched.labels) == {"untrusted"} and fetched.tool_call_id == "mcp_1"


# --- 5: hosted tools whose output a source labels ----------------------------------------------


def test_decide_drops_a_hosted_tool_a_source_labels(
    veto: Veto, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedModel([], final="ok")
    agent = guard_agent(Agent(name="bot", model=model, tools=[WebSearchTool()]), veto)
    with caplog.at_level(logging.WARNING, logger="veto_openai"):
        Runner.run_sync(agent, "search", run_config=run_config(), context=ctx("h"))
    assert model.tool_names == [[]]
    assert "'web_search'" in caplog.text
    assert "its output cannot be recorded for the policy's flow rules" in caplog.text


def test_guard_tools_decide_drops_a_hosted_tool_a_source_labels(veto: Veto) -> None:
    assert guard_tools([WebSearchTool()], veto) == []


def test_keep_keeps_a_labelled_hosted_tool_and_warns_once(
    veto: Veto, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedModel([], final="ok")
    agent = guard_agent(
        Agent(name="bot", model=model, tools=[WebSearchTool()]), veto, hosted_tools="keep"
    )
    with caplog.at_level(logging.WARNING, logger="veto_openai"):
        Runner.run_sync(agent, "search", run_config=run_config(), context=ctx("h1"))
        Runner.run_sync(agent, "search", run_config=run_config(), context=ctx("h2"))
    assert model.tool_names == [["web_search"], ["web_search"]]
    assert caplog.text.count("its output cannot be recorded for the policy's flow rules") == 1


def test_decide_still_keeps_an_allowed_hosted_tool_no_source_labels(veto: Veto) -> None:
    from agents import ImageGenerationTool

    tool = ImageGenerationTool(tool_config={"type": "image_generation"})
    model = ScriptedModel([], final="ok")
    agent = guard_agent(Agent(name="bot", model=model, tools=[tool]), veto)
    Runner.run_sync(agent, "draw", run_config=run_config(), context=ctx("h"))
    assert model.tool_names == [["image_generation"]]


def _mcp_request(name: str) -> MCPToolApprovalRequest:
    data: Any = SimpleNamespace(
        name=name,
        arguments="{}",
        id=f"mcpr_{name}",
        server_label="docs",
        type="mcp_approval_request",
    )
    return MCPToolApprovalRequest(ctx_wrapper=RunContextWrapper(context=ctx("m")), data=data)


def test_hosted_mcp_call_a_source_labels_is_refused(veto: Veto) -> None:
    tool = HostedMCPTool(
        tool_config={"type": "mcp", "server_label": "docs", "server_url": "https://docs.example"}
    )
    (guarded,) = guard_tools([tool], veto)
    assert guarded.on_approval_request is not None
    refused = asyncio.run(guarded.on_approval_request(_mcp_request("fetch")))
    assert refused["approve"] is False
    assert "its output cannot be recorded for the policy's flow rules" in refused.get("reason", "")
    allowed = asyncio.run(guarded.on_approval_request(_mcp_request("search")))
    assert allowed["approve"] is True

"""guard_agent / guard_tools beyond the contract: copies not mutations, principal and run id
from the agent and the run context, SDK quirks (pydantic coercion, approvals the SDK
grants without asking ``needs_approval``, no pre-approval guardrails), raise mode,
fail-closed paths, handoffs, hosted and MCP tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import (
    Agent,
    CodeInterpreterTool,
    FunctionTool,
    HostedMCPTool,
    Runner,
    WebSearchTool,
    function_tool,
)
from agents.exceptions import ToolInputGuardrailTripwireTriggered
from agents.run_context import RunContextWrapper
from agents.tool import MCPToolApprovalRequest
from oa_helpers import Call, ScriptedModel, make_tool
from openai.types.responses.response_output_item import McpApprovalRequest

from contract import POLICY, TOOL_SPECS, Counter
from veto_core import Principal, Veto
from veto_openai import (
    ToolNames,
    VetoContext,
    VetoInputGuardrail,
    VetoToolGuardrail,
    approvals,
    guard_agent,
    guard_tool,
    guard_tools,
    run_config,
)

EXTRA = """
  - id: support-reads-crm
    effect: allow
    tools: [crm_lookup]
    when: {role: [support]}
  - id: search-ok
    effect: allow
    tools: [web_search]
  - id: github-read
    effect: allow
    tools: [mcp__github__get_issue]
  - id: github-no-delete
    effect: deny
    tools: [mcp__github__delete_repo]
    reason: Nobody deletes repositories
roles:
  support: {}
"""


MCP_SOURCE = """  - id: github-issues
    tools: [mcp__github__get_issue]
    labels: [untrusted]
"""


@pytest.fixture
def veto(tmp_path: Any) -> Any:
    v = Veto.from_yaml(
        POLICY.replace("sources:\n", EXTRA.lstrip("\n") + "sources:\n", 1) + MCP_SOURCE,
        env="prod",
        tenant="acme",
        db=f"sqlite:///{tmp_path / 'v.db'}",
    )
    yield v
    v.close()


@pytest.fixture
def counters() -> dict[str, Counter]:
    return {s.name: Counter() for s in TOOL_SPECS}


@pytest.fixture
def tools(counters: dict[str, Counter]) -> list[FunctionTool]:
    return [make_tool(s, counters[s.name]) for s in TOOL_SPECS]


def records(veto: Veto, call_id: str) -> list[Any]:
    return [
        r
        for r in veto.audit.query(tenant="acme", limit=None)
        if r.tool_call_id == call_id
        and r.outcome in {"allowed", "denied", "pending_approval", "error"}
    ]


# --- copies, never mutations ------------------------------------------------------------------


def test_guard_returns_copies_and_leaves_the_originals_alone(veto: Veto, tools: list[Any]) -> None:
    before = [(t.needs_approval, t.tool_input_guardrails) for t in tools]
    agent = Agent(name="bot", tools=list(tools))
    guarded = guard_agent(agent, veto)
    assert guarded is not agent and agent.tools == tools
    assert [(t.needs_approval, t.tool_input_guardrails) for t in tools] == before
    for orig, new in zip(tools, guarded.tools, strict=True):
        assert new is not orig and new.name == orig.name
        assert isinstance(new.tool_input_guardrails[0], VetoToolGuardrail)
        assert callable(new.needs_approval)
    # Guarding twice replaces the Veto guardrail rather than stacking a second one.
    again = guard_tools(guarded.tools, veto)
    assert [len(t.tool_input_guardrails) for t in again] == [1] * len(tools)
    # The run input guardrail (records the person's words as "@user") is added once.
    assert (
        isinstance(guarded.input_guardrails[0], VetoInputGuardrail) and not agent.input_guardrails
    )
    twice = guard_agent(guarded, veto)
    assert [type(g) for g in twice.input_guardrails] == [VetoInputGuardrail]
    assert isinstance(guarded, Agent) and guarded.name == "bot"
    with pytest.raises(TypeError):
        guard_tool(WebSearchTool(), veto)  # type: ignore[arg-type]


def test_user_guardrails_and_needs_approval_are_kept(
    veto: Veto, counters: dict[str, Counter]
) -> None:
    from agents import ToolGuardrailFunctionOutput, tool_input_guardrail

    seen: list[str] = []

    @tool_input_guardrail
    def mine(data: Any) -> ToolGuardrailFunctionOutput:
        seen.append(data.context.tool_call_id)
        return ToolGuardrailFunctionOutput.allow()

    tool = make_tool(TOOL_SPECS[0], counters["read_file"])
    tool.tool_input_guardrails = [mine]
    tool.needs_approval = True  # the application's own human-in-the-loop
    model = ScriptedModel([Call("c1", "read_file", {"path": "/data/a"})])
    agent = guard_agent(Agent(name="bot", model=model, tools=[tool]), veto)
    result = Runner.run_sync(agent, "go", run_config=run_config())
    assert len(result.interruptions) == 1  # the app's pause; Veto allows the call
    (p,) = approvals.sync(result, veto)
    assert p.governed and p.state == "allowed" and p.request is None
    state = result.to_state()
    state.approve(result.interruptions[0])  # the app approves its own pause
    result = Runner.run_sync(agent, state, run_config=run_config())
    # The SDK runs input guardrails before the pause (run_config()) and before the body.
    assert counters["read_file"].value == 1 and seen == ["c1", "c1"]
    assert [r.outcome for r in records(veto, "c1")] == ["allowed"]


# --- principal, run id, tool call id ------------------------------------------------------------


def test_principal_from_agent_roles_and_run_id_from_context(
    veto: Veto, counters: dict[str, Counter]
) -> None:
    @function_tool
    def crm_lookup(email: str) -> str:
        """Look up a customer."""
        counters["read_file"].hit()
        return f"customer {email}"

    calls = [Call("call_abc", "crm_lookup", {"email": "a@example.com"})]
    model = ScriptedModel(calls)
    agent = guard_agent(
        Agent(name="support-bot", model=model, tools=[crm_lookup]),
        veto,
        principal=Principal(user="u7"),
        roles={"support-bot": ["support"]},
        run_id=lambda ctx: ctx["conversation"],
    )
    Runner.run_sync(agent, "go", context={"conversation": "conv-42"})
    assert counters["read_file"].value == 1
    (rec,) = records(veto, "call_abc")
    assert rec.outcome == "allowed" and rec.framework == "openai-agents"
    assert rec.principal.agent == "support-bot" and rec.principal.user == "u7"
    assert rec.principal.roles == ("support",) and rec.run_id == "conv-42"

    # Another agent name gets no role from the mapping: denied by default.
    model2 = ScriptedModel([Call("call_def", "crm_lookup", {"email": "a@example.com"})])
    other = guard_agent(
        Agent(name="sales-bot", model=model2, tools=[crm_lookup]),
        veto,
        roles={"support-bot": ["support"]},
    )
    # ...and a VetoContext in the run context overrides run id and principal per run.
    ctx = {"veto": {"run_id": "r-9", "principal": {"user": "u8", "roles": ["support"]}}}
    Runner.run_sync(other, "go", context=ctx)
    (rec2,) = records(veto, "call_def")
    assert rec2.outcome == "allowed" and rec2.run_id == "r-9"
    assert rec2.principal.agent == "sales-bot" and rec2.principal.user == "u8"
    model3 = ScriptedModel([Call("call_ghi", "crm_lookup", {"email": "a@example.com"})])
    other.model = model3
    Runner.run_sync(other, "go", context=VetoContext(run_id="r-10"))
    (rec3,) = records(veto, "call_ghi")
    assert rec3.outcome == "denied" and rec3.run_id == "r-10"
    assert "not run (denied)" in model3.seen["call_ghi"]


def test_malformed_veto_context_fails_closed(veto: Veto, tools: list[Any], counters: Any) -> None:
    model = ScriptedModel([Call("c1", "read_file", {"path": "/data/a"})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    Runner.run_sync(agent, "go", context={"veto": {"run": "typo"}})
    assert counters["read_file"].value == 0
    assert "unknown VetoContext keys" in model.seen["c1"] and "(error)" in model.seen["c1"]


# --- SDK quirks ----------------------------------------------------------------------------------


def test_int_for_float_parameter_is_bound_to_the_raw_arguments(veto: Veto, tmp_path: Any) -> None:
    """pydantic turns 500 into 500.0 for the tool body; Veto binds the approval to the
    arguments the model sent, in needs_approval, the guardrail and sync() alike."""
    got: list[Any] = []

    @function_tool
    def issue_refund(amount: float) -> str:
        """Refund."""
        got.append(amount)
        return f"refunded {amount!r}"

    model = ScriptedModel([Call("c1", "issue_refund", {"amount": 500})])
    agent = guard_agent(Agent(name="bot", model=model, tools=[issue_refund]), veto, run_id="run-1")
    result = Runner.run_sync(agent, "go", run_config=run_config())
    (p,) = approvals.sync(result, veto)
    assert p.call is not None and p.call.args == {"amount": 500}
    veto.approvals.decide(p.request.id, approver="alice", approve=True, via="test")
    approvals.resume_sync(result, veto)
    assert got == [500.0] and isinstance(got[0], float)
    assert model.seen["c1"] == "refunded 500.0"
    assert [r.outcome for r in records(veto, "c1")] == ["pending_approval"]


def test_sdk_pause_without_needs_approval_malformed_arguments(
    veto: Veto, tools: Any, counters: Any
) -> None:
    """Arguments that are not a JSON object: the SDK pauses without asking needs_approval;
    the pre-approval guardrail refuses the call (fail closed) and it never runs."""
    model = ScriptedModel([Call("c1", "issue_refund", '{"amount": 5')])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    result = Runner.run_sync(agent, "go", run_config=run_config())
    assert not result.interruptions
    assert counters["issue_refund"].value == 0
    assert "(error)" in model.seen["c1"] and "JSONDecodeError" in model.seen["c1"]


def test_sticky_sdk_approval_does_not_release_later_calls(
    veto: Veto, tools: Any, counters: Any
) -> None:
    """``state.approve(item, always_approve=True)``: the SDK no longer asks needs_approval
    for that tool. The next refund still needs its own Veto approval."""
    model = ScriptedModel(
        [Call("c1", "issue_refund", {"amount": 500})],
        then=[[Call("c2", "issue_refund", {"amount": 900})]],
    )
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    result = Runner.run_sync(agent, "go", run_config=run_config())
    (p,) = approvals.sync(result, veto)
    veto.approvals.decide(p.request.id, approver="alice", approve=True, via="test")
    state = result.to_state()
    state.approve(result.interruptions[0], always_approve=True)
    result = Runner.run_sync(agent, state, run_config=run_config())
    assert counters["issue_refund"].value == 1  # c1 only
    assert not result.interruptions  # the SDK did not pause c2 ...
    assert "refunds-large" in model.seen["c2"] and "not run" in model.seen["c2"]
    assert [r.outcome for r in records(veto, "c2")] == ["pending_approval"]
    (req2,) = [r for r in veto.approvals.list(limit=None) if r.tool_call_id == "c2"]
    assert req2.state.value == "cancelled"  # ... and Veto closed its request


def test_without_pre_approval_guardrails_sync_opens_the_request(
    veto: Veto, tools: Any, counters: Any
) -> None:
    model = ScriptedModel([Call("c1", "issue_refund", {"amount": 500})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto, run_id="run-1")
    result = Runner.run_sync(agent, "go")  # no run_config(): the SDK pauses, Veto records nothing
    assert len(result.interruptions) == 1 and records(veto, "c1") == []
    assert veto.approvals.list(limit=None) == []
    first = approvals.sync(result, veto)
    second = approvals.sync(result, veto)  # idempotent
    assert first[0].request.id == second[0].request.id and first[0].state == "pending"
    assert [r.outcome for r in records(veto, "c1")] == ["pending_approval"]
    # Still pending: resume keeps it paused, nothing runs.
    result = approvals.resume_sync(result, veto)
    assert len(result.interruptions) == 1 and counters["issue_refund"].value == 0
    veto.approvals.decide(first[0].request.id, approver="bob", approve=True, via="test")
    result = approvals.resume_sync(result, veto)
    assert counters["issue_refund"].value == 1 and not result.interruptions
    assert model.seen["c1"] == "issue_refund done: 500.0"


def test_resume_can_wait_for_the_decision(veto: Veto, tools: Any, counters: Any) -> None:
    import threading

    model = ScriptedModel([Call("c1", "issue_refund", {"amount": 500})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    result = Runner.run_sync(agent, "go", run_config=run_config())
    (p,) = approvals.sync(result, veto)
    timer = threading.Timer(
        0.2, lambda: veto.approvals.decide(p.request.id, approver="alice", approve=True, via="t")
    )
    timer.start()
    result = asyncio.run(approvals.resume(result, veto, pending="wait", timeout=5))
    timer.join()
    assert counters["issue_refund"].value == 1 and not result.interruptions


# --- raise mode, fail closed ----------------------------------------------------------------------


def test_raise_mode_ends_the_run(veto: Veto, tools: Any, counters: Any) -> None:
    model = ScriptedModel([Call("c1", "delete_file", {"path": "/x"})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto, on_deny="raise")
    with pytest.raises(ToolInputGuardrailTripwireTriggered) as info:
        Runner.run_sync(agent, "go")
    assert counters["delete_file"].value == 0
    assert "no-delete" in info.value.output.output_info["veto"]["reason"]


def test_needs_approval_failure_still_blocks(
    veto: Veto, tools: Any, counters: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``decide`` raising inside needs_approval: the call is not paused, the guardrail
    decides again, and a failure there refuses it."""

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("plugin exploded")

    model = ScriptedModel(
        [Call("c1", "issue_refund", {"amount": 500}), Call("c2", "read_file", {"path": "/data/x"})]
    )
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    monkeypatch.setattr(veto, "decide", boom)
    result = Runner.run_sync(agent, "go", run_config=run_config())
    assert not result.interruptions
    assert counters["issue_refund"].value == 0 and counters["read_file"].value == 0
    assert "plugin exploded" in model.seen["c1"] and "plugin exploded" in model.seen["c2"]


def test_guardrail_exception_is_a_refusal(
    veto: Veto, tools: Any, counters: Any, monkeypatch: Any
) -> None:
    from veto_openai import VetoGuard

    def broken(*a: Any, **k: Any) -> Any:
        raise KeyError("bug in the adapter")

    # A bug at either moment (the guardrail, the body gate) is a refusal.
    monkeypatch.setattr(VetoGuard, "at_guardrail", broken)
    monkeypatch.setattr(VetoGuard, "at_body", broken)
    model = ScriptedModel([Call("c1", "read_file", {"path": "/data/a"})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    Runner.run_sync(agent, "go")
    assert counters["read_file"].value == 0
    assert "bug in the adapter" in model.seen["c1"]


# --- handoffs, hosted tools, MCP -------------------------------------------------------------------


def test_handoff_agents_are_guarded_too(veto: Veto, tools: Any, counters: Any) -> None:
    inner = Agent(name="inner", tools=list(tools))
    outer = Agent(name="outer", tools=[], handoffs=[inner])
    inner.handoffs = [outer]  # a cycle
    g = guard_agent(outer, veto)
    (g_inner,) = g.handoffs
    assert g_inner is not inner and g_inner.handoffs[0] is g
    assert all(isinstance(t.tool_input_guardrails[0], VetoToolGuardrail) for t in g_inner.tools)
    assert inner.tools == tools


def test_hosted_tools_kept_only_when_the_policy_allows(veto: Veto) -> None:
    hosted = [
        WebSearchTool(),
        CodeInterpreterTool(
            tool_config={"type": "code_interpreter", "container": {"type": "auto"}}
        ),
    ]
    kept = guard_tools(hosted, veto)
    assert [type(t).__name__ for t in kept] == ["WebSearchTool"]  # code_interpreter: default deny
    assert guard_tools(hosted, veto, hosted_tools="drop") == []
    assert len(guard_tools(hosted, veto, hosted_tools="keep")) == 2
    named = guard_tools(
        hosted, veto, tool_names=ToolNames(aliases={"code_interpreter": "web_search"})
    )
    assert len(named) == 2


def test_hosted_mcp_calls_are_decided_per_call(veto: Veto, tmp_path: Any) -> None:
    tool = HostedMCPTool(
        tool_config={
            "type": "mcp",
            "server_label": "github",
            "server_url": "https://x",
            "require_approval": "never",
        }
    )
    (g,) = guard_tools([tool], veto, agent="bot")
    assert (
        g.tool_config["require_approval"] == "always"
        and tool.tool_config["require_approval"] == "never"
    )
    assert g.on_approval_request is not None

    def ask(name: str, args: dict[str, Any], rid: str) -> Any:
        data = McpApprovalRequest(
            id=rid,
            arguments=json.dumps(args),
            name=name,
            server_label="github",
            type="mcp_approval_request",
        )
        req = MCPToolApprovalRequest(
            ctx_wrapper=RunContextWrapper(context={"veto": {"run_id": "r1"}}), data=data
        )
        return asyncio.run(g.on_approval_request(req))

    # The policy's sources label get_issue (MCP_SOURCE): a hosted call's output never
    # passes Veto, so flow rules could not see it: refused (tests/openai/
    # test_openai_flow_bypasses.py). Without that source it is decided per call.
    refused = ask("get_issue", {"n": 1}, "mcpr_1")
    assert refused["approve"] is False and "cannot be recorded" in refused["reason"]
    denied = ask("delete_repo", {"repo": "x"}, "mcpr_2")
    assert denied["approve"] is False and "github-no-delete" in denied["reason"]
    outcomes = {r.tool: r.outcome for r in veto.audit.query(tenant="acme", limit=None)}
    assert outcomes == {"mcp__github__delete_repo": "denied"}
    plain = Veto.from_yaml(
        POLICY.replace("sources:\n", EXTRA.lstrip("\n") + "sources:\n", 1),
        env="prod",
        tenant="acme",
        db=f"sqlite:///{tmp_path / 'plain.db'}",
    )
    try:
        (g,) = guard_tools([tool], plain, agent="bot")
        assert ask("get_issue", {"n": 1}, "mcpr_3") == {"approve": True}
    finally:
        plain.close()


def test_local_mcp_server_tools_are_guarded(veto: Veto) -> None:
    from agents.mcp import MCPServer
    from mcp.types import CallToolResult, GetPromptResult, ListPromptsResult, TextContent
    from mcp.types import Tool as MCPTool

    ran: list[str] = []

    class FakeServer(MCPServer):
        def __init__(self) -> None:
            super().__init__()

        @property
        def name(self) -> str:
            return "github"

        async def connect(self) -> None:
            return None

        async def cleanup(self) -> None:
            return None

        async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[MCPTool]:
            schema = {"type": "object", "properties": {"repo": {"type": "string"}}}
            return [
                MCPTool(name="get_issue", description="read", inputSchema=schema),
                MCPTool(name="delete_repo", description="delete", inputSchema=schema),
            ]

        async def call_tool(
            self, tool_name: str, arguments: Any, meta: Any = None
        ) -> CallToolResult:
            ran.append(tool_name)
            return CallToolResult(content=[TextContent(type="text", text=f"{tool_name} ok")])

        async def list_prompts(self) -> ListPromptsResult:
            return ListPromptsResult(prompts=[])

        async def get_prompt(self, name: str, arguments: Any = None) -> GetPromptResult:
            raise NotImplementedError

    model = ScriptedModel(
        [Call("m1", "get_issue", {"repo": "a"}), Call("m2", "delete_repo", {"repo": "a"})]
    )
    server = FakeServer()
    agent = guard_agent(Agent(name="bot", model=model, mcp_servers=[server]), veto, run_id="run-1")
    Runner.run_sync(agent, "go", run_config=run_config())
    assert ran == ["get_issue"]
    assert "get_issue ok" in model.seen["m1"]
    assert "Nobody deletes repositories" in model.seen["m2"]
    assert [r.outcome for r in records(veto, "m2")] == ["denied"]
    assert records(veto, "m1")[0].tool == "mcp__github__get_issue"
    # The MCP tool's output joined the run (a source: its text is kept); the denied
    # call's did not.
    observed = list(veto.run_store.load("acme", "run-1", now=veto.clock()))
    assert [(e.tool, e.tool_call_id) for e in observed] == [
        ("@user", None),
        ("mcp__github__get_issue", "m1"),
    ]
    assert "get_issue ok" in observed[1].text and set(observed[1].labels) == {"untrusted"}

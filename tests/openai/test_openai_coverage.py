"""Decide what runs, govern what runs (DESIGN.md 7): every tool that executes inside a guarded
run is decided, however it was reached, on the values the tool body receives.

- tools added after ``guard_agent`` (appended, ``clone(tools=...)``);
- agents used as tools (``Agent.as_tool``): their inner tools, under the same run;
- ``handoff()`` targets and handoffs added after guarding;
- hosted tools, decided for each run's principal;
- arguments the SDK's pydantic validation would convert (``"true"``/``1`` to ``True``,
  ``"1e3"`` to ``1000.0``, ``"5"`` to ``5``) are refused, not decided as one value and
  received as another.
"""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, FunctionTool, Runner, WebSearchTool, function_tool, handoff
from oa_helpers import Call, ScriptedModel

from contract import Counter
from veto_core import Veto
from veto_openai import guard_agent, run_config

POLICY = """
version: 1
name: coverage
default: deny
roles:
  researcher: {}
rules:
  - id: reads
    effect: allow
    tools: [read_file, ask_inner, delegate, act, set_limit, scale]
  - id: no-delete
    effect: deny
    tools: [delete_file]
    reason: Deleting files is not allowed
  - id: no-force
    effect: deny
    tools: [act]
    if: {field: args.force, equals: true}
    reason: Forced actions are not allowed
  - id: big-refunds
    effect: require_approval
    tools: [issue_refund]
    approval: {approvers: [alice], timeout: 60}
    reason: Refunds need approval
  - id: github-read
    effect: allow
    tools: [mcp__github__get_issue]
  - id: github-no-delete
    effect: deny
    tools: [mcp__github__delete_repo]
    reason: Nobody deletes repositories
  - id: search-for-researchers
    effect: allow
    tools: [web_search]
    when: {role: [researcher]}
"""

RUN = "run-cov"
CONTEXT = {"veto": {"run_id": RUN, "principal": {"user": "u1"}}}


@pytest.fixture
def veto(tmp_path: Any) -> Any:
    v = Veto.from_yaml(POLICY, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


class Tools:
    """Function tools whose bodies count their runs and keep what they received."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.received: dict[str, list[Any]] = {}

    def _hit(self, name: str, value: Any) -> str:
        self.counters.setdefault(name, Counter()).hit()
        self.received.setdefault(name, []).append(value)
        return f"{name} ran with {value!r}"

    def runs(self, name: str) -> int:
        c = self.counters.get(name)
        return c.value if c else 0

    def all(self) -> dict[str, FunctionTool]:
        @function_tool
        def read_file(path: str) -> str:
            """Read a file."""
            return self._hit("read_file", path)

        @function_tool
        def delete_file(path: str) -> str:
            """Delete a file."""
            return self._hit("delete_file", path)

        @function_tool
        def issue_refund(amount: float) -> str:
            """Refund."""
            return self._hit("issue_refund", amount)

        @function_tool
        def act(force: bool) -> str:
            """Act, maybe forcefully."""
            return self._hit("act", force)

        @function_tool
        def set_limit(n: int) -> str:
            """Set a limit."""
            return self._hit("set_limit", n)

        @function_tool
        def scale(factor: float) -> str:
            """Scale."""
            return self._hit("scale", factor)

        return {t.name: t for t in (read_file, delete_file, issue_refund, act, set_limit, scale)}


@pytest.fixture
def tools() -> Tools:
    return Tools()


def decisions(veto: Veto, call_id: str) -> list[Any]:
    return [
        r
        for r in veto.audit.query(tenant="acme", limit=None)
        if r.tool_call_id == call_id
        and r.outcome in {"allowed", "denied", "pending_approval", "error"}
    ]


def run(agent: Agent[Any], context: Any = None) -> Any:
    return Runner.run_sync(agent, "go", run_config=run_config(), context=context or CONTEXT)


# --- tools added after guard_agent ------------------------------------------------------------


def test_tool_appended_after_guarding_is_decided(veto: Veto, tools: Tools) -> None:
    t = tools.all()
    model = ScriptedModel([Call("c1", "delete_file", {"path": "/x"})])
    guarded = guard_agent(Agent(name="bot", model=model, tools=[t["read_file"]]), veto)
    guarded.tools.append(t["delete_file"])  # after guarding
    run(guarded)
    assert tools.runs("delete_file") == 0
    assert "no-delete" in model.seen["c1"]
    assert [r.outcome for r in decisions(veto, "c1")] == ["denied"]


def test_clone_with_new_tools_is_decided(veto: Veto, tools: Tools) -> None:
    t = tools.all()
    model = ScriptedModel([Call("c1", "delete_file", {"path": "/x"})])
    guarded = guard_agent(Agent(name="bot", model=model, tools=[t["read_file"]]), veto)
    clone = guarded.clone(tools=[t["delete_file"]])
    run(clone)
    assert tools.runs("delete_file") == 0
    assert "no-delete" in model.seen["c1"]
    assert [r.outcome for r in decisions(veto, "c1")] == ["denied"]


def test_allowed_appended_tool_runs_once_with_its_record(veto: Veto, tools: Tools) -> None:
    t = tools.all()
    model = ScriptedModel([Call("c1", "read_file", {"path": "/data/a"})])
    guarded = guard_agent(Agent(name="bot", model=model, tools=[]), veto)
    guarded.tools.append(t["read_file"])
    run(guarded)
    assert tools.runs("read_file") == 1
    (record,) = decisions(veto, "c1")
    assert record.outcome == "allowed" and record.run_id == RUN


# --- agents used as tools ----------------------------------------------------------------------


def _as_tool_agents(tools: Tools, inner_call: Call) -> tuple[Agent[Any], ScriptedModel]:
    t = tools.all()
    inner_model = ScriptedModel([inner_call], final="inner done")
    inner = Agent(
        name="inner",
        model=inner_model,
        tools=[t["delete_file"], t["read_file"], t["issue_refund"]],
    )
    outer_model = ScriptedModel([Call("o1", "ask_inner", {"input": "please"})])
    outer = Agent(
        name="outer",
        model=outer_model,
        tools=[inner.as_tool(tool_name="ask_inner", tool_description="Ask the inner agent")],
    )
    return outer, inner_model


def test_agent_as_tool_inner_denied_tool_does_not_run(veto: Veto, tools: Tools) -> None:
    outer, inner_model = _as_tool_agents(tools, Call("i1", "delete_file", {"path": "/x"}))
    run(guard_agent(outer, veto))
    assert tools.runs("delete_file") == 0
    assert "no-delete" in inner_model.seen["i1"]
    (record,) = decisions(veto, "i1")  # decided and recorded under the outer run
    assert record.outcome == "denied" and record.run_id == RUN
    assert record.principal.agent == "inner"


def test_agent_as_tool_inner_allowed_tool_runs_once_recorded(veto: Veto, tools: Tools) -> None:
    outer, _ = _as_tool_agents(tools, Call("i1", "read_file", {"path": "/data/a"}))
    run(guard_agent(outer, veto))
    assert tools.runs("read_file") == 1
    assert [r.outcome for r in decisions(veto, "i1")] == ["allowed"]


def test_agent_as_tool_inner_approval_cannot_slip_through(veto: Veto, tools: Tools) -> None:
    """A nested run cannot pause the outer run: the inner call needing approval is
    refused with a reason (resume mode) and recorded; it never runs unapproved."""
    outer, inner_model = _as_tool_agents(tools, Call("i1", "issue_refund", {"amount": 500}))
    result = run(guard_agent(outer, veto))
    assert not result.interruptions
    assert tools.runs("issue_refund") == 0
    assert "cannot pause" in inner_model.seen["i1"]
    assert [r.outcome for r in decisions(veto, "i1")] == ["pending_approval"]


def test_agent_as_tool_inner_approval_waits_in_wait_mode(veto: Veto, tools: Tools) -> None:
    import threading
    import time

    outer, _ = _as_tool_agents(tools, Call("i1", "issue_refund", {"amount": 500}))

    def approve() -> None:
        for _ in range(200):
            pending = [r for r in veto.approvals.list(state="pending") if r.tool_call_id == "i1"]
            if pending:
                veto.approvals.decide(pending[0].id, approver="alice", approve=True)
                return
            time.sleep(0.05)

    t = threading.Thread(target=approve)
    t.start()
    run(guard_agent(outer, veto, approvals="wait", wait_timeout=20))
    t.join()
    assert tools.runs("issue_refund") == 1


def test_agent_run_by_hand_inside_a_tool_is_decided(veto: Veto, tools: Tools) -> None:
    """Not only ``as_tool``: any agent a guarded tool body runs is governed by the guard."""
    t = tools.all()
    inner_model = ScriptedModel([Call("i1", "delete_file", {"path": "/x"})])
    inner = Agent(name="inner", model=inner_model, tools=[t["delete_file"]])

    @function_tool
    def delegate(task: str) -> str:
        """Hand a task to another agent."""
        return str(Runner.run_sync(inner, task, context=CONTEXT).final_output)

    model = ScriptedModel([Call("o1", "delegate", {"task": "clean up"})])
    run(guard_agent(Agent(name="outer", model=model, tools=[delegate]), veto))
    assert tools.runs("delete_file") == 0
    assert "no-delete" in inner_model.seen["i1"]
    assert [r.outcome for r in decisions(veto, "i1")] == ["denied"]


def test_agent_as_tool_inner_mcp_tools_are_decided_by_canonical_name(veto: Veto) -> None:
    from agents.mcp import MCPServer
    from mcp.types import CallToolResult, GetPromptResult, ListPromptsResult, TextContent
    from mcp.types import Tool as MCPTool

    ran: list[str] = []

    class FakeServer(MCPServer):
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

    inner_model = ScriptedModel(
        [Call("m1", "get_issue", {"repo": "a"}), Call("m2", "delete_repo", {"repo": "a"})]
    )
    inner = Agent(name="inner", model=inner_model, mcp_servers=[FakeServer()])
    outer = Agent(
        name="outer",
        model=ScriptedModel([Call("o1", "ask_inner", {"input": "please"})]),
        tools=[inner.as_tool(tool_name="ask_inner", tool_description="Ask the inner agent")],
    )
    run(guard_agent(outer, veto))
    assert ran == ["get_issue"]
    assert "Nobody deletes repositories" in inner_model.seen["m2"]
    assert [(r.tool, r.outcome) for r in decisions(veto, "m1") + decisions(veto, "m2")] == [
        ("mcp__github__get_issue", "allowed"),
        ("mcp__github__delete_repo", "denied"),
    ]


# --- handoffs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["handoff_object", "appended_after_guarding"])
def test_handoff_target_tools_are_decided(veto: Veto, tools: Tools, how: str) -> None:
    t = tools.all()
    inner_model = ScriptedModel([Call("i1", "delete_file", {"path": "/x"})])
    inner = Agent(name="inner", model=inner_model, tools=[t["delete_file"]])
    outer_model = ScriptedModel([Call("h1", "transfer_to_inner", {})])
    if how == "handoff_object":
        guarded = guard_agent(
            Agent(name="outer", model=outer_model, handoffs=[handoff(inner)]), veto
        )
    else:
        guarded = guard_agent(Agent(name="outer", model=outer_model), veto)
        guarded.handoffs.append(inner)
    run(guarded)
    assert tools.runs("delete_file") == 0
    assert "no-delete" in inner_model.seen["i1"]
    assert [r.outcome for r in decisions(veto, "i1")] == ["denied"]
    assert inner.tools == [t["delete_file"]]  # the user's agent is not changed


# --- hosted tools: decided for each run's principal --------------------------------------------


def test_hosted_tools_are_decided_for_each_runs_principal(veto: Veto) -> None:
    model = ScriptedModel([])
    guarded = guard_agent(Agent(name="bot", model=model, tools=[WebSearchTool()]), veto)
    researcher = {"veto": {"run_id": "r1", "principal": {"user": "u1", "roles": ["researcher"]}}}
    run(guarded, researcher)
    run(guarded, {"veto": {"run_id": "r2", "principal": {"user": "u2"}}})
    offered = [[n for n in names if "search" in n] for names in model.tool_names]
    assert offered[0] and not offered[1], offered


# --- decide on what the tool receives ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("act", {"force": "true"}),  # str -> bool
        ("act", {"force": 1}),  # int -> bool
        ("scale", {"factor": "1e3"}),  # str -> float
        ("set_limit", {"n": "5"}),  # str -> int
    ],
)
def test_values_the_schema_would_convert_are_refused(
    veto: Veto, tools: Tools, tool: str, args: dict[str, Any]
) -> None:
    t = tools.all()
    model = ScriptedModel([Call("c1", tool, args)])
    run(guard_agent(Agent(name="bot", model=model, tools=list(t.values())), veto))
    assert tools.runs(tool) == 0, tools.received
    assert "is not of type" in model.seen["c1"]


def test_a_true_force_is_denied_and_false_runs(veto: Veto, tools: Tools) -> None:
    t = tools.all()
    model = ScriptedModel([Call("c1", "act", {"force": True}), Call("c2", "act", {"force": False})])
    run(guard_agent(Agent(name="bot", model=model, tools=[t["act"]]), veto))
    assert tools.received["act"] == [False]
    assert "no-force" in model.seen["c1"]


def test_int_for_float_reaches_the_tool_as_the_same_number(veto: Veto, tools: Tools) -> None:
    t = tools.all()
    model = ScriptedModel([Call("c1", "scale", {"factor": 500})])
    run(guard_agent(Agent(name="bot", model=model, tools=[t["scale"]]), veto))
    assert tools.received["scale"] == [500.0]
    (record,) = decisions(veto, "c1")
    assert record.args == {"factor": 500}


# --- the body gate in raise mode -------------------------------------------------------------------


def test_sdk_only_approval_in_raise_mode_ends_the_run(veto: Veto, tools: Tools) -> None:
    from agents.exceptions import ToolInputGuardrailTripwireTriggered

    t = tools.all()
    model = ScriptedModel([Call("c1", "issue_refund", {"amount": 500})])
    guarded = guard_agent(
        Agent(name="bot", model=model, tools=[t["issue_refund"]]), veto, on_deny="raise"
    )
    result = run(guarded)
    (item,) = result.interruptions
    state = result.to_state()
    state.approve(item)  # in the SDK only: the Veto request is still pending
    with pytest.raises(ToolInputGuardrailTripwireTriggered) as caught:
        Runner.run_sync(guarded, state, run_config=run_config())
    assert tools.runs("issue_refund") == 0
    assert "approved in the SDK only" in caught.value.output.output_info["veto"]["reason"]


def test_schema_memo_keyed_by_json_text_is_as_strict_as_the_values() -> None:
    from veto_openai._calls import ArgumentSchema, parse_arguments

    schema = ArgumentSchema(
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    )
    good = '{"n": 5}'
    for _ in range(2):  # the second check is answered from the memo
        schema.check(parse_arguments(good), text=good)
    schema.check({"n": 5})  # the same value, keyed by its canonical text
    for bad in ('{"n": "5"}', '{"n":5.5}', '{"n": true}', "{}"):
        for _ in range(2):  # a text never found valid is checked every time
            with pytest.raises(ValueError, match="argument"):
                schema.check(parse_arguments(bad), text=bad)

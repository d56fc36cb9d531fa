"""Decide what runs, govern what runs (DESIGN.md 7), for every LangChain integration point.

- Coercion: LangChain validates the model's arguments with the tool's schema *after*
  Veto decided, and pydantic's lax mode turns ``"true"``/``1`` into ``True``, ``"1e3"``
  into ``1000.0`` and ``"5"`` into ``5``. A deny rule on the coerced value must still
  match: the decision is made on what the tool body receives.
- Sub-agents: an agent built with ``create_agent`` used as another agent's tool runs its
  own tool node; its inner tools are decided under the outer call's principal and run.
- Tools contributed after the agent was guarded (another middleware's ``tools``) are
  decided too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, tool
from lc_helpers import observations
from pydantic import BaseModel

from veto_core import Principal, Veto
from veto_langchain import ToolCallDenied, VetoCallbackHandler, VetoMiddleware, guard_tools
from veto_langchain.testing import ScriptedChatModel, tool_call

POLICY = """
version: 1
name: lc-governs
default: deny
rules:
  - {id: deploys, effect: allow, tools: [deploy]}
  - id: no-forced-deploy
    effect: deny
    tools: [deploy]
    if: {field: args.force, equals: true}
    reason: Forced deploys are not allowed
  - id: no-big-batch
    effect: deny
    tools: [deploy]
    if: {any: [{field: args.batch, equals: 5}, {field: args.budget, equals: 1000}]}
    reason: That batch is not allowed
  - {id: research, effect: allow, tools: [researcher, helper_tool]}
  - {id: reads, effect: allow, tools: [read_file]}
  - {id: no-delete, effect: deny, tools: [delete_file], reason: Deleting is not allowed}
"""

PRINCIPAL = Principal(agent="outer-bot", user="u1")
RUN_ID = "run-outer"


class DeployArgs(BaseModel):
    force: bool = False
    batch: int = 1
    budget: float = 0.0


@pytest.fixture
def veto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Veto]:
    monkeypatch.setenv("HOME", str(tmp_path))
    v = Veto.from_yaml(POLICY, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


def records(veto: Veto, tool_name: str) -> list[Any]:
    return [
        r
        for r in veto.audit.query(tenant="acme", limit=None)
        if r.tool == tool_name and r.outcome in ("allowed", "denied", "error")
    ]


def make_deploy(received: list[dict[str, Any]]) -> BaseTool:
    def deploy(force: bool = False, batch: int = 1, budget: float = 0.0) -> str:
        received.append({"force": force, "batch": batch, "budget": budget})
        return "deployed"

    async def adeploy(force: bool = False, batch: int = 1, budget: float = 0.0) -> str:
        return deploy(force, batch, budget)

    return StructuredTool.from_function(
        func=deploy, coroutine=adeploy, name="deploy", description="Deploy.", args_schema=DeployArgs
    )


def one_call_model(name: str, args: dict[str, Any], call_id: str = "c1") -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=[
            AIMessage(content="", tool_calls=[tool_call(name, args, call_id)]),  # type: ignore[list-item]
            AIMessage(content="done"),
        ]
    )


def run_with(
    integration: str, veto: Veto, tools: list[BaseTool], model: Any, *, is_async: bool
) -> tuple[dict[str, str], BaseException | None]:
    options: dict[str, Any] = {"principal": PRINCIPAL, "run_id": RUN_ID}
    config: dict[str, Any] = {}
    if integration == "middleware":
        agent = create_agent(model, tools, middleware=[VetoMiddleware(veto, **options)])
    elif integration == "guard_tools":
        agent = create_agent(model, guard_tools(tools, veto, **options))
    else:
        agent = create_agent(model, tools)
        config = {"callbacks": [VetoCallbackHandler(veto, **options)]}
    inputs: Any = {"messages": [("user", "go")]}
    try:
        if is_async:
            out = asyncio.run(agent.ainvoke(inputs, config))
        else:
            out = agent.invoke(inputs, config)
    except Exception as exc:
        return {}, exc
    return observations(out["messages"]), None


INTEGRATIONS = ["middleware", "guard_tools", "callback"]
COERCIONS = [
    pytest.param({"force": "true"}, {"force": True}, id="str-to-bool"),
    pytest.param({"force": 1}, {"force": True}, id="int-to-bool"),
    pytest.param({"budget": "1e3"}, {"budget": 1000.0}, id="str-1e3-to-float"),
    pytest.param({"batch": "5"}, {"batch": 5}, id="str-to-int"),
]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize(("sent", "coerced"), COERCIONS)
def test_decided_on_the_coerced_value(
    veto: Veto,
    integration: str,
    is_async: bool,
    sent: dict[str, Any],
    coerced: dict[str, Any],
) -> None:
    received: list[dict[str, Any]] = []
    seen, error = run_with(
        integration,
        veto,
        [make_deploy(received)],
        one_call_model("deploy", sent),
        is_async=is_async,
    )
    assert received == [], f"the tool ran with {received} although a deny rule matches"
    (rec,) = records(veto, "deploy")
    assert rec.outcome == "denied", rec
    for key, value in coerced.items():
        assert rec.args[key] == value and type(rec.args[key]) is type(value), rec.args
    if integration == "callback":
        assert isinstance(error, ToolCallDenied), error
    else:
        assert error is None, error
        assert "was not run" in seen["c1"], seen


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_the_same_values_uncoerced_run(veto: Veto, integration: str) -> None:
    received: list[dict[str, Any]] = []
    model = one_call_model("deploy", {"force": False, "batch": 2, "budget": "12.5"})
    _, error = run_with(integration, veto, [make_deploy(received)], model, is_async=False)
    assert error is None, error
    assert received == [{"force": False, "batch": 2, "budget": 12.5}]
    (rec,) = records(veto, "deploy")
    assert rec.outcome == "allowed" and rec.args == {"force": False, "batch": 2, "budget": 12.5}


def test_arguments_the_schema_rejects_are_refused(veto: Veto) -> None:
    received: list[dict[str, Any]] = []
    model = one_call_model("deploy", {"force": "maybe"})
    seen, error = run_with("middleware", veto, [make_deploy(received)], model, is_async=False)
    assert error is None and received == []
    assert "could not be read" in seen["c1"] and "force" in seen["c1"], seen


# --- sub-agents: an agent used as a tool -----------------------------------------------------


class Counts:
    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.n[name] = self.n.get(name, 0) + 1


def inner_tools(counts: Counts) -> list[BaseTool]:
    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        counts.hit("read_file")
        return f"contents of {path}"

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        counts.hit("delete_file")
        return "deleted"

    return [read_file, delete_file]


def researcher_tool(counts: Counts, make_inner: Callable[[], Any]) -> BaseTool:
    """An agent (create_agent, no Veto of its own) wrapped as a tool of the outer agent."""

    @tool
    def researcher(task: str) -> str:
        """Delegate a research task to the research agent."""
        counts.hit("researcher")
        out = make_inner().invoke({"messages": [("user", task)]})
        return str(out["messages"][-1].content)

    @tool
    async def aresearcher(task: str) -> str:  # pragma: no cover - same body, async
        """Delegate a research task to the research agent."""
        counts.hit("researcher")
        out = await make_inner().ainvoke({"messages": [("user", task)]})
        return str(out["messages"][-1].content)

    return StructuredTool.from_function(
        func=researcher.func,
        coroutine=aresearcher.coroutine,
        name="researcher",
        description="Delegate a research task to the research agent.",
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_tools_of_an_agent_used_as_a_tool_are_decided(
    veto: Veto, integration: str, is_async: bool
) -> None:
    counts = Counts()
    inner_model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    tool_call("read_file", {"path": "/data/a"}, "in-1"),  # type: ignore[list-item]
                    tool_call("delete_file", {"path": "/data/a"}, "in-2"),  # type: ignore[list-item]
                ],
            ),
            AIMessage(content="inner done"),
        ]
    )
    tools = [researcher_tool(counts, lambda: create_agent(inner_model, inner_tools(counts)))]
    outer = one_call_model("researcher", {"task": "clean up /data"}, "out-1")
    seen, error = run_with(integration, veto, tools, outer, is_async=is_async)

    assert counts.n.get("delete_file", 0) == 0, "an inner tool ran without a decision"
    (denied,) = records(veto, "delete_file")
    assert denied.outcome == "denied" and tuple(denied.rule_ids) == ("no-delete",)
    for rec in [denied, *records(veto, "read_file")]:
        assert rec.principal.user == PRINCIPAL.user and rec.principal.agent == PRINCIPAL.agent
        assert rec.run_id == RUN_ID
    (outer_rec,) = records(veto, "researcher")
    assert outer_rec.outcome == "allowed"
    if integration == "callback":
        assert isinstance(error, ToolCallDenied) and error.tool == "delete_file", error
    else:
        assert error is None, error
        assert "delete_file" in seen["out-1"] and "Deleting is not allowed" in seen["out-1"]


def test_allowed_inner_tools_run_once_and_are_recorded_once(veto: Veto) -> None:
    counts = Counts()
    inner_model = one_call_model("read_file", {"path": "/data/a"}, "in-1")
    tools = [researcher_tool(counts, lambda: create_agent(inner_model, inner_tools(counts)))]
    outer = one_call_model("researcher", {"task": "read /data/a"}, "out-1")
    seen, error = run_with("middleware", veto, tools, outer, is_async=False)
    assert error is None
    assert counts.n == {"researcher": 1, "read_file": 1}
    assert [r.outcome for r in records(veto, "read_file")] == ["allowed"]
    assert [r.outcome for r in records(veto, "researcher")] == ["allowed"]
    assert seen["out-1"] == "done"


def test_inner_agent_with_its_own_middleware_is_decided_once(veto: Veto) -> None:
    counts = Counts()
    inner_model = one_call_model("read_file", {"path": "/data/a"}, "in-1")

    def make_inner() -> Any:
        return create_agent(
            inner_model,
            inner_tools(counts),
            middleware=[VetoMiddleware(veto, principal=PRINCIPAL, run_id=RUN_ID)],
        )

    tools = [researcher_tool(counts, make_inner)]
    outer = one_call_model("researcher", {"task": "read /data/a"}, "out-1")
    _, error = run_with("middleware", veto, tools, outer, is_async=False)
    assert error is None
    assert counts.n == {"researcher": 1, "read_file": 1}
    assert [r.outcome for r in records(veto, "read_file")] == ["allowed"]


# --- tools contributed after the agent was guarded -----------------------------------------


def test_tools_added_by_another_middleware_are_decided(veto: Veto) -> None:
    counts = Counts()
    read_file, delete_file = inner_tools(counts)

    class AddsTools(AgentMiddleware):
        tools = [delete_file]  # type: ignore[assignment]

    model = one_call_model("delete_file", {"path": "/x"})
    agent = create_agent(
        model,
        [read_file],
        middleware=[VetoMiddleware(veto, principal=PRINCIPAL, run_id=RUN_ID), AddsTools()],
    )
    out = agent.invoke({"messages": [("user", "go")]})
    assert counts.n.get("delete_file", 0) == 0
    msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert "no-delete" in str(msg.content)
    assert [r.outcome for r in records(veto, "delete_file")] == ["denied"]


def test_an_inner_call_reusing_the_outer_name_and_id_is_decided(tmp_path: Path) -> None:
    policy = """
version: 1
name: lc-same-id
default: deny
rules:
  - {id: safe-task, effect: allow, tools: [worker], if: {field: args.task, equals: safe}}
"""
    veto = Veto.from_yaml(policy, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    counts = Counts()

    @tool
    def worker(task: str) -> str:
        """Do a task."""
        counts.hit(task)
        if task == "safe":  # the body calls the same tool again, with the outer call's id
            inner = {"name": "worker", "args": {"task": "evil"}, "id": "c1", "type": "tool_call"}
            return str(worker.invoke(inner))
        return "evil done"

    agent = create_agent(
        one_call_model("worker", {"task": "safe"}, "c1"),
        [worker],
        middleware=[VetoMiddleware(veto, principal=PRINCIPAL, run_id=RUN_ID)],
    )
    out = agent.invoke({"messages": [("user", "go")]})
    assert counts.n == {"safe": 1}, "the inner call with the outer name and id ran undecided"
    assert [(r.args["task"], r.outcome) for r in records(veto, "worker")] == [
        ("safe", "allowed"),
        ("evil", "denied"),
    ]
    msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert "was not run" in str(msg.content)
    veto.close()

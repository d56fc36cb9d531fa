"""Decide what runs, govern what runs (DESIGN.md 7), for the CrewAI integration points.

- Coercion: CrewAI validates the tool input with the tool's ``args_schema`` after the
  hooks ran (pydantic lax mode: ``"true"``/``1`` -> ``True``, ``"1e3"`` -> ``1000.0``,
  ``"5"`` -> ``5``). A deny rule on the coerced value must still match.
- Delegation: "Delegate work to coworker" / "Ask question to coworker" and the coworker's
  own tools are decided, under the same run and user; so is the manager of a
  hierarchical crew; and tools given to an agent after ``install``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crewai.tools import BaseTool, tool
from pydantic import BaseModel

import veto_crewai
from crewai import Agent, Crew, Process, Task
from veto_core import Principal, Veto
from veto_crewai.testing import ScriptedLLM, tool_call

POLICY = """
version: 1
name: crew-governs
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
  - id: delegation
    effect: allow
    tools: [delegate_work_to_coworker, ask_question_to_coworker]
  - {id: reads, effect: allow, tools: [read_file]}
  - {id: no-delete, effect: deny, tools: [delete_file], reason: Deleting is not allowed}
"""

PRINCIPAL = Principal(user="u1")
RUN_ID = "crew-run-1"


@pytest.fixture
def veto(tmp_path: Path) -> Iterator[Veto]:
    v = Veto.from_yaml(POLICY, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


def records(veto: Veto, tool_name: str) -> list[Any]:
    return [
        r
        for r in veto.audit.query(tenant="acme", limit=None)
        if r.tool == tool_name and r.outcome in ("allowed", "denied", "error")
    ]


class DeployArgs(BaseModel):
    force: bool = False
    batch: int = 1
    budget: float = 0.0


def make_deploy(received: list[dict[str, Any]]) -> BaseTool:
    class Deploy(BaseTool):
        name: str = "deploy"
        description: str = "Deploy the service."
        args_schema: type[BaseModel] = DeployArgs

        def _run(self, force: bool = False, batch: int = 1, budget: float = 0.0) -> str:
            received.append({"force": force, "batch": batch, "budget": budget})
            return "deployed"

    return Deploy()


def kickoff(crew: Crew, *, is_async: bool) -> Any:
    if is_async:
        return asyncio.run(crew.akickoff())
    return crew.kickoff()


def one_agent_crew(llm: ScriptedLLM, tools: list[BaseTool], role: str = "Ops Agent") -> Crew:
    agent = Agent(
        role=role,
        goal="Operate",
        backstory="Careful.",
        llm=llm,
        tools=tools,
        allow_delegation=False,
        max_iter=3,
    )
    task = Task(description="Do the job.", expected_output="A summary.", agent=agent)
    return Crew(agents=[agent], tasks=[task])


def run_integration(
    integration: str, veto: Veto, crew_for: Any, tools: list[BaseTool], *, is_async: bool
) -> None:
    options: dict[str, Any] = {"principal": PRINCIPAL, "run_id": RUN_ID}
    if integration == "install":
        veto_crewai.install(veto, **options)
        try:
            kickoff(crew_for(tools), is_async=is_async)
        finally:
            veto_crewai.uninstall(veto)
    elif integration == "scope":
        with veto_crewai.scope(veto, **options):
            kickoff(crew_for(tools), is_async=is_async)
    else:
        kickoff(crew_for(veto_crewai.guard_tools(tools, veto, **options)), is_async=is_async)


COERCIONS = [
    pytest.param({"force": "true"}, {"force": True}, id="str-to-bool"),
    pytest.param({"force": 1}, {"force": True}, id="int-to-bool"),
    pytest.param({"budget": "1e3"}, {"budget": 1000.0}, id="str-1e3-to-float"),
    pytest.param({"batch": "5"}, {"batch": 5}, id="str-to-int"),
]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("integration", ["install", "scope", "guard_tools"])
@pytest.mark.parametrize(("sent", "coerced"), COERCIONS)
def test_decided_on_the_coerced_value(
    veto: Veto, integration: str, is_async: bool, sent: dict[str, Any], coerced: dict[str, Any]
) -> None:
    received: list[dict[str, Any]] = []
    llm = ScriptedLLM(turns=[[tool_call("deploy", sent, "c1")], "Done."])
    run_integration(
        integration,
        veto,
        lambda tools: one_agent_crew(llm, tools),
        [make_deploy(received)],
        is_async=is_async,
    )
    assert received == [], f"the tool ran with {received} although a deny rule matches"
    (rec,) = records(veto, "deploy")
    assert rec.outcome == "denied", rec
    for key, value in coerced.items():
        assert rec.args[key] == value and type(rec.args[key]) is type(value), rec.args
    assert "was not run" in llm.tool_results["c1"], llm.tool_results


@pytest.mark.parametrize("integration", ["install", "guard_tools"])
def test_valid_values_run_and_are_recorded_as_received(veto: Veto, integration: str) -> None:
    received: list[dict[str, Any]] = []
    llm = ScriptedLLM(turns=[[tool_call("deploy", {"batch": 2, "budget": "12.5"}, "c1")], "Ok"])
    run_integration(
        integration,
        veto,
        lambda tools: one_agent_crew(llm, tools),
        [make_deploy(received)],
        is_async=False,
    )
    assert received == [{"force": False, "batch": 2, "budget": 12.5}]
    (rec,) = records(veto, "deploy")
    assert rec.outcome == "allowed"
    assert rec.args == {"force": False, "batch": 2, "budget": 12.5}


def test_input_the_schema_rejects_is_refused(veto: Veto) -> None:
    received: list[dict[str, Any]] = []
    llm = ScriptedLLM(turns=[[tool_call("deploy", {"force": "maybe"}, "c1")], "Ok"])
    run_integration(
        "install",
        veto,
        lambda tools: one_agent_crew(llm, tools),
        [make_deploy(received)],
        is_async=False,
    )
    assert received == []
    assert "force" in llm.tool_results["c1"], llm.tool_results


# --- delegation, hierarchical managers, tools added later ----------------------------------


class Counts:
    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.n[name] = self.n.get(name, 0) + 1


def file_tools(counts: Counts) -> list[BaseTool]:
    @tool("read_file")
    def read_file(path: str) -> str:
        """Read a file."""
        counts.hit("read_file")
        return f"contents of {path}"

    @tool("delete_file")
    def delete_file(path: str) -> str:
        """Delete a file."""
        counts.hit("delete_file")
        return "deleted"

    return [read_file, delete_file]


def worker(llm: ScriptedLLM, tools: list[BaseTool]) -> Agent:
    return Agent(
        role="Files Agent",
        goal="Handle files",
        backstory="Handles files.",
        llm=llm,
        tools=tools,
        allow_delegation=False,
        max_iter=3,
    )


def worker_llm() -> ScriptedLLM:
    return ScriptedLLM(
        turns=[
            [
                tool_call("read_file", {"path": "/data/a"}, "w1"),
                tool_call("delete_file", {"path": "/data/a"}, "w2"),
            ],
            "Worker done.",
        ]
    )


def assert_worker_governed(veto: Veto, counts: Counts) -> None:
    assert counts.n.get("delete_file", 0) == 0, "the coworker's tool ran without a decision"
    (denied,) = records(veto, "delete_file")
    assert denied.outcome == "denied"
    (read,) = records(veto, "read_file")
    assert read.outcome == "allowed" and counts.n.get("read_file") == 1
    for rec in (denied, read):
        assert rec.run_id == RUN_ID and rec.principal.user == PRINCIPAL.user
        assert rec.principal.agent == "Files Agent"


@pytest.mark.parametrize("integration", ["install", "scope"])
@pytest.mark.parametrize(
    "delegation_tool", ["delegate_work_to_coworker", "ask_question_to_coworker"]
)
def test_delegation_and_the_coworkers_tools_are_decided(
    veto: Veto, integration: str, delegation_tool: str
) -> None:
    counts = Counts()
    first = "task" if delegation_tool.startswith("delegate") else "question"
    lead_llm = ScriptedLLM(
        turns=[
            [
                tool_call(
                    delegation_tool,
                    {first: "clean /data", "context": "old files", "coworker": "Files Agent"},
                    "d1",
                )
            ],
            "Lead done.",
        ]
    )

    def crew_for(tools: list[BaseTool]) -> Crew:
        lead = Agent(
            role="Lead Agent",
            goal="Lead",
            backstory="Delegates.",
            llm=lead_llm,
            allow_delegation=True,
            max_iter=3,
        )
        task = Task(description="Clean up.", expected_output="A summary.", agent=lead)
        return Crew(agents=[lead, worker(worker_llm(), tools)], tasks=[task])

    run_integration(integration, veto, crew_for, file_tools(counts), is_async=False)
    (delegated,) = records(veto, delegation_tool)
    assert delegated.outcome == "allowed" and delegated.principal.agent == "Lead Agent"
    assert delegated.run_id == RUN_ID
    assert_worker_governed(veto, counts)


def test_hierarchical_manager_and_workers_are_decided(veto: Veto) -> None:
    counts = Counts()
    manager_llm = ScriptedLLM(
        turns=[
            [
                tool_call(
                    "delegate_work_to_coworker",
                    {"task": "clean /data", "context": "old", "coworker": "Files Agent"},
                    "m1",
                )
            ],
            "Manager done.",
        ]
    )
    task = Task(description="Clean up.", expected_output="A summary.")
    crew = Crew(
        agents=[worker(worker_llm(), file_tools(counts))],
        tasks=[task],
        process=Process.hierarchical,
        manager_llm=manager_llm,
    )
    veto_crewai.install(veto, principal=PRINCIPAL, run_id=RUN_ID)
    try:
        crew.kickoff()
    finally:
        veto_crewai.uninstall(veto)
    (delegated,) = records(veto, "delegate_work_to_coworker")
    assert delegated.outcome == "allowed" and delegated.run_id == RUN_ID
    assert_worker_governed(veto, counts)


def test_tools_added_after_install_are_decided(veto: Veto) -> None:
    counts = Counts()
    read_file, delete_file = file_tools(counts)
    llm = ScriptedLLM(turns=[[tool_call("delete_file", {"path": "/x"}, "c1")], "Ok"])
    crew = one_agent_crew(llm, [read_file])
    veto_crewai.install(veto, principal=PRINCIPAL, run_id=RUN_ID)
    try:
        crew.agents[0].tools.append(delete_file)  # given to the agent after install
        crew.kickoff()
    finally:
        veto_crewai.uninstall(veto)
    assert counts.n.get("delete_file", 0) == 0
    assert [r.outcome for r in records(veto, "delete_file")] == ["denied"]
    assert "no-delete" in llm.tool_results["c1"]

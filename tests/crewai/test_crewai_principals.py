"""Who is calling: two crews in one process, each decided under its own principal; the
CrewAI agent's role as principal.agent and mapped to Veto roles; run ids per kickoff."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from crew_helpers import make_crew, make_tool, run_crew, scripted_llm

import veto_crewai
from contract import Counter, ScriptedCall, ToolSpec
from veto_core import Principal, Veto

POLICY = """
version: 1
name: two-crews
roles:
  support: {}
  intern: {}
rules:
  - id: lookups
    effect: allow
    tools: [lookup]
    when: {role: [support, intern]}
  - id: refunds-support-only
    effect: allow
    tools: [issue_refund]
    when: {role: [support]}
"""

LOOKUP = ToolSpec(name="lookup", param="query", type=str, description="Look something up.")
REFUND = ToolSpec(name="issue_refund", param="amount", type=float, description="Refund money.")
ROLES = {"Support Agent": ["support"], "Intern": ["intern"]}


@pytest.fixture
def veto(tmp_path: Path) -> Veto:
    return Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")


class Overlap:
    """Tool bodies that wait for each other: proves the two crews really ran at once."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=20)
        self.counters = {"lookup": Counter(), "issue_refund": Counter()}

    def tools(self) -> list[Any]:
        lookup = make_tool(LOOKUP, self.counters["lookup"])
        inner = lookup.func  # type: ignore[attr-defined]

        def both_at_once(**kwargs: Any) -> Any:
            self.barrier.wait()
            return inner(**kwargs)

        lookup.func = both_at_once  # type: ignore[attr-defined]
        return [lookup, make_tool(REFUND, self.counters["issue_refund"])]


def _calls(prefix: str) -> list[ScriptedCall]:
    return [
        ScriptedCall(id=f"{prefix}-1", tool="lookup", args={"query": prefix}),
        ScriptedCall(id=f"{prefix}-2", tool="issue_refund", args={"amount": 20}),
    ]


@pytest.mark.parametrize("how", ["install+run_context", "scope", "guard_tools+run_context"])
def test_two_crews_in_one_process_each_under_its_own_principal(veto: Veto, how: str) -> None:
    overlap = Overlap()
    people = {
        "a": (Principal(user="ann", session="s-a"), "Support Agent", "run-a"),
        "b": (Principal(user="bob", session="s-b"), "Intern", "run-b"),
    }
    results: dict[str, Any] = {}
    if how.startswith("install"):
        veto_crewai.install(veto, roles=ROLES)

    def crew_thread(key: str) -> None:
        principal, role, run_id = people[key]
        tools = overlap.tools()
        if how == "scope":
            with veto_crewai.scope(veto, principal=principal, roles=ROLES, run_id=run_id):
                results[key] = run_crew(_calls(key), tools, is_async=False, role=role)
            return
        if how.startswith("guard_tools"):
            tools = veto_crewai.guard_tools(tools, veto, roles=ROLES)
        with veto_crewai.run_context(principal=principal, run_id=run_id):
            results[key] = run_crew(_calls(key), tools, is_async=False, role=role)

    threads = [threading.Thread(target=crew_thread, args=(k,)) for k in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)

    # Both lookups ran (together: the barrier needed both); only the support refund ran.
    assert overlap.counters["lookup"].value == 2
    assert overlap.counters["issue_refund"].value == 1
    assert "refund done" not in results["b"].observations["b-2"]
    assert "issue_refund done: 20" in results["a"].observations["a-2"]

    records = [r for r in veto.audit.query(tenant="acme", limit=None) if r.outcome != "shadow"]
    by_call = {r.tool_call_id: r for r in records}
    assert set(by_call) == {"a-1", "a-2", "b-1", "b-2"}
    for key, (principal, role, run_id) in people.items():
        for n in (1, 2):
            rec = by_call[f"{key}-{n}"]
            assert rec.principal.user == principal.user
            assert rec.principal.session == principal.session
            assert rec.principal.agent == role
            assert tuple(rec.principal.roles) == tuple(ROLES[role])
            assert rec.run_id == run_id
            assert rec.framework == "crewai"
    assert by_call["a-2"].outcome == "allowed"
    assert by_call["b-2"].outcome == "denied"


def test_role_mapping_function_and_unmapped_roles(veto: Veto) -> None:
    counters = {"lookup": Counter(), "issue_refund": Counter()}
    tools = [make_tool(LOOKUP, counters["lookup"]), make_tool(REFUND, counters["issue_refund"])]
    base = Principal(user="u", roles=("intern",))
    # A function decides the roles; returning None keeps the principal's roles.
    veto_crewai.install(
        veto,
        principal=base,
        roles=lambda agent: ["support"] if agent.role.startswith("Senior") else None,
        agent_name=lambda agent: agent.role.lower().replace(" ", "-"),
    )
    senior = run_crew(_calls("s"), tools, is_async=False, role="Senior Support")
    junior = run_crew(_calls("j"), tools, is_async=False, role="Junior Support")
    assert "issue_refund done" in senior.observations["s-2"]
    assert "refunds-support-only" not in junior.observations["j-2"]
    assert "was not run (denied)" in junior.observations["j-2"]
    recs = {r.tool_call_id: r for r in veto.audit.query(tenant="acme", limit=None)}
    assert recs["s-2"].principal.agent == "senior-support"
    assert tuple(recs["s-2"].principal.roles) == ("support",)
    assert tuple(recs["j-2"].principal.roles) == ("intern",)
    assert recs["j-2"].principal.user == "u"


def test_each_kickoff_gets_its_own_run_id(veto: Veto) -> None:
    counters = {"lookup": Counter()}
    tools = [make_tool(LOOKUP, counters["lookup"])]
    veto_crewai.install(veto, roles=ROLES)
    calls = [
        ScriptedCall(id="k-1", tool="lookup", args={"query": "x"}),
        ScriptedCall(id="k-2", tool="lookup", args={"query": "y"}),
    ]
    llm = scripted_llm(calls)
    crew = make_crew(llm, tools)
    crew.kickoff()
    llm.turns = [llm.turns[0], "done"]
    llm._index = 0
    crew.kickoff()
    records = veto.audit.query(tenant="acme", limit=None)
    assert len(records) == 4
    runs = [r.run_id for r in records]
    assert all(runs) and len(set(runs)) == 2
    # Within one kickoff, the parallel calls share the run id.
    first = [r for r in records if r.run_id == runs[0]]
    assert sorted(r.tool_call_id for r in first) == ["k-1", "k-2"]

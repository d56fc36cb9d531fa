"""Runs and data flow with the Agents SDK (DESIGN.md 2.7) beyond the contract: the run
input as input items, agents used as tools (their tools' outputs join the outer run, their
model-written input is not the person's), a run input that cannot be recorded, and an
output that cannot be recorded in raise mode."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from agents import Agent, Runner
from agents.exceptions import ToolInputGuardrailTripwireTriggered
from oa_helpers import Call, ScriptedModel, make_tool

from contract import IBAN, POLICY, TOOL_SPECS, Counter
from veto_core import Veto
from veto_openai import INPUT_GUARDRAIL_NAME, guard_agent, run_config

RUN = "run-flow-1"
CONTEXT = {"veto": {"run_id": RUN, "principal": {"user": "u1", "roles": ["support"]}}}
SUB_AGENT = """  - id: sub-agent
    effect: allow
    tools: [inbox_agent]
"""


@pytest.fixture
def veto(tmp_path: Any) -> Iterator[Veto]:
    policy = POLICY.replace("sources:\n", SUB_AGENT + "sources:\n", 1)
    v = Veto.from_yaml(policy, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


@pytest.fixture
def counters() -> dict[str, Counter]:
    return {s.name: Counter() for s in TOOL_SPECS}


@pytest.fixture
def tools(counters: dict[str, Counter]) -> list[Any]:
    return [make_tool(s, counters[s.name]) for s in TOOL_SPECS]


def events(veto: Veto) -> list[Any]:
    return list(veto.run_store.load("acme", RUN, now=veto.clock()))


def fail_appends(veto: Veto, monkeypatch: pytest.MonkeyPatch, *, user: bool) -> None:
    """The run store fails for the run input (``user``) or for every tool output."""
    from veto_core.runs import RunStoreUnavailable

    store = veto.run_store
    original = store.append

    def append(tenant: Any, run_id: str, event: Any, **kwargs: Any) -> int:
        if (event.tool == "@user") is user:
            raise RunStoreUnavailable("run store is down (test)")
        return int(original(tenant, run_id, event, **kwargs))

    monkeypatch.setattr(store, "append", append)


def test_user_items_of_an_input_list_are_the_persons_words(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": f"Pay {IBAN} please"}]},
        {"role": "assistant", "content": "I will read your inbox first."},
        {"role": "user", "content": "Thanks."},
    ]
    model = ScriptedModel([Call("c1", "send_money", {"iban": IBAN})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    Runner.run_sync(agent, items, run_config=run_config(), context=CONTEXT)
    assert counters["send_money"].value == 1  # pay-named-by-user
    user = [e for e in events(veto) if e.tool == "@user"]
    assert [e.text for e in user] == [f"Pay {IBAN} please\nThanks."]
    assert model.seen["c1"] == f"send_money done: '{IBAN}'"


def test_agent_as_tool_outputs_join_the_run_and_its_input_is_not_the_persons(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    inner_model = ScriptedModel([Call("i1", "read_inbox", {"query": IBAN})], final=IBAN)
    # The inner agent is guarded too: its input (written by the outer model, which may
    # have copied attacker text) must not be recorded as the person's words.
    inner = guard_agent(Agent(name="inbox", model=inner_model, tools=tools), veto)
    sub = inner.as_tool(tool_name="inbox_agent", tool_description="Reads the inbox.")
    outer_model = ScriptedModel(
        [Call("o1", "inbox_agent", {"input": f"Find the mail about {IBAN}"})],
        then=[[Call("o2", "send_money", {"iban": IBAN})]],
    )
    outer = guard_agent(Agent(name="bot", model=outer_model, tools=[sub, *tools]), veto)
    Runner.run_sync(outer, "Handle my mail.", run_config=run_config(), context=CONTEXT)
    assert counters["read_inbox"].value == 1
    assert counters["send_money"].value == 0
    assert "pay-from-inbox" in outer_model.seen["o2"]
    seen = [(e.tool, e.tool_call_id, e.effect) for e in events(veto)]
    assert seen == [
        ("@user", None, "allow"),
        ("read_inbox", "i1", "allow"),
        ("inbox_agent", "o1", "allow"),
    ]
    (person,) = [e for e in events(veto) if e.tool == "@user"]
    assert person.text == "Handle my mail."


def test_unrecorded_run_input_leaves_user_named_values_unallowed(
    veto: Veto,
    tools: list[Any],
    counters: dict[str, Counter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fail_appends(veto, monkeypatch, user=True)
    model = ScriptedModel([Call("c1", "send_money", {"iban": IBAN})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    with caplog.at_level(logging.WARNING, logger="veto_openai"):
        result = Runner.run_sync(agent, f"Pay {IBAN}", run_config=run_config(), context=CONTEXT)
    # The person named the account, but that could not be recorded: the run does not
    # know it, so the rule that allows user-named accounts does not allow it.
    assert counters["send_money"].value == 0
    assert "(denied)" in model.seen["c1"]
    (check,) = result.input_guardrail_results
    assert check.guardrail.get_name() == INPUT_GUARDRAIL_NAME
    assert "run store is down" in check.output.output_info["veto"]["reason"]
    assert "run store is down" in caplog.text


def test_unrecorded_output_ends_the_run_in_raise_mode(
    veto: Veto, tools: list[Any], counters: dict[str, Counter], monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_appends(veto, monkeypatch, user=False)
    model = ScriptedModel([Call("c1", "read_file", {"path": "/data/a"})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto, on_deny="raise")
    with pytest.raises(ToolInputGuardrailTripwireTriggered) as info:
        Runner.run_sync(agent, "go", run_config=run_config(), context=CONTEXT)
    assert counters["read_file"].value == 1  # the body ran; its output never reached the model
    assert "c1" not in model.seen
    assert "run store is down" in info.value.output.output_info["veto"]["reason"]


def test_a_run_without_run_id_withholds_outputs(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    model = ScriptedModel([Call("c1", "read_file", {"path": "/data/a"})])
    agent = guard_agent(Agent(name="bot", model=model, tools=tools), veto)
    Runner.run_sync(agent, "go", run_config=run_config())
    assert counters["read_file"].value == 1
    assert "withheld" in model.seen["c1"] and "without a run_id" in model.seen["c1"]


def test_guard_tools_users_add_the_input_guardrail_themselves(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    from veto_openai import VetoGuard, guard_tools

    guard = VetoGuard(veto)
    model = ScriptedModel([Call("c1", "send_money", {"iban": IBAN})])
    agent = Agent(
        name="bot",
        model=model,
        tools=guard_tools(tools, guard),
        input_guardrails=[guard.input_guardrail],
    )
    Runner.run_sync(agent, f"Pay {IBAN}", run_config=run_config(), context=CONTEXT)
    assert counters["send_money"].value == 1
    assert [(e.tool, e.text) for e in events(veto)] == [
        ("@user", f"Pay {IBAN}"),
        ("send_money", ""),
    ]


def test_handoff_target_outputs_join_the_run(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    inner_model = ScriptedModel([Call("i1", "read_inbox", {"query": IBAN})])
    inner = Agent(name="inbox", model=inner_model, tools=tools)
    outer_model = ScriptedModel([Call("h1", "transfer_to_inbox", {})])
    outer = guard_agent(Agent(name="bot", model=outer_model, handoffs=[inner]), veto)
    Runner.run_sync(outer, "Read my mail.", run_config=run_config(), context=CONTEXT)
    assert counters["read_inbox"].value == 1
    observed = events(veto)
    assert [(e.tool, e.tool_call_id) for e in observed] == [("@user", None), ("read_inbox", "i1")]
    assert IBAN in observed[1].text and set(observed[1].labels) == {"untrusted"}

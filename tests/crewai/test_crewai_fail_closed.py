"""Fail closed where CrewAI fails open: whatever breaks inside the Veto hook (the store, the
approval service, the adapter's own code), the tool body runs zero times and the model is
told why. The first test shows the CrewAI behaviour this guards against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from crew_helpers import make_tool, run_crew
from crewai.hooks import register_before_tool_call_hook, unregister_before_tool_call_hook

import veto_crewai
from contract import POLICY, TOOL_SPECS, Counter, ScriptedCall
from veto_core import Principal, Veto

READ = ScriptedCall(id="c1", tool="read_file", args={"path": "/data/a"})
REFUND = ScriptedCall(id="c1", tool="issue_refund", args={"amount": 500})


@pytest.fixture
def veto(tmp_path: Path) -> Veto:
    return Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")


@pytest.fixture
def counters() -> dict[str, Counter]:
    return {s.name: Counter() for s in TOOL_SPECS}


@pytest.fixture
def tools(counters: dict[str, Counter]) -> list[Any]:
    return [make_tool(s, counters[s.name]) for s in TOOL_SPECS]


def test_crewai_runs_the_tool_when_a_plain_hook_raises(
    tools: list[Any], counters: dict[str, Counter]
) -> None:
    """The hazard (DESIGN.md 7): a hook that raises does not block; CrewAI runs the tool."""

    def naive(ctx: Any) -> bool:
        raise RuntimeError("policy store down")

    register_before_tool_call_hook(naive)
    try:
        result = run_crew([READ], tools, is_async=False)
    finally:
        unregister_before_tool_call_hook(naive)
    assert counters["read_file"].value == 1
    assert result.observations["c1"] == "read_file done: '/data/a'"


def _break_store(veto: Veto, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk I/O error in the audit store")

    monkeypatch.setattr(veto.audit, "record_decision", boom)


def _break_store_unavailable(veto: Veto, monkeypatch: pytest.MonkeyPatch) -> None:
    from veto_core.audit import AuditUnavailable

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AuditUnavailable("database is locked")

    monkeypatch.setattr(veto.audit, "record_decision", boom)


def _break_decide(veto: Veto, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(veto, "authorize_and_wait", boom)


def _break_adapter(veto: Veto, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug in veto_crewai")

    monkeypatch.setattr("veto_crewai.hooks.build_call", boom)
    monkeypatch.setattr("veto_crewai.tools.build_call", boom)


def _break_gate(veto: Veto, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("the gate itself raised")

    monkeypatch.setattr("veto_crewai._gate.from_authorization", boom)


BREAKAGES = {
    "store-raises": (_break_store, "disk I/O error"),
    "store-unavailable": (_break_store_unavailable, "audit unavailable"),
    "veto-raises": (_break_decide, "engine exploded"),
    "adapter-bug": (_break_adapter, "a bug in veto_crewai"),
    "gate-bug": (_break_gate, "the gate itself raised"),
}


@pytest.mark.parametrize("mode", ["install", "guard_tools"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_anything_raising_inside_the_check_blocks_the_call(
    breakage: str,
    is_async: bool,
    mode: str,
    veto: Veto,
    tools: list[Any],
    counters: dict[str, Counter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    brk, needle = BREAKAGES[breakage]
    brk(veto, monkeypatch)
    principal = Principal(user="u1")
    if mode == "install":
        veto_crewai.install(veto, principal=principal)
        result = run_crew([READ], tools, is_async=is_async)
    else:
        guarded = veto_crewai.guard_tools(tools, veto, principal=principal)
        result = run_crew([READ], guarded, is_async=is_async)
    assert counters["read_file"].value == 0
    assert result.error is None
    seen = result.observations["c1"]
    assert needle in seen, seen
    assert "was not run" in seen and " done: " not in seen


def test_approval_store_raising_blocks_the_call(
    veto: Veto, tools: list[Any], counters: dict[str, Counter], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("approval store offline")

    monkeypatch.setattr(veto.approvals, "open_request", boom)
    veto_crewai.install(veto, principal=Principal(user="u1"))
    result = run_crew([REFUND], tools, is_async=False)
    assert counters["issue_refund"].value == 0
    assert "approval store offline" in result.observations["c1"]
    assert "refunds-large" in result.observations["c1"]


def test_approval_wait_raising_blocks_the_call(
    veto: Veto, tools: list[Any], counters: dict[str, Counter], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("lost the approval store while waiting")

    monkeypatch.setattr(veto.approvals, "wait", boom)
    veto_crewai.install(veto, principal=Principal(user="u1"))
    result = run_crew([REFUND], tools, is_async=False)
    assert counters["issue_refund"].value == 0
    assert "lost the approval store" in result.observations["c1"]


def test_a_hook_error_never_escapes_to_crewai(veto: Veto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Called directly with garbage, the hook returns False (block), never raises."""
    hooks = veto_crewai.VetoHooks(veto)

    class Ctx:
        tool_name = "read_file"
        tool_input = ["not", "a", "dict"]
        tool = agent = task = crew = None

    assert hooks.before_tool_call(Ctx()) is False
    assert hooks.before_tool_call(object()) is False
    assert "tool arguments must be an object" in (hooks.after_tool_call(Ctx()) or "")

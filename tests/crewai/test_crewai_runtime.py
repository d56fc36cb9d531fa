"""Runtime behaviour beyond the contract: the event loop stays free during an approval
wait, parallel approvals get one request each, tool-call ids (model ids or derived),
the ReAct text path, guard_tool details, install/uninstall/scope lifecycles."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from crew_helpers import make_crew, make_tool, run_crew, scripted_llm
from crewai.hooks import get_after_tool_call_hooks, get_before_tool_call_hooks

import veto_crewai
from contract import POLICY, TOOL_SPECS, Counter, ScriptedCall, wait_until
from veto_core import Principal, Veto
from veto_crewai.testing import ScriptedLLM, tool_call

SPECS = {s.name: s for s in TOOL_SPECS}


@pytest.fixture
def veto(tmp_path: Path) -> Veto:
    return Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")


@pytest.fixture
def counters() -> dict[str, Counter]:
    return {s.name: Counter() for s in TOOL_SPECS}


@pytest.fixture
def tools(counters: dict[str, Counter]) -> list[Any]:
    return [make_tool(s, counters[s.name]) for s in TOOL_SPECS]


def _approve_when_pending(veto: Veto, n: int, *, together: bool = False) -> threading.Thread:
    """Approve ``n`` requests in the background; with ``together``, only once all ``n``
    are pending at the same time."""
    seen: dict[str, Any] = {"max_pending": 0}

    def loop() -> None:
        done: set[str] = set()
        deadline = time.monotonic() + 20
        while len(done) < n and time.monotonic() < deadline:
            pending = [r for r in veto.approvals.list(state="pending", limit=None)]
            seen["max_pending"] = max(seen["max_pending"], len(pending))
            if together and len(pending) + len(done) < n:
                time.sleep(0.01)
                continue
            for r in pending:
                veto.approvals.decide(r.id, approver="alice", approve=True, via="test")
                done.add(r.id)
            time.sleep(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.seen = seen  # type: ignore[attr-defined]
    thread.start()
    return thread


@pytest.mark.parametrize("mode", ["install", "guard_tools"])
def test_akickoff_waits_for_approval_without_blocking_the_event_loop(
    mode: str, veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    if mode == "install":
        veto_crewai.install(veto, principal=Principal(user="u1"))
    else:
        tools = veto_crewai.guard_tools(tools, veto, principal=Principal(user="u1"))
    call = ScriptedCall(id="c1", tool="issue_refund", args={"amount": 500})
    crew = make_crew(scripted_llm([call]), tools)
    decide_threads: list[str] = []
    real = veto.authorize_and_wait

    def spy(*args: Any, **kwargs: Any) -> Any:
        decide_threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    veto.authorize_and_wait = spy  # type: ignore[method-assign]

    async def main() -> tuple[int, float]:
        ticks = 0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        approver = _approve_when_pending_after(veto, delay=0.5)
        t0 = time.monotonic()
        await crew.akickoff()
        elapsed = time.monotonic() - t0
        stop.set()
        await beat
        approver.join(5)
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main())
    assert counters["issue_refund"].value == 1
    assert elapsed >= 0.5
    # The loop kept ticking (every 10 ms) while the call waited for its approval.
    assert ticks >= int(elapsed / 0.01 * 0.3), (ticks, elapsed)
    assert decide_threads and all(n != "MainThread" for n in decide_threads)


def _approve_when_pending_after(veto: Veto, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        assert wait_until(lambda: bool(veto.approvals.list(state="pending", limit=None)), 10)
        for r in veto.approvals.list(state="pending", limit=None):
            veto.approvals.decide(r.id, approver="alice", approve=True, via="test")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_guarded_tool_arun_decides_off_the_event_loop(veto: Veto) -> None:
    counter = Counter()
    from crewai.tools import tool

    @tool("issue_refund")
    async def issue_refund(amount: float) -> str:
        """Refund money."""
        counter.hit()
        return f"refunded {amount}"

    guarded = veto_crewai.guard_tool(issue_refund, veto, principal=Principal(user="u1"))

    async def main() -> tuple[Any, int]:
        ticks = 0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        approver = _approve_when_pending_after(veto, delay=0.3)
        out = await guarded.arun(amount=500)
        stop.set()
        await beat
        approver.join(5)
        return out, ticks

    out, ticks = asyncio.run(main())
    assert out == "refunded 500.0" and counter.value == 1
    assert ticks >= 10


def test_parallel_approvals_each_get_their_own_request(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    veto_crewai.install(veto, principal=Principal(user="u1"), run_id="r-par")
    calls = [
        ScriptedCall(id="p1", tool="issue_refund", args={"amount": 500}),
        ScriptedCall(id="p2", tool="issue_refund", args={"amount": 500}),
        ScriptedCall(id="p3", tool="issue_refund", args={"amount": 600}),
    ]
    approver = _approve_when_pending(veto, 3, together=True)
    result = run_crew(calls, tools, is_async=False)
    approver.join(10)
    # All three waited at the same time (three CrewAI worker threads), each with its own
    # request, even the two with identical arguments; each ran once, after its approval.
    assert approver.seen["max_pending"] == 3  # type: ignore[attr-defined]
    requests = veto.approvals.list(limit=None)
    assert sorted(r.tool_call_id for r in requests) == ["p1", "p2", "p3"]
    assert len({r.id for r in requests}) == 3
    assert all(r.consumed_at is not None for r in requests)
    assert counters["issue_refund"].value == 3
    for cid in ("p1", "p2", "p3"):
        assert "issue_refund done" in result.observations[cid]


def _expected_id(run_id: str, agent: str, tool: str, args: dict[str, Any], n: int) -> str:
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    material = json.dumps([run_id, agent, tool, canonical, n], ensure_ascii=False)
    return "crewai-" + hashlib.sha256(material.encode()).hexdigest()[:24]


def test_react_text_path_is_decided_with_derived_stable_ids(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    veto_crewai.install(veto, principal=Principal(user="u1"), run_id="r-react")
    read = 'Thought: read it\nAction: read_file\nAction Input: {"path": "/data/a"}'
    llm = ScriptedLLM(
        function_calling=False,
        turns=[
            read,
            'Thought: delete it\nAction: delete_file\nAction Input: {"path": "/data/a"}',
            read,
            "Thought: done\nFinal Answer: All done.",
        ],
    )
    make_crew(llm, tools).kickoff()
    # The repeated read is answered from CrewAI's tool cache, but only after the hook
    # decided it: a cached answer is decided and recorded like any call.
    assert counters["read_file"].value == 1
    assert counters["delete_file"].value == 0
    shown = "\n".join(str(m.get("content")) for m in llm.transcript if isinstance(m, dict))
    assert "Deleting files is not allowed [no-delete]" in shown
    records = veto.audit.query(tenant="acme", limit=None)
    assert [(r.tool, r.outcome) for r in records] == [
        ("read_file", "allowed"),
        ("delete_file", "denied"),
        ("read_file", "allowed"),
    ]
    agent = "Support Agent"
    assert [r.tool_call_id for r in records] == [
        _expected_id("r-react", agent, "read_file", {"path": "/data/a"}, 0),
        _expected_id("r-react", agent, "delete_file", {"path": "/data/a"}, 0),
        _expected_id("r-react", agent, "read_file", {"path": "/data/a"}, 1),
    ]


def test_model_tool_call_ids_are_used_and_placeholders_are_not(
    veto: Veto, tools: list[Any]
) -> None:
    veto_crewai.install(veto, principal=Principal(user="u1"), run_id="r-ids")
    llm = ScriptedLLM(
        turns=[
            [
                tool_call("read_file", {"path": "/data/a"}, "call_Zx81provider"),
                tool_call("read_file", {"path": "/data/b"}, "call_140234112"),  # CrewAI's id()
            ],
            "done",
        ]
    )
    make_crew(llm, tools).kickoff()
    ids = sorted(r.tool_call_id for r in veto.audit.query(tenant="acme", limit=None))
    derived = _expected_id("r-ids", "Support Agent", "read_file", {"path": "/data/b"}, 0)
    assert ids == sorted(["call_Zx81provider", derived])


def test_guard_tool_keeps_the_tool_and_decides_direct_calls(
    veto: Veto, counters: dict[str, Counter]
) -> None:
    for style in ("decorator", "class"):
        inner = make_tool(SPECS["delete_file"], counters["delete_file"], style=style)
        guarded = veto_crewai.guard_tool(inner, veto, principal=Principal(user="u1"))
        assert (guarded.name, guarded.description) == (inner.name, inner.description)
        assert guarded.args_schema is inner.args_schema
        out = guarded.run(path="/x")
        assert out.startswith("Veto: tool call 'delete_file' was not run (denied)")
        assert "[no-delete]" in out
        raising = veto_crewai.guard_tool(inner, veto, on_deny="raise")
        with pytest.raises(veto_crewai.ToolCallDenied) as info:
            raising.run(path="/x")
        assert info.value.outcome == "denied" and info.value.tool == "delete_file"
        assert info.value.tool_call_id and info.value.tool_call_id.startswith("crewai-")
    assert counters["delete_file"].value == 0
    read = make_tool(SPECS["read_file"], counters["read_file"], style="class")
    assert veto_crewai.guard_tool(read, veto).run(path="/data/a") == "read_file done: '/data/a'"
    assert counters["read_file"].value == 1
    with pytest.raises(ValueError, match="already guarded"):
        veto_crewai.guard_tool(veto_crewai.guard_tool(read, veto), veto)
    with pytest.raises(TypeError):
        veto_crewai.guard_tool(lambda: None, veto)  # type: ignore[arg-type]


def test_guarded_tools_are_never_answered_from_the_cache(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    """CrewAI caches tool results per (tool, input); a guarded tool opts out, so the
    second identical call is decided (and recorded) again."""
    guarded = veto_crewai.guard_tools(tools, veto, principal=Principal(user="u1"))
    same = [tool_call("read_file", {"path": "/data/a"}, "r1")]
    again = [tool_call("read_file", {"path": "/data/a"}, "r2")]
    llm = ScriptedLLM(turns=[same, again, "done"])
    make_crew(llm, guarded).kickoff()
    assert counters["read_file"].value == 2
    assert sorted(r.tool_call_id for r in veto.audit.query(tenant="acme", limit=None)) == [
        "r1",
        "r2",
    ]


def test_hook_defers_to_a_guarded_tool_of_the_same_veto(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    veto_crewai.install(veto, principal=Principal(user="u1"))
    guarded = veto_crewai.guard_tools(tools, veto, principal=Principal(user="u1"))
    run_crew(
        [ScriptedCall(id="c1", tool="read_file", args={"path": "/data/a"})], guarded, is_async=False
    )
    assert counters["read_file"].value == 1
    assert [r.tool_call_id for r in veto.audit.query(tenant="acme", limit=None)] == ["c1"]


def test_install_replaces_uninstall_removes(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    before = len(get_before_tool_call_hooks()), len(get_after_tool_call_hooks())
    first = veto_crewai.install(veto)
    second = veto_crewai.install(veto, principal=Principal(user="u2"))
    assert veto_crewai.installed() == [second] and first is not second
    assert len(get_before_tool_call_hooks()) == before[0] + 1
    assert len(get_after_tool_call_hooks()) == before[1] + 1
    assert veto_crewai.uninstall(veto) == 1
    assert veto_crewai.uninstall() == 0
    assert (len(get_before_tool_call_hooks()), len(get_after_tool_call_hooks())) == before
    # Uninstalled: the tool runs undecided (nothing recorded).
    run_crew(
        [ScriptedCall(id="c1", tool="delete_file", args={"path": "/x"})], tools, is_async=False
    )
    assert counters["delete_file"].value == 1
    assert veto.audit.query(tenant="acme", limit=None) == []


def test_scope_governs_only_its_own_block(
    veto: Veto, tools: list[Any], counters: dict[str, Counter]
) -> None:
    inside_started = threading.Event()
    release = threading.Event()
    results: dict[str, Any] = {}

    def outside() -> None:
        # Runs while the other thread is inside scope(): not governed by it.
        inside_started.wait(10)
        results["outside"] = run_crew(
            [ScriptedCall(id="o1", tool="delete_file", args={"path": "/x"})], tools, is_async=False
        )
        release.set()

    thread = threading.Thread(target=outside)
    thread.start()
    with veto_crewai.scope(veto, principal=Principal(user="u1")):
        inside_started.set()
        release.wait(30)
        results["inside"] = run_crew(
            [ScriptedCall(id="i1", tool="delete_file", args={"path": "/x"})], tools, is_async=False
        )
    thread.join(30)
    assert counters["delete_file"].value == 1  # the outside call only
    assert "no-delete" in results["inside"].observations["i1"]
    assert results["outside"].observations["o1"] == "delete_file done: '/x'"
    assert [r.tool_call_id for r in veto.audit.query(tenant="acme", limit=None)] == ["i1"]
    # Left the block: nothing registered any more.
    run_crew(
        [ScriptedCall(id="a1", tool="delete_file", args={"path": "/x"})], tools, is_async=False
    )
    assert counters["delete_file"].value == 2

"""VetoMiddleware beyond the shared contract: LangGraph interrupt/resume, per-run context,
tool-name canonicalization, on_deny="raise", placement before retries, async not blocking."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ToolRetryMiddleware
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from veto_core import Principal, Veto
from veto_langchain import ToolCallDenied, ToolNames, VetoContext, VetoMiddleware
from veto_langchain.testing import ScriptedChatModel, tool_call

POLICY = """
version: 1
name: lc
roles: {support: {}, ops: {}}
rules:
  - {id: reads, effect: allow, tools: [read_file]}
  - {id: no-delete, effect: deny, tools: [delete_file], reason: "Deleting is not allowed"}
  - id: big-refunds
    effect: require_approval
    tools: [issue_refund]
    approval: {approvers: [alice], timeout: 30s}
    reason: "Refunds need a finance approver"
  - {id: prod-deploys, effect: allow, tools: [deploy], when: {env: [prod], role: [ops]}}
  - {id: github-reads, effect: allow, tools: ["mcp__github__get_*"]}
"""


@pytest.fixture
def veto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOME", str(tmp_path))
    v = Veto.from_yaml(POLICY, env="dev", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


class Runs:
    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.n[name] = self.n.get(name, 0) + 1


@pytest.fixture
def runs() -> Runs:
    return Runs()


def make_tools(runs: Runs) -> list[Any]:
    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        runs.hit("read_file")
        return f"contents of {path}"

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        runs.hit("delete_file")
        return "deleted"

    @tool
    def issue_refund(amount: float) -> str:
        """Refund."""
        runs.hit("issue_refund")
        return f"refunded {amount}"

    @tool
    def deploy(service: str) -> str:
        """Deploy."""
        runs.hit("deploy")
        return "deployed"

    return [read_file, delete_file, issue_refund, deploy]


def model(*calls: dict[str, Any]) -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=[AIMessage(content="", tool_calls=list(calls)), AIMessage(content="done")]  # type: ignore[arg-type]
    )


def tool_messages(out: dict[str, Any]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in out["messages"] if isinstance(m, ToolMessage)}


def decisions(veto: Veto, tool_call_id: str) -> list[Any]:
    return [
        r
        for r in veto.audit.query(tenant="acme", limit=None)
        if r.tool_call_id == tool_call_id and r.outcome in {"allowed", "denied", "pending_approval"}
    ]


# --- interrupt / resume (Must show) ---------------------------------------------------------


def interrupting_agent(veto: Veto, runs: Runs) -> tuple[Any, dict[str, Any]]:
    agent = create_agent(
        model(tool_call("issue_refund", {"amount": 500}, "c1")),
        make_tools(runs),
        middleware=[VetoMiddleware(veto, principal=Principal(agent="bot", user="u1"))],
        checkpointer=InMemorySaver(),
    )
    return agent, {"configurable": {"thread_id": f"t-{uuid.uuid4()}"}}


def test_interrupt_approve_in_store_then_resume_runs_exactly_once(veto: Veto, runs: Runs) -> None:
    agent, config = interrupting_agent(veto, runs)
    out = agent.invoke({"messages": [("user", "refund")]}, config)
    (intr,) = out["__interrupt__"]
    payload = intr.value
    assert payload["type"] == "veto.approval_required"
    assert payload["tool"] == "issue_refund" and payload["args"] == {"amount": 500}
    assert payload["rule_ids"] == ["big-refunds"] and payload["approvers"] == ["alice"]
    assert "Refunds need a finance approver [big-refunds]" in payload["reasons"]
    assert payload["run_id"] == config["configurable"]["thread_id"]
    assert runs.n.get("issue_refund", 0) == 0
    request = veto.approvals.get(payload["request_id"])
    assert str(request.state) == "pending" and request.tool_call_id == "c1"

    veto.approvals.decide(payload["request_id"], approver="alice", approve=True, via="test")
    out = agent.invoke(Command(resume={intr.id: "ok"}), config)
    assert runs.n["issue_refund"] == 1
    assert tool_messages(out)["c1"].content == "refunded 500.0"
    # The node ran twice (interrupt, resume) but the call was decided and requested once.
    assert len(decisions(veto, "c1")) == 1
    assert len(veto.approvals.list(tenant="acme")) == 1
    outcomes = [r.outcome for r in veto.audit.query(tenant="acme", limit=None)]
    assert outcomes.count("approval_requested") == 1
    assert outcomes.count("approval_consumed") == 1
    assert veto.audit.verify().ok


def test_interrupt_denied_in_store_leaves_zero_runs(veto: Veto, runs: Runs) -> None:
    agent, config = interrupting_agent(veto, runs)
    out = agent.invoke({"messages": [("user", "refund")]}, config)
    (intr,) = out["__interrupt__"]
    veto.approvals.decide(
        intr.value["request_id"], approver="alice", approve=False, via="test", reason="no"
    )
    out = agent.invoke(Command(resume={"approved": True}), config)
    assert runs.n.get("issue_refund", 0) == 0
    msg = tool_messages(out)["c1"]
    assert msg.status == "error" and "rejected" in msg.content and "big-refunds" in msg.content
    assert len(decisions(veto, "c1")) == 1


def test_forged_resume_without_store_approval_does_not_run(veto: Veto, runs: Runs) -> None:
    agent, config = interrupting_agent(veto, runs)
    out = agent.invoke({"messages": [("user", "refund")]}, config)
    (intr,) = out["__interrupt__"]
    out = agent.invoke(Command(resume={"approved": True}), config)
    assert runs.n.get("issue_refund", 0) == 0
    msg = tool_messages(out)["c1"]
    assert msg.status == "error" and "pending" in msg.content
    # Nothing was consumed: the request is still pending for a real approver.
    assert str(veto.approvals.get(intr.value["request_id"]).state) == "pending"
    assert len(decisions(veto, "c1")) == 1


def test_interrupt_resume_async(veto: Veto, runs: Runs) -> None:
    agent, config = interrupting_agent(veto, runs)

    async def go() -> dict[str, Any]:
        out = await agent.ainvoke({"messages": [("user", "refund")]}, config)
        (intr,) = out["__interrupt__"]
        veto.approvals.decide(intr.value["request_id"], approver="alice", approve=True, via="t")
        return await agent.ainvoke(Command(resume=True), config)

    out = asyncio.run(go())
    assert runs.n["issue_refund"] == 1 and tool_messages(out)["c1"].status == "success"
    assert len(decisions(veto, "c1")) == 1


def test_approval_interrupt_without_checkpointer_fails_closed(veto: Veto, runs: Runs) -> None:
    agent = create_agent(
        model(tool_call("issue_refund", {"amount": 500}, "c1")),
        make_tools(runs),
        middleware=[VetoMiddleware(veto, approval="interrupt")],
    )
    msg = tool_messages(agent.invoke({"messages": [("user", "refund")]}))["c1"]
    assert msg.status == "error" and "no checkpointer" in msg.content
    assert runs.n.get("issue_refund", 0) == 0


# --- on_deny, context, names ----------------------------------------------------------------


def test_on_deny_raise(veto: Veto, runs: Runs) -> None:
    agent = create_agent(
        model(tool_call("delete_file", {"path": "/x"}, "c1")),
        make_tools(runs),
        middleware=[VetoMiddleware(veto, on_deny="raise")],
    )
    with pytest.raises(ToolCallDenied) as info:
        agent.invoke({"messages": [("user", "go")]})
    err = info.value
    assert err.outcome == "denied" and err.tool == "delete_file" and err.tool_call_id == "c1"
    assert err.decision is not None and err.decision.deciding_rule_ids == ("no-delete",)
    assert "Deleting is not allowed [no-delete]" in str(err)
    assert runs.n.get("delete_file", 0) == 0


def test_env_and_principal_overridable_per_run(veto: Veto, runs: Runs) -> None:
    mw = VetoMiddleware(veto, principal=Principal(agent="bot", roles=("support",), user="u1"))

    def go(**kw: Any) -> ToolMessage:
        agent = create_agent(
            model(tool_call("deploy", {"service": "api"}, "c1")), make_tools(runs), middleware=[mw]
        )
        return tool_messages(agent.invoke({"messages": [("user", "go")]}, **kw))["c1"]

    assert go().status == "error"  # env dev, role support
    ops = Principal(agent="bot", roles=("ops",), user="u2")
    assert go(config={"configurable": {"veto": VetoContext(env="prod")}}).status == "error"
    msg = go(
        config={
            "configurable": {"veto": {"env": "prod", "principal": {"roles": ["ops"], "user": "u2"}}}
        }
    )
    assert msg.status == "success"
    msg = go(context=VetoContext(env="prod", principal=ops, run_id="run-7"))
    assert msg.status == "success"
    assert runs.n["deploy"] == 2
    last = veto.audit.query(tenant="acme", limit=None)[-1]
    assert last.env == "prod" and last.principal.user == "u2" and last.run_id == "run-7"
    assert last.framework == "langchain"


def test_mcp_tool_names_are_canonicalized(veto: Veto, runs: Runs) -> None:
    @tool
    def github_get_issue(number: int) -> str:
        """Get an issue (as MultiServerMCPClient(tool_name_prefix=True) names it)."""
        runs.hit("gh")
        return "issue"

    @tool
    def get_pull(number: int) -> str:
        """A bare MCP tool name (no prefix)."""
        runs.hit("pull")
        return "pull"

    @tool
    def github_delete_repo(name: str) -> str:
        """Not allowed."""
        runs.hit("del")
        return "gone"

    names = ToolNames(mcp_servers=("git", "github"), mcp_tools={"get_pull": "github"})
    agent = create_agent(
        model(
            tool_call("github_get_issue", {"number": 1}, "c1"),
            tool_call("get_pull", {"number": 2}, "c2"),
            tool_call("github_delete_repo", {"name": "x"}, "c3"),
        ),
        [github_get_issue, get_pull, github_delete_repo],
        middleware=[VetoMiddleware(veto, tool_names=names)],
    )
    msgs = tool_messages(agent.invoke({"messages": [("user", "go")]}))
    assert runs.n == {"gh": 1, "pull": 1}
    assert msgs["c3"].status == "error"
    tools = {r.tool_call_id: r.tool for r in veto.audit.query(tenant="acme", limit=None)}
    assert tools == {
        "c1": "mcp__github__get_issue",
        "c2": "mcp__github__get_pull",
        "c3": "mcp__github__delete_repo",
    }
    assert ToolNames(aliases={"s": "web.search"}).canonical("s") == "web.search"
    assert ToolNames().canonical("mcp__a__b") == "mcp__a__b"


def test_malformed_call_is_blocked_without_calling_the_handler(veto: Veto) -> None:
    class Req:
        tool_call = {"name": "read_file", "args": ["not", "a", "dict"], "id": "c1"}
        runtime = None

    def handler(_: Any) -> Any:
        raise AssertionError("the tool must not run")

    out = VetoMiddleware(veto).wrap_tool_call(Req(), handler)
    assert isinstance(out, ToolMessage) and out.status == "error"
    assert "could not be read" in str(out.content)


# --- placement: authorization before retries ------------------------------------------------


def test_authorization_before_retry_middleware(veto: Veto) -> None:
    attempts = {"n": 0}

    @tool
    def read_file(path: str) -> str:
        """Flaky read."""
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError("flaky")
        return "ok"

    agent = create_agent(
        model(tool_call("read_file", {"path": "/a"}, "c1")),
        [read_file],
        middleware=[
            VetoMiddleware(veto),
            ToolRetryMiddleware(max_retries=3, initial_delay=0.0, jitter=False),
        ],
    )
    msgs = tool_messages(agent.invoke({"messages": [("user", "go")]}))
    assert msgs["c1"].content == "ok" and attempts["n"] == 3
    assert len(decisions(veto, "c1")) == 1  # one decision, however many retries


# --- async never blocks the event loop --------------------------------------------------------


def test_async_wait_for_approval_does_not_block_the_event_loop(veto: Veto, runs: Runs) -> None:
    agent = create_agent(
        model(tool_call("issue_refund", {"amount": 500}, "c1")),
        make_tools(runs),
        middleware=[VetoMiddleware(veto, principal=Principal(user="u1"))],
    )

    def approver() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = veto.approvals.list(tenant="acme", state="pending")
            if pending:
                time.sleep(0.5)  # the agent is waiting; the loop must keep ticking
                veto.approvals.decide(pending[0].id, approver="alice", approve=True, via="t")
                return
            time.sleep(0.02)

    async def go() -> tuple[dict[str, Any], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        out = await agent.ainvoke({"messages": [("user", "go")]})
        done.set()
        await t
        return out, ticks

    thread = threading.Thread(target=approver)
    thread.start()
    out, ticks = asyncio.run(go())
    thread.join()
    assert runs.n["issue_refund"] == 1 and tool_messages(out)["c1"].status == "success"
    assert ticks >= 20, ticks  # ~50 expected over the 0.5 s wait; a blocked loop gives ~1

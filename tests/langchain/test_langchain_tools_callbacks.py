"""guard_tool outside agents, and what VetoCallbackHandler guarantees where it cannot answer
the model: zero runs, and the application gets ToolCallDenied with the reason."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from veto_core import Principal, Veto
from veto_langchain import ToolCallDenied, VetoCallbackHandler, guard_tool, guard_tools

POLICY = """
version: 1
name: lc-tools
rules:
  - {id: reads, effect: allow, tools: [read_file]}
  - {id: no-delete, effect: deny, tools: [delete_file], reason: "Deleting is not allowed"}
  - id: refunds
    effect: require_approval
    tools: [issue_refund]
    approval: {approvers: [alice], timeout: 1s}
"""


@pytest.fixture
def veto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOME", str(tmp_path))
    v = Veto.from_yaml(POLICY, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


runs: dict[str, int] = {}


@tool
def read_file(path: str) -> str:
    """Read."""
    runs["read_file"] = runs.get("read_file", 0) + 1
    return f"contents of {path}"


@tool
def delete_file(path: str) -> str:
    """Delete."""
    runs["delete_file"] = runs.get("delete_file", 0) + 1
    return "deleted"


@tool
def issue_refund(amount: float) -> str:
    """Refund."""
    runs["issue_refund"] = runs.get("issue_refund", 0) + 1
    return "refunded"


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


def approve_when_pending(veto: Veto, approve: bool) -> threading.Thread:
    def loop() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pending = veto.approvals.list(tenant="acme", state="pending")
            if pending:
                veto.approvals.decide(pending[0].id, approver="alice", approve=approve, via="t")
                return
            time.sleep(0.02)

    t = threading.Thread(target=loop)
    t.start()
    return t


# --- guard_tool ---------------------------------------------------------------------------


def test_guarded_tool_keeps_the_tools_interface(veto: Veto) -> None:
    g = guard_tool(read_file, veto)
    assert g.name == "read_file" and g.description == read_file.description
    assert g.tool_call_schema.model_json_schema() == read_file.tool_call_schema.model_json_schema()
    with pytest.raises(ValueError, match="already guarded"):
        guard_tool(g, veto)


def test_guarded_tool_direct_invoke(veto: Veto) -> None:
    read, delete = guard_tools([read_file, delete_file], veto)
    assert read.invoke({"path": "/a"}) == "contents of /a"
    with pytest.raises(ToolCallDenied, match=r"Deleting is not allowed \[no-delete\]"):
        delete.invoke({"path": "/a"})
    # Invoked with a tool call (as agents do), the model gets an error ToolMessage instead.
    msg = delete.invoke(
        {"name": "delete_file", "args": {"path": "/a"}, "id": "c9", "type": "tool_call"}
    )
    assert isinstance(msg, ToolMessage) and msg.status == "error" and "no-delete" in msg.content
    assert runs == {"read_file": 1}


def test_guarded_tool_async_and_approval(veto: Veto) -> None:
    refund = guard_tool(issue_refund, veto, principal=Principal(user="u1"))
    t = approve_when_pending(veto, approve=True)
    assert asyncio.run(refund.ainvoke({"amount": 5})) == "refunded"
    t.join()
    t = approve_when_pending(veto, approve=False)
    with pytest.raises(ToolCallDenied) as info:
        refund.invoke({"amount": 6})
    t.join()
    assert info.value.outcome == "rejected"
    assert runs == {"issue_refund": 1}


# --- the callback handler -------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_callback_stops_denied_calls_and_tells_the_application(veto: Veto, is_async: bool) -> None:
    handler = VetoCallbackHandler(veto)
    config: Any = {"callbacks": [handler]}

    def call(t: Any, args: dict[str, Any]) -> Any:
        return asyncio.run(t.ainvoke(args, config)) if is_async else t.invoke(args, config)

    assert call(read_file, {"path": "/a"}) == "contents of /a"
    with pytest.raises(ToolCallDenied) as info:
        call(delete_file, {"path": "/a"})
    assert info.value.outcome == "denied" and "no-delete" in info.value.reason
    t = approve_when_pending(veto, approve=False)
    with pytest.raises(ToolCallDenied) as info:
        call(issue_refund, {"amount": 500})
    t.join()
    assert info.value.outcome == "rejected"
    t0 = time.monotonic()
    with pytest.raises(ToolCallDenied) as info:
        call(issue_refund, {"amount": 501})  # nobody decides: blocks in place, then expires
    assert info.value.outcome == "expired" and time.monotonic() - t0 >= 0.9
    t = approve_when_pending(veto, approve=True)
    assert call(issue_refund, {"amount": 502}) == "refunded"
    t.join()
    assert runs == {"read_file": 1, "issue_refund": 1}
    outcomes = [r.outcome for r in veto.audit.query(tenant="acme", limit=None)]
    assert outcomes.count("allowed") == 1 and outcomes.count("denied") == 1
    assert outcomes.count("pending_approval") == 3


def test_callback_fails_closed_on_errors(veto: Veto, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("kaput")

    monkeypatch.setattr(veto, "authorize_and_wait", boom)
    with pytest.raises(ToolCallDenied, match="kaput"):
        read_file.invoke({"path": "/a"}, {"callbacks": [VetoCallbackHandler(veto)]})
    assert runs == {}

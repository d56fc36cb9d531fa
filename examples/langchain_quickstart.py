"""Veto + LangChain in one screen, offline: allow, deny, and an approval that pauses the
agent (LangGraph interrupt), is approved in the approval store, and resumes.

    uv run python examples/langchain_quickstart.py

The chat model is scripted (no API key, no network); swap in any real chat model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from veto_core import Principal, Veto
from veto_langchain import VetoMiddleware
from veto_langchain.testing import ScriptedChatModel, tool_call

POLICY = """
version: 1
name: quickstart
rules:
  - id: crm-reads
    effect: allow
    tools: [lookup_customer]
  - id: refunds-small
    effect: allow
    tools: [issue_refund]
    if: {field: args.amount, less_or_equal: 100}
  - id: refunds-large
    effect: require_approval
    tools: [issue_refund]
    if: {field: args.amount, greater_than: 100}
    approval: {approvers: [alice], timeout: 30m}
    reason: Refunds over 100 need a finance approver
  - id: no-external-mail
    effect: deny
    tools: [send_email]
    if: {not: {field: args.to, email_domain_in: [example.com]}}
    reason: Mail may only go to company addresses
"""


@tool
def lookup_customer(email: str) -> str:
    """Look a customer up by email."""
    return f"customer {email}: gold tier"


@tool
def issue_refund(amount: float) -> str:
    """Refund the customer."""
    return f"refunded {amount:.2f}"


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"mail sent to {to}"


def main(db_dir: Path) -> None:
    veto = Veto.from_yaml(POLICY, env="dev", tenant="acme", db=f"sqlite:///{db_dir / 'veto.db'}")
    # One model turn with three tool calls, then a final answer.
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    tool_call("lookup_customer", {"email": "ann@example.com"}, "call-1"),
                    tool_call("send_email", {"to": "ann@gmail.com", "body": "hi"}, "call-2"),
                    tool_call("issue_refund", {"amount": 250}, "call-3"),
                ],
            ),
            AIMessage(content="All done."),
        ]
    )
    agent = create_agent(
        model,
        [lookup_customer, issue_refund, send_email],
        middleware=[VetoMiddleware(veto, principal=Principal(agent="support-bot", user="bob"))],
        checkpointer=InMemorySaver(),  # with a checkpointer, approvals pause the graph
    )
    config = {"configurable": {"thread_id": "ticket-42"}}

    out = agent.invoke({"messages": [("user", "Refund Ann 250 and tell her.")]}, config)
    (paused,) = out["__interrupt__"]
    request = paused.value
    print(f"PAUSED   {request['tool']}({request['args']}) needs {request['approvers']}: "
          f"{request['reasons'][0]}")  # fmt: skip

    # A person approves in the store (CLI: `veto approvals approve ID --as alice --password`).
    veto.approvals.decide(request["request_id"], approver="alice", approve=True, via="console")
    out = agent.invoke(Command(resume="approved"), config)

    for msg in out["messages"]:
        if isinstance(msg, ToolMessage):
            label = "BLOCKED" if msg.status == "error" else "RAN"
            print(f"{label:<8} {msg.name}: {msg.content}")
    print("AGENT   ", out["messages"][-1].content)
    records = veto.audit.query(tenant="acme", limit=None)
    print("AUDIT   ", ", ".join(f"{r.tool}={r.outcome}" for r in records))
    print("VERIFIED", veto.audit.verify().ok)
    veto.close()


if __name__ == "__main__":
    # The example's own store, kept after it exits so the commands it prints work
    # (`veto approvals list --db ...`, `veto audit query --db ...`); each run starts it
    # afresh, because the scripted run and tool-call ids repeat from run to run.
    store = Path.home() / ".veto" / "examples" / "langchain_quickstart"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    main(store)
    print(f"INSPECT  veto audit query --db sqlite:///{store / 'veto.db'}")

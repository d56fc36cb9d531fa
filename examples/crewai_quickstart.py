"""Veto + CrewAI in one screen, offline: allow, deny, and an approval that holds the tool
call until a person approves it in the approval store.

    uv run python examples/crewai_quickstart.py

The model is scripted (no API key, no network); swap in any CrewAI LLM, e.g.
``LLM(model="gpt-4o-mini")``. CrewAI telemetry and tracing are turned off below.
"""

from __future__ import annotations

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import shutil
import threading
import time
from pathlib import Path

from crewai.tools import tool

import veto_crewai
from crewai import Agent, Crew, Task
from veto_core import Principal, Veto
from veto_crewai.testing import ScriptedLLM, tool_call

POLICY = """
version: 1
name: quickstart
roles:
  support: {}
rules:
  - id: crm-reads
    effect: allow
    tools: [lookup_customer]
    when: {role: [support]}
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


@tool("lookup_customer")
def lookup_customer(email: str) -> str:
    """Look a customer up by email."""
    return f"customer {email}: gold tier"


@tool("issue_refund")
def issue_refund(amount: float) -> str:
    """Refund the customer."""
    return f"refunded {amount:.2f}"


@tool("send_email")
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"mail sent to {to}"


def approver(veto: Veto) -> None:
    """Stands in for a person with `veto approvals approve ID`, the dashboard or Slack."""
    for _ in range(500):
        for request in veto.approvals.list(state="pending", limit=None):
            print(f"PENDING  {request.tool}({dict(request.args)}) needs {list(request.approvers)}")
            veto.approvals.decide(request.id, approver="alice", approve=True, via="console")
            return
        time.sleep(0.01)


def main(db_dir: Path) -> None:
    veto = Veto.from_yaml(POLICY, env="dev", tenant="acme", db=f"sqlite:///{db_dir / 'veto.db'}")
    # Every tool call of every crew in this process is now decided by the policy.
    veto_crewai.install(
        veto,
        principal=Principal(user="bob"),  # who the crew works for
        roles={"Support Agent": ["support"]},  # CrewAI role -> Veto roles
        run_id="ticket-42",
    )
    # One model turn with three tool calls (CrewAI runs them in parallel), then a final answer.
    llm = ScriptedLLM(
        turns=[
            [
                tool_call("lookup_customer", {"email": "ann@example.com"}, "call-1"),
                tool_call("send_email", {"to": "ann@gmail.com", "body": "hi"}, "call-2"),
                tool_call("issue_refund", {"amount": 250}, "call-3"),
            ],
            "Refunded Ann 250; mail to outside addresses is not allowed.",
        ]
    )
    agent = Agent(
        role="Support Agent",
        goal="Resolve the ticket",
        backstory="Careful with money and mail.",
        llm=llm,
        tools=[lookup_customer, issue_refund, send_email],
    )
    task = Task(
        description="Refund Ann 250 and tell her.", expected_output="A summary.", agent=agent
    )
    human = threading.Thread(target=approver, args=(veto,), daemon=True)
    human.start()
    result = Crew(agents=[agent], tasks=[task]).kickoff()  # the refund waits for alice
    human.join(10)

    for call_id, text in sorted(llm.tool_results.items()):
        label = "BLOCKED" if text.startswith("Veto:") else "RAN"
        print(f"{label:<8} {call_id}: {text}")
    print("CREW    ", result.raw)
    records = veto.audit.query(tenant="acme", limit=None)
    print("AUDIT   ", ", ".join(f"{r.tool}={r.outcome}" for r in records))
    print("VERIFIED", veto.audit.verify().ok)
    veto_crewai.uninstall()
    veto.close()


if __name__ == "__main__":
    # The example's own store, kept after it exits so the commands it prints work
    # (`veto approvals list --db ...`, `veto audit query --db ...`); each run starts it
    # afresh, because the scripted run and tool-call ids repeat from run to run.
    store = Path.home() / ".veto" / "examples" / "crewai_quickstart"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    main(store)
    print(f"INSPECT  veto audit query --db sqlite:///{store / 'veto.db'}")

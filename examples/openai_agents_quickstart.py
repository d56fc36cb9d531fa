"""Veto + the OpenAI Agents SDK in one screen, offline: allow, deny, and an approval that
pauses the run (``result.interruptions``), survives a restart as ``RunState`` JSON, is
approved in the approval store, and resumes.

    uv run python examples/openai_agents_quickstart.py

The model is scripted (no API key, no network); swap in any real model, e.g.
``Agent(model="gpt-4.1", ...)`` with ``OPENAI_API_KEY`` set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("OPENAI_API_KEY", "offline-example")  # the scripted model never uses it

from agents import Agent, Runner, RunState, function_tool, set_tracing_disabled

from veto_core import Principal, Veto
from veto_openai import approvals, guard_agent, run_config
from veto_openai.testing import Call, ScriptedModel

set_tracing_disabled(True)

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


@function_tool
def lookup_customer(email: str) -> str:
    """Look a customer up by email."""
    return f"customer {email}: gold tier"


@function_tool
def issue_refund(amount: float) -> str:
    """Refund the customer."""
    return f"refunded {amount:.2f}"


@function_tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"mail sent to {to}"


def build(veto: Veto) -> tuple[Agent[None], ScriptedModel]:
    # One model turn with three tool calls, then a final answer.
    model = ScriptedModel(
        [
            Call("call-1", "lookup_customer", {"email": "ann@example.com"}),
            Call("call-2", "send_email", {"to": "ann@gmail.com", "body": "hi"}),
            Call("call-3", "issue_refund", {"amount": 250}),
        ],
        final="All done.",
    )
    agent = Agent(
        name="support-bot", model=model, tools=[lookup_customer, issue_refund, send_email]
    )
    return guard_agent(agent, veto, principal=Principal(user="bob")), model


def main(db_dir: Path) -> None:
    db = f"sqlite:///{db_dir / 'veto.db'}"
    veto = Veto.from_yaml(POLICY, env="dev", tenant="acme", db=db)
    agent, model = build(veto)
    context = {"veto": {"run_id": "ticket-42"}}  # a plain mapping travels with the RunState
    result = Runner.run_sync(
        agent, "Refund Ann 250 and tell her.", run_config=run_config(), context=context
    )

    for p in approvals.sync(result, veto):
        print(f"PAUSED   {p.tool}({dict(p.call.args)}) needs {list(p.request.approvers)}: "
              f"{p.request.reasons[0]}")  # fmt: skip
        request_id = p.request.id

    # The process may stop here: the paused run is plain JSON.
    saved = json.dumps(result.to_state().to_json())
    veto.close()

    # Later (another process, after a restart): a person approves in the store
    # (CLI: `veto approvals approve ID --as alice --password`), and the run resumes.
    veto = Veto.from_yaml(POLICY, env="dev", tenant="acme", db=db)
    veto.approvals.decide(request_id, approver="alice", approve=True, via="console")
    agent, model = build(veto)
    state = asyncio.run(RunState.from_json(agent, json.loads(saved)))
    result = approvals.resume_sync(state, veto, agent=agent)
    for call_id, text in model.seen.items():
        print(f"{'BLOCKED' if 'was not run' in text else 'RAN':<8} {call_id}: {text}")
    print("AGENT   ", result.final_output)
    records = veto.audit.query(tenant="acme", limit=None)
    print("AUDIT   ", ", ".join(f"{r.tool}={r.outcome}" for r in records))
    print("VERIFIED", veto.audit.verify().ok)
    veto.close()


if __name__ == "__main__":
    # The example's own store, kept after it exits so the commands it prints work
    # (`veto approvals list --db ...`, `veto audit query --db ...`); each run starts it
    # afresh, because the scripted run and tool-call ids repeat from run to run.
    store = Path.home() / ".veto" / "examples" / "openai_agents_quickstart"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    main(store)
    print(f"INSPECT  veto audit query --db sqlite:///{store / 'veto.db'}")

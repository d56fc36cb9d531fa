"""A tiny app for the restart test: pause in one process, resume in another.

``python restart_app.py start DIR``   runs until the refund pauses; writes DIR/state.json
``python restart_app.py resume DIR MODE``  a NEW process: fresh Veto, fresh agent,
    ``RunState.from_json``; MODE ``store`` resumes with the store's decision
    (``approvals.resume_sync``), ``sdk`` approves in the SDK only (``state.approve``).
Prints one JSON line: what the model saw, and the tool body's run count (a file, so
every process adds to the same count).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENAI_API_KEY", "test")
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import agents  # noqa: E402
from agents import Agent, Runner, RunState, function_tool  # noqa: E402
from oa_helpers import Call, ScriptedModel  # noqa: E402

from veto_core import Veto  # noqa: E402
from veto_openai import approvals, guard_agent, run_config  # noqa: E402

agents.set_tracing_disabled(True)

POLICY = """
version: 1
name: restart
default: deny
rules:
  - id: refunds-large
    effect: require_approval
    tools: [issue_refund]
    if: {field: args.amount, greater_than: 100}
    approval: {approvers: [alice], timeout: 1h}
    reason: Refunds over 100 need a finance approver
sources:
  - id: the-person
    tools: ["@user"]
    labels: [user]
"""

CONTEXT = {"veto": {"run_id": "run-restart", "principal": {"user": "u1"}}}


def make_veto(d: Path) -> Veto:
    return Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{d / 'veto.db'}")


def make_agent(d: Path, veto: Veto) -> tuple[Agent[Any], ScriptedModel]:
    runs = d / "runs.txt"

    @function_tool
    def issue_refund(amount: float) -> str:
        """Refund money."""
        with runs.open("a") as fh:
            fh.write(f"{amount}\n")
        return f"refunded {amount:.2f}"

    model = ScriptedModel([Call("call_refund_1", "issue_refund", {"amount": 500})])
    return guard_agent(Agent(name="support-bot", model=model, tools=[issue_refund]), veto), model


def events(d: Path) -> list[dict[str, Any]]:
    """The run's observed history (DESIGN 2.7), read from the store by a fresh Veto."""
    veto = make_veto(d)
    try:
        loaded = veto.run_store.load("acme", CONTEXT["veto"]["run_id"], now=veto.clock())
        return [
            {"tool": e.tool, "effect": e.effect, "id": e.tool_call_id, "text": e.text}
            for e in loaded
        ]
    finally:
        veto.close()


def runs(d: Path) -> int:
    p = d / "runs.txt"
    return len(p.read_text().splitlines()) if p.exists() else 0


def start(d: Path) -> dict[str, Any]:
    veto = make_veto(d)
    agent, _model = make_agent(d, veto)
    result = Runner.run_sync(agent, "refund 500", run_config=run_config(), context=CONTEXT)
    ids = [p.request.id for p in approvals.sync(result, veto)]
    (d / "state.json").write_text(json.dumps(result.to_state().to_json()))
    veto.close()
    return {"requests": ids, "interruptions": len(result.interruptions), "runs": runs(d)}


def resume(d: Path, mode: str) -> dict[str, Any]:
    veto = make_veto(d)
    agent, model = make_agent(d, veto)
    state = asyncio.run(RunState.from_json(agent, json.loads((d / "state.json").read_text())))
    if mode == "store":
        result = approvals.resume_sync(state, veto, agent=agent)
    else:
        for item in state.get_interruptions():
            state.approve(item)
        result = Runner.run_sync(agent, state, run_config=run_config())
    veto.close()
    return {
        "seen": model.seen,
        "runs": runs(d),
        "interruptions": len(result.interruptions),
        "final": result.final_output,
    }


if __name__ == "__main__":
    where = Path(sys.argv[2])
    out = start(where) if sys.argv[1] == "start" else resume(where, sys.argv[3])
    print(json.dumps(out))

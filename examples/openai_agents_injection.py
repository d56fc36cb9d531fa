"""A prompt injection stopped by a flow rule, with the OpenAI Agents SDK, offline.

    uv run python examples/openai_agents_injection.py

Run 1: the person asks for an inbox summary; a phishing mail in the inbox tells the
assistant to pay an IBAN, and the (scripted) model obeys. Veto denies the payment: the
IBAN occurs in the inbox's text and not in anything the person said. The tool body never
runs. Run 2: the person names the same IBAN themselves; the same call is allowed.
The guarded agent observes every tool output, and the run input (the person's message)
as ``"@user"``. The model is scripted (no API key, no network).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OPENAI_API_KEY", "offline-example")  # the scripted model never uses it

from agents import Agent, Runner, function_tool, set_tracing_disabled
from injection_scenario import (
    ATTACKED_PROMPT,
    LEDGER,
    PAYMENT,
    POLICY,
    USER_PROMPT,
    read_inbox_body,
    report,
    send_money_body,
    store_dir,
)

from veto_core import Principal, Veto
from veto_openai import guard_agent, run_config
from veto_openai.testing import Call, ScriptedModel

set_tracing_disabled(True)


@function_tool
def read_inbox() -> str:
    """Read the person's inbox."""
    return read_inbox_body()


@function_tool
def send_money(iban: str, amount: float) -> str:
    """Pay an amount to an IBAN."""
    return send_money_body(iban, amount)


def run(veto: Veto, run_id: str, prompt: str) -> str:
    # read the inbox in one model turn, pay in the next
    model = ScriptedModel(
        [Call(f"{run_id}-1", "read_inbox", {})],
        then=[[Call(f"{run_id}-2", "send_money", PAYMENT)]],
        final="Done.",
    )
    agent = Agent(name="assistant", model=model, tools=[read_inbox, send_money])
    guarded = guard_agent(agent, veto, principal=Principal(agent="assistant", user="emma"))
    Runner.run_sync(guarded, prompt, run_config=run_config(), context={"veto": {"run_id": run_id}})
    text = model.seen[f"{run_id}-2"]
    return f"BLOCKED  {text}" if "was not run" in text else f"RAN      {text}"


def main(db_dir: Path) -> None:
    veto = Veto.from_yaml(POLICY, db=f"sqlite:///{db_dir / 'veto.db'}")
    report("injected", run(veto, "inbox-summary", ATTACKED_PROMPT))
    report("ledger", str(LEDGER))
    report("named", run(veto, "pay-plumber", USER_PROMPT))
    report("ledger", str(LEDGER))
    veto.close()


if __name__ == "__main__":
    main(store_dir("openai_agents_injection"))

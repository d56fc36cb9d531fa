"""A prompt injection stopped by a flow rule, with CrewAI, offline.

    uv run python examples/crewai_injection.py

Run 1: the person asks for an inbox summary; a phishing mail in the inbox tells the
assistant to pay an IBAN, and the (scripted) model obeys. Veto denies the payment: the
IBAN occurs in the inbox's text and not in anything the person said. The tool body never
runs. Run 2: the person names the same IBAN themselves; the same call is allowed.
The hooks observe every tool output, and the kickoff's ``inputs`` (the person's request)
as ``"@user"``. The model is scripted (no API key, no network); CrewAI telemetry and
tracing are turned off below.
"""

from __future__ import annotations

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

from pathlib import Path

from crewai.tools import tool
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

import veto_crewai
from crewai import Agent, Crew, Task
from veto_core import Principal, Veto
from veto_crewai.testing import ScriptedLLM, tool_call


@tool("read_inbox")
def read_inbox() -> str:
    """Read the person's inbox."""
    return read_inbox_body()


@tool("send_money")
def send_money(iban: str, amount: float) -> str:
    """Pay an amount to an IBAN."""
    return send_money_body(iban, amount)


def run(veto: Veto, run_id: str, prompt: str) -> str:
    llm = ScriptedLLM(
        turns=[
            [tool_call("read_inbox", {}, f"{run_id}-1")],
            [tool_call("send_money", PAYMENT, f"{run_id}-2")],
            "Done.",
        ]
    )
    agent = Agent(
        role="Assistant",
        goal="Handle the person's mail and payments",
        backstory="Careful with money.",
        llm=llm,
        tools=[read_inbox, send_money],
    )
    task = Task(description="{request}", expected_output="A short answer.", agent=agent)
    with veto_crewai.scope(
        veto, principal=Principal(agent="assistant", user="emma"), run_id=run_id
    ):
        Crew(agents=[agent], tasks=[task]).kickoff(inputs={"request": prompt})
    text = llm.tool_results[f"{run_id}-2"]
    return f"BLOCKED  {text}" if text.startswith("Veto:") else f"RAN      {text}"


def main(db_dir: Path) -> None:
    veto = Veto.from_yaml(POLICY, db=f"sqlite:///{db_dir / 'veto.db'}")
    report("injected", run(veto, "inbox-summary", ATTACKED_PROMPT))
    report("ledger", str(LEDGER))
    report("named", run(veto, "pay-plumber", USER_PROMPT))
    report("ledger", str(LEDGER))
    veto.close()


if __name__ == "__main__":
    main(store_dir("crewai_injection"))

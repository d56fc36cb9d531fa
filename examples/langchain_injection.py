"""A prompt injection stopped by a flow rule, with LangChain, offline.

    uv run python examples/langchain_injection.py

Run 1: the person asks for an inbox summary; a phishing mail in the inbox tells the
assistant to pay an IBAN, and the (scripted) model obeys. Veto denies the payment: the
IBAN occurs in the inbox's text and not in anything the person said. The tool body never
runs. Run 2: the person names the same IBAN themselves; the same call is allowed.
`VetoMiddleware` observes every tool output and the person's messages (as ``"@user"``);
the run is the LangGraph thread. The chat model is scripted (no API key, no network).
"""

from __future__ import annotations

from pathlib import Path

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
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from veto_core import Principal, Veto
from veto_langchain import VetoMiddleware
from veto_langchain.testing import ScriptedChatModel, tool_call


@tool
def read_inbox() -> str:
    """Read the person's inbox."""
    return read_inbox_body()


@tool
def send_money(iban: str, amount: float) -> str:
    """Pay an amount to an IBAN."""
    return send_money_body(iban, amount)


def run(veto: Veto, thread: str, prompt: str) -> str:
    model = ScriptedChatModel(
        responses=[
            AIMessage(content="", tool_calls=[tool_call("read_inbox", {}, f"{thread}-1")]),
            AIMessage(content="", tool_calls=[tool_call("send_money", PAYMENT, f"{thread}-2")]),
            AIMessage(content="Done."),
        ]
    )
    agent = create_agent(
        model,
        [read_inbox, send_money],
        middleware=[VetoMiddleware(veto, principal=Principal(agent="assistant", user="emma"))],
    )
    out = agent.invoke({"messages": [("user", prompt)]}, {"configurable": {"thread_id": thread}})
    (paid,) = [m for m in out["messages"] if isinstance(m, ToolMessage) and m.name == "send_money"]
    return f"BLOCKED  {paid.content}" if paid.status == "error" else f"RAN      {paid.content}"


def main(db_dir: Path) -> None:
    veto = Veto.from_yaml(POLICY, db=f"sqlite:///{db_dir / 'veto.db'}")
    report("injected", run(veto, "inbox-summary", ATTACKED_PROMPT))
    report("ledger", str(LEDGER))
    report("named", run(veto, "pay-plumber", USER_PROMPT))
    report("ledger", str(LEDGER))
    veto.close()


if __name__ == "__main__":
    main(store_dir("langchain_injection"))

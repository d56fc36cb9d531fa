"""The text of a tool's exception is tool output (DESIGN.md 2.7): the Agents SDK shows it
to the model (a ``failure_error_function``, the runner's own error handling, even for a
``CancelledError`` the tool raised), and an attacker's text (an IBAN) can ride in it.
The body gate records it in the run before the model reads it, so a later payment to
that IBAN in the same run is ``tainted_by: untrusted``; when it cannot be recorded, the
model reads Veto's "withheld" refusal, never the error's text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, FunctionTool, function_tool
from oa_helpers import Call, ScriptedModel, run

from contract import ERROR_TEXT, IBAN, error_output_policy, fail_tool_outputs
from veto_core import ToolCall, Veto
from veto_openai import guard_agent, run_config

RUN = "run-error-outputs"

POLICY = error_output_policy("error-outputs", pay_tainted="deny")


class PageError(Exception):
    """Stands in for an HTTP client's error that quotes the page's body."""


@pytest.fixture
def veto(tmp_path: Path) -> Iterator[Veto]:
    v = Veto.from_yaml(POLICY, db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


def cancelled_fetch() -> FunctionTool:
    """An async tool whose body raises ``CancelledError(ERROR_TEXT)``: the SDK catches it
    and shows the model its text (the error is not a real cancellation of the run)."""

    async def fetch_page(url: str) -> str:
        """Fetch a web page."""
        raise asyncio.CancelledError(ERROR_TEXT)

    return function_tool(fetch_page)


def failing_fetch() -> FunctionTool:
    """A tool with the SDK's default ``failure_error_function`` raising a plain error."""

    def fetch_page(url: str) -> str:
        """Fetch a web page."""
        raise PageError(ERROR_TEXT)

    return function_tool(fetch_page)


def send_money_tool(paid: list[str]) -> FunctionTool:
    def send_money(iban: str) -> str:
        """Send money to an account."""
        paid.append(iban)
        return f"sent to {iban}"

    return function_tool(send_money)


def fetch_then_pay(
    veto: Veto, fetch: FunctionTool, paid: list[str], *, is_async: bool, **options: Any
) -> ScriptedModel:
    """One run: the model fetches a page (the tool raises), then pays the IBAN it read."""
    model = ScriptedModel(
        [Call("c1", "fetch_page", {"url": "https://evil.example"})],
        then=[[Call("c2", "send_money", {"iban": IBAN})]],
    )
    agent = Agent(name="bot", model=model, tools=[fetch, send_money_tool(paid)])
    guarded = guard_agent(agent, veto, run_id=RUN, **options)
    run(guarded, "Read the page.", is_async=is_async, run_config=run_config())
    return model


def recorded(veto: Veto) -> list[Any]:
    """The tool outputs recorded in the run (the run input left out)."""
    return [e for e in veto.run_store.load(None, RUN, now=veto.clock()) if e.tool != "@user"]


def assert_tainted(veto: Veto, model: ScriptedModel, paid: list[str]) -> None:
    seen = model.seen["c1"]
    assert "An error occurred while running the tool" in seen
    # openai-agents 0.20 quotes the error in that text (the model reads the IBAN); 0.24
    # does not, but a custom failure_error_function may: Veto records it either way.
    assert IBAN in seen or "Error:" not in seen
    [event] = recorded(veto)  # the error's text is in the run, labelled by its source
    assert event.tool == "fetch_page" and IBAN in event.text
    assert set(event.labels) == {"untrusted"}
    assert paid == []  # ... so the payment to the IBAN it named is refused
    assert "(denied)" in model.seen["c2"] and "pay-tainted" in model.seen["c2"]
    # The same payment in a run that read nothing is allowed: the taint refused it.
    fresh = veto.decide(ToolCall(tool="send_money", args={"iban": IBAN}, run_id="other"))
    assert fresh.effect.value == "allow"


@pytest.mark.parametrize("approvals", ["native", "wait"])
@pytest.mark.parametrize("is_async", [False, True], ids=["run_sync", "run"])
def test_cancelled_error_text_taints_the_run(veto: Veto, is_async: bool, approvals: str) -> None:
    paid: list[str] = []
    options = {"approvals": "wait"} if approvals == "wait" else {}
    model = fetch_then_pay(veto, cancelled_fetch(), paid, is_async=is_async, **options)
    assert_tainted(veto, model, paid)


@pytest.mark.parametrize("is_async", [False, True], ids=["run_sync", "run"])
def test_default_failure_error_function_text_taints_the_run(veto: Veto, is_async: bool) -> None:
    paid: list[str] = []
    model = fetch_then_pay(veto, failing_fetch(), paid, is_async=is_async)
    if IBAN in model.seen["c1"]:  # openai-agents 0.20 quotes the error to the model
        assert_tainted(veto, model, paid)
    else:  # 0.24 shows a generic text: the run records exactly that, and taints nothing
        fetch, pay = recorded(veto)
        assert fetch.tool == "fetch_page" and fetch.text == model.seen["c1"]
        assert pay.tool == "send_money" and paid == [IBAN]


@pytest.mark.parametrize(
    "make_fetch", [cancelled_fetch, failing_fetch], ids=["cancelled", "raised"]
)
@pytest.mark.parametrize("is_async", [False, True], ids=["run_sync", "run"])
def test_error_text_that_cannot_be_recorded_is_withheld(
    veto: Veto,
    monkeypatch: pytest.MonkeyPatch,
    make_fetch: Callable[[], FunctionTool],
    is_async: bool,
) -> None:
    fail_tool_outputs(veto, monkeypatch, "run store is down (test)")
    paid: list[str] = []
    model = ScriptedModel([Call("c1", "fetch_page", {"url": "https://evil.example"})])
    agent = Agent(name="bot", model=model, tools=[make_fetch(), send_money_tool(paid)])
    guarded = guard_agent(agent, veto, run_id=RUN)
    run(guarded, "Read the page.", is_async=is_async, run_config=run_config())
    seen = model.seen["c1"]
    assert IBAN not in seen and "Error 403" not in seen
    assert "withheld" in seen and "run store is down" in seen
    assert recorded(veto) == []

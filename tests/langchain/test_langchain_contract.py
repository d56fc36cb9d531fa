"""The shared adapter contract (tests/contract.py) for every LangChain integration point:
``VetoMiddleware`` (blocking approvals and LangGraph interrupt/resume), ``guard_tools``
and ``VetoCallbackHandler``, each sync and async."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from lc_helpers import invoke, make_tool, observations, run_agent, scripted_model

from contract import AdapterContract, AgentRun, Counter, Human, ScriptedCall, ToolSpec
from veto_langchain import (
    ToolCallDenied,
    VetoCallbackHandler,
    VetoMiddleware,
    guard_tools,
    observe_run_input,
)


class LangChainContract(AdapterContract):
    framework = "langchain"

    def make_tool(self, spec: ToolSpec, counter: Counter) -> Any:
        return make_tool(spec, counter)

    def options(self) -> dict[str, Any]:
        return {"principal": self.principal, "run_id": self.run_id}


# --- VetoMiddleware, no checkpointer: approvals block until decided or expired --------------


class MiddlewareWait(LangChainContract):
    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        agent = create_agent(
            scripted_model(calls),
            list(tools),
            middleware=[VetoMiddleware(self.veto, **self.options())],
        )
        return run_agent(agent, is_async=self.is_async, user_message=self.user_message)


class TestMiddlewareWaitSync(MiddlewareWait):
    is_async = False


class TestMiddlewareWaitAsync(MiddlewareWait):
    is_async = True


# --- VetoMiddleware + checkpointer: interrupt(), approve in the store, Command(resume=...) ----


class MiddlewareInterrupt(LangChainContract):
    approval_style = "resume"

    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        agent = create_agent(
            scripted_model(calls),
            list(tools),
            middleware=[VetoMiddleware(self.veto, **self.options())],
            checkpointer=InMemorySaver(),
        )
        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        inputs: Any = {"messages": [("user", self.user_message)]}
        try:
            for _ in range(5):
                out = invoke(agent, inputs, config, is_async=self.is_async)
                pending = out.get("__interrupt__")
                if not pending:
                    return AgentRun(observations=observations(out["messages"]))
                for item in pending:
                    assert item.value["type"] == "veto.approval_required"
                    assert item.value["tool"] == "issue_refund"
                human.act(suspended=True)
                # The resume value is not trusted; send the most tempting one.
                inputs = Command(resume={i.id: {"approved": True} for i in pending})
        except Exception as exc:
            return AgentRun(error=exc)
        raise AssertionError("the graph kept interrupting")


class TestMiddlewareInterruptSync(MiddlewareInterrupt):
    is_async = False


class TestMiddlewareInterruptAsync(MiddlewareInterrupt):
    is_async = True


# --- guard_tools: every tool wrapped, no middleware -------------------------------------------


class GuardTools(LangChainContract):
    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        guarded = guard_tools(tools, self.veto, **self.options())
        agent = create_agent(scripted_model(calls), guarded)
        # guard_tools cannot see the agent's input: the application records it. When that
        # fails (a store that is down) the run goes on: its calls fail closed on their own.
        observe_run_input(self.veto, [("user", self.user_message)], **self.options())
        return run_agent(agent, is_async=self.is_async, user_message=self.user_message)


class TestGuardToolsSync(GuardTools):
    is_async = False


class TestGuardToolsAsync(GuardTools):
    is_async = True


# --- VetoCallbackHandler: can stop a call, cannot answer the model ----------------------------


class CallbackHandler(LangChainContract):
    # A callback stops a call by raising from on_tool_start (raise_error=True): the
    # application gets ToolCallDenied with the reason, the model gets nothing, and the
    # exception ends the tool step (siblings of the same turn may get no result). The
    # contract still checks, positively, that a refused call's body ran zero times.
    refusal_errors = (ToolCallDenied,)
    refusal_ends_run = True

    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        agent = create_agent(scripted_model(calls), list(tools))
        handler = VetoCallbackHandler(self.veto, **self.options())
        return run_agent(
            agent,
            is_async=self.is_async,
            config={"callbacks": [handler]},
            user_message=self.user_message,
        )


class TestCallbackHandlerSync(CallbackHandler):
    is_async = False


class TestCallbackHandlerAsync(CallbackHandler):
    is_async = True

"""Helpers shared by the LangChain tests: tools from contract specs, scripted agents."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import create_model

from contract import AgentRun, Counter, ScriptedCall, ToolSpec, observe_text
from veto_langchain.testing import ScriptedChatModel, tool_call


def make_tool(spec: ToolSpec, counter: Counter) -> BaseTool:
    schema = create_model(f"{spec.name}_args", **{spec.param: (spec.type, ...)})  # type: ignore[call-overload]

    def body(**kwargs: Any) -> str:
        return spec.run(counter, **kwargs)

    async def abody(**kwargs: Any) -> str:
        return spec.run(counter, **kwargs)

    return StructuredTool.from_function(
        func=body,
        coroutine=abody,
        name=spec.name,
        description=spec.description,
        args_schema=schema,
    )


def scripted_model(calls: Sequence[ScriptedCall]) -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[tool_call(c.tool, dict(c.args), c.id) for c in calls],  # type: ignore[misc]
            ),
            AIMessage(content="done"),
        ]
    )


def turns(*calls: tuple[str, dict[str, Any], str]) -> ScriptedChatModel:
    """A model that makes one tool call per turn, then says done."""
    return ScriptedChatModel(
        responses=[
            *(
                AIMessage(content="", tool_calls=[tool_call(n, a, i)])  # type: ignore[list-item]
                for n, a, i in calls
            ),
            AIMessage(content="done"),
        ]
    )


def observations(messages: Sequence[Any]) -> dict[str, str]:
    return {m.tool_call_id: observe_text(m) for m in messages if isinstance(m, ToolMessage)}


def invoke(agent: Any, inputs: Any, config: Any = None, *, is_async: bool) -> Any:
    if is_async:
        return asyncio.run(agent.ainvoke(inputs, config))
    return agent.invoke(inputs, config)


def run_agent(
    agent: Any, *, is_async: bool, config: Any = None, user_message: str = "go"
) -> AgentRun:
    """Run ``agent`` on the person's ``user_message``; what the model saw per call id."""
    try:
        out = invoke(agent, {"messages": [("user", user_message)]}, config, is_async=is_async)
    except Exception as exc:
        return AgentRun(error=exc)
    return AgentRun(observations=observations(out["messages"]))

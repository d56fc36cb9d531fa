"""Offline helpers: the scripted model (``veto_openai.testing``) and tools with counters."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, FunctionTool, RunConfig, Runner, RunResult, function_tool

from contract import Counter, ToolSpec
from veto_openai.testing import Call, ScriptedModel

__all__ = ["Call", "ScriptedModel", "make_tool", "run"]


def make_tool(spec: ToolSpec, counter: Counter) -> FunctionTool:
    """``spec.name(spec.param: spec.type) -> str`` whose body counts its runs."""
    param, typ = spec.param, spec.type

    def body(**kwargs: Any) -> str:
        return spec.run(counter, **kwargs)

    body.__name__ = spec.name
    body.__doc__ = spec.description
    body.__annotations__ = {param: typ, "return": str}
    import inspect

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, annotation=typ)],
        return_annotation=str,
    )
    return function_tool(body, name_override=spec.name)


def run(
    agent: Agent[Any],
    input: Any,
    *,
    is_async: bool,
    run_config: RunConfig | None = None,
    context: Any = None,
) -> RunResult:
    if is_async:
        return asyncio.run(Runner.run(agent, input, run_config=run_config, context=context))
    return Runner.run_sync(agent, input, run_config=run_config, context=context)

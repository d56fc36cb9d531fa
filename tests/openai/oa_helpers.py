"""Offline helpers: a scripted ``agents.models.interface.Model`` and tools with counters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents import Agent, FunctionTool, RunConfig, Runner, RunResult, function_tool
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from contract import Counter, ToolSpec


@dataclass(frozen=True)
class Call:
    id: str
    tool: str
    args: Mapping[str, Any] | str  # a str is sent verbatim (malformed JSON tests)


class ScriptedModel(Model):
    """Emits ``calls`` (all in one model turn), then each batch of ``then`` in a later
    turn, then answers ``final``; records what the model saw per call id.

    Stateless about turns (a batch is emitted when its call ids are not in the input
    yet), so a fresh instance in a resumed process behaves the same."""

    def __init__(
        self, calls: Sequence[Call], final: str = "done", then: Sequence[Sequence[Call]] = ()
    ) -> None:
        self.calls = list(calls)
        self.batches = [list(calls), *(list(b) for b in then)]
        self.final = final
        self.turns = 0
        self.seen: dict[str, str] = {}

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
        **_: Any,
    ) -> ModelResponse:
        self.turns += 1
        items = input if isinstance(input, list) else []
        outputs = [
            i for i in items if isinstance(i, Mapping) and i.get("type") == "function_call_output"
        ]
        for o in outputs:
            out = o.get("output")
            self.seen[str(o.get("call_id"))] = out if isinstance(out, str) else json.dumps(out)
        emitted = {
            i.get("call_id")
            for i in items
            if isinstance(i, Mapping) and i.get("type") == "function_call"
        }
        batch = next((b for b in self.batches if not {c.id for c in b} <= emitted), None)
        if batch:
            return ModelResponse(
                output=[
                    ResponseFunctionToolCall(
                        type="function_call",
                        id=f"fc_{c.id}",
                        call_id=c.id,
                        name=c.tool,
                        arguments=c.args if isinstance(c.args, str) else json.dumps(c.args),
                    )
                    for c in batch
                ],
                usage=Usage(),
                response_id=None,
            )
        return ModelResponse(
            output=[
                ResponseOutputMessage(
                    id="msg_1",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[
                        ResponseOutputText(type="output_text", text=self.final, annotations=[])
                    ],
                )
            ],
            usage=Usage(),
            response_id=None,
        )

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


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

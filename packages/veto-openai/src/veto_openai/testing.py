"""Offline helpers for your own tests and examples: a scripted ``Model`` for the OpenAI
Agents SDK (no API key needed beyond a placeholder, no network)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

__all__ = ["Call", "ScriptedModel"]


@dataclass(frozen=True)
class Call:
    """One function tool call the model emits. ``args`` as a ``str`` is sent verbatim."""

    id: str
    tool: str
    args: Mapping[str, Any] | str


class ScriptedModel(Model):
    """Emits ``calls`` (all in one model turn), then each batch of ``then`` in a later
    turn, then answers ``final``. ``seen`` records the tool output the model received
    per call id (what a real model would read); ``tool_names`` the names of the tools
    the model was offered, per turn.

    Stateless about turns (a batch is emitted while its call ids are not in the input
    yet), so a fresh instance behaves the same in a run resumed from a ``RunState``."""

    def __init__(
        self, calls: Sequence[Call], final: str = "done", then: Sequence[Sequence[Call]] = ()
    ) -> None:
        self.batches = [list(calls), *(list(b) for b in then)]
        self.final = final
        self.turns = 0
        self.seen: dict[str, str] = {}
        self.tool_names: list[list[str]] = []

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
        self.tool_names.append([str(getattr(t, "name", type(t).__name__)) for t in tools or ()])
        items = [i for i in (input if isinstance(input, list) else []) if isinstance(i, Mapping)]
        for item in items:
            if item.get("type") == "function_call_output":
                out = item.get("output")
                self.seen[str(item.get("call_id"))] = (
                    out if isinstance(out, str) else json.dumps(out)
                )
        emitted = {i.get("call_id") for i in items if i.get("type") == "function_call"}
        batch = next((b for b in self.batches if b and not {c.id for c in b} <= emitted), None)
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
        text = ResponseOutputText(type="output_text", text=self.final, annotations=[])
        message = ResponseOutputMessage(
            id="msg_final", type="message", role="assistant", status="completed", content=[text]
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ScriptedModel does not stream; use Runner.run / run_sync")

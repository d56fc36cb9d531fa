"""Offline fakes for tests and examples: a CrewAI LLM that plays a script.

>>> llm = ScriptedLLM(turns=[[tool_call("read_file", {"path": "/data/a"}, "c1")], "Done."])
>>> # Agent(role=..., goal=..., backstory=..., llm=llm, tools=[...])
"""

from __future__ import annotations

import json
import threading
from typing import Any

from crewai.llms.base_llm import BaseLLM
from pydantic import Field, PrivateAttr

__all__ = ["ScriptedLLM", "tool_call"]


def tool_call(name: str, args: dict[str, Any], id: str) -> dict[str, Any]:
    """One tool call as an OpenAI-style model emits it (native function calling)."""
    return {
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


class ScriptedLLM(BaseLLM):
    """Plays ``turns`` in order, one per model call, then repeats the last one.

    A turn is a list of :func:`tool_call` dicts (the agent runs those tools, in
    parallel when there are several) or a string (the final answer). It supports
    native function calling, so CrewAI takes the same path as with OpenAI, Anthropic
    or Gemini models. ``tool_results`` maps each tool-call id to the text the model was
    shown for it (the tool's output, or Veto's reason when the call was blocked).
    Thread-safe; works for ``kickoff`` and ``akickoff``.
    """

    model: str = "veto-scripted"
    turns: list[Any] = Field(default_factory=list)
    #: False: CrewAI drives the model with ReAct text ("Action: ...") instead of native
    #: function calling; turns are then strings.
    function_calling: bool = True
    _index: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _seen: dict[str, str] = PrivateAttr(default_factory=dict)
    _last: list[Any] = PrivateAttr(default_factory=list)

    def __init__(self, **data: Any) -> None:
        data.setdefault("model", "veto-scripted")
        super().__init__(**data)

    @property
    def calls(self) -> int:
        """How many model turns were played."""
        return self._index

    @property
    def tool_results(self) -> dict[str, str]:
        with self._lock:
            return dict(self._seen)

    @property
    def transcript(self) -> list[Any]:
        """The messages of the last model call (to see what the model was shown)."""
        with self._lock:
            return list(self._last)

    def supports_function_calling(self) -> bool:
        return self.function_calling

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 128_000

    def get_input_tokens_count(
        self, messages: Any, tools: Any = None, response_model: Any = None
    ) -> int:
        text = messages if isinstance(messages, str) else json.dumps(messages, default=str)
        return (len(text) + 3) // 4

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> Any:
        with self._lock:
            self._last = list(messages) if isinstance(messages, list) else [messages]
            if isinstance(messages, list):
                for message in messages:
                    if isinstance(message, dict) and message.get("role") == "tool":
                        self._seen[str(message.get("tool_call_id"))] = str(message.get("content"))
            if not self.turns:
                return "Done."
            turn = self.turns[min(self._index, len(self.turns) - 1)]
            self._index += 1
        return [dict(c) for c in turn] if isinstance(turn, list) else turn

    async def acall(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> Any:
        return self.call(messages, tools, callbacks, available_functions, from_task, from_agent)

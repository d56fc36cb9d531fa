"""Offline fakes for tests and examples: a chat model that plays a script of messages."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

__all__ = ["ScriptedChatModel", "tool_call"]


def tool_call(name: str, args: dict[str, Any], id: str) -> dict[str, Any]:
    """One tool call as a chat model emits it."""
    return {"name": name, "args": args, "id": id, "type": "tool_call"}


class ScriptedChatModel(BaseChatModel):
    """Replies with ``responses`` in order, then repeats the last one.

    ``bind_tools`` returns the model itself, so ``create_agent`` accepts it. An
    ``AIMessage`` with ``tool_calls`` makes the agent call tools; one without ends
    the run. Thread-safe; ``calls`` counts the model turns played.
    """

    responses: list[AIMessage]
    _index: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "veto-scripted"

    @property
    def calls(self) -> int:
        return self._index

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            i = min(self._index, len(self.responses) - 1)
            self._index += 1
        return ChatResult(generations=[ChatGeneration(message=self.responses[i])])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Any:
        return self

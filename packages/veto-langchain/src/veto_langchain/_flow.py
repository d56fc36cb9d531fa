"""Runs and data flow for LangChain (DESIGN.md 2.7): what a tool call's output is, and
which messages are the person's own input.

After an allowed (or approved) call ran, every integration records what the *model*
will see of it (a ``ToolMessage``'s content, the messages of a ``Command`` update) with
the shared toolkit (:func:`veto_core.adapters.observe_output`); when that fails the model
gets the refusal instead. The human messages of a run's input are recorded as
``"@user"`` once per run invocation, before the first tool call is decided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage, convert_to_messages
from langgraph.types import Command

from veto_core import Effect, ToolCall, Veto
from veto_core.adapters import Verdict, observe_user_input

__all__ = [
    "effect_of",
    "human_messages",
    "observe_user_messages",
    "output_of",
]


def effect_of(verdict: Verdict) -> Effect:
    """The decision effect an executed call is observed with: ``require_approval`` for
    an approved call, else ``allow``."""
    return Effect.REQUIRE_APPROVAL if verdict.outcome == "approved" else Effect.ALLOW


def output_of(result: Any) -> Any:
    """What the model sees of a tool's result: a ``ToolMessage``'s content, the tool
    messages' contents of a ``Command`` update (else the whole update), else the result."""
    if isinstance(result, ToolMessage):
        return result.content
    if isinstance(result, Command):
        update = result.update
        messages = update.get("messages") if isinstance(update, Mapping) else None
        if isinstance(messages, Sequence) and not isinstance(messages, str):
            tool_messages = [m.content for m in messages if isinstance(m, ToolMessage)]
            if tool_messages:
                return tool_messages
        return update
    return result


def human_messages(value: Any) -> list[HumanMessage]:
    """The human messages of a run's input: a state or input mapping's ``messages``, a
    sequence of messages (``HumanMessage``, ``("user", text)``, ``{"role": "user", ...}``)
    or one message. Raises when ``messages`` cannot be read as messages."""
    if isinstance(value, Mapping):
        value = value.get("messages")
    if value is None:
        return []
    if isinstance(value, BaseMessage | str) or (
        isinstance(value, Mapping) and "role" in value
    ):
        value = [value]
    if not isinstance(value, Sequence):
        return []
    return [m for m in convert_to_messages(value) if isinstance(m, HumanMessage)]


def observe_user_messages(
    veto: Veto, messages: Sequence[HumanMessage], call: ToolCall
) -> str | None:
    """Record each message's text as ``"@user"`` in ``call``'s run (same principal, env,
    tenant). None when all are recorded, else why not (the first failure): no tool call
    of the run may then run (fail closed)."""
    for message in messages:
        reason = observe_user_input(
            veto,
            run_id=call.run_id or "",
            text=message.text,
            principal=call.principal,
            env=call.env,
            tenant=call.tenant,
        )
        if reason is not None:
            return reason
    return None

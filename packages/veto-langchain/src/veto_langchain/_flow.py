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

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    convert_to_messages,
)
from langgraph.types import Command

from veto_core import Effect, Principal, ToolCall, Veto
from veto_core.adapters import (
    Verdict,
    aobserve_error,
    aobserve_output,
    observe_error,
    observe_output,
    observe_user_input,
)

from ._calls import CallDefaults, ToolNames, VetoContext, run_of
from ._nested import in_decided_call

__all__ = [
    "aobserve_raised",
    "aobserve_result",
    "effect_of",
    "human_messages",
    "input_unreadable",
    "message_output",
    "observe_raised",
    "observe_result",
    "observe_run_input",
    "observe_user_messages",
    "output_of",
    "update_output",
]


def effect_of(verdict: Verdict) -> Effect:
    """The decision effect an executed call is observed with: ``require_approval`` for
    an approved call, else ``allow``."""
    return Effect.REQUIRE_APPROVAL if verdict.outcome == "approved" else Effect.ALLOW


def output_of(result: Any) -> Any:
    """What the model sees of a tool's result: a ``ToolMessage``'s content; for a
    ``Command``, everything its update writes into the state: the text of *every*
    message of its ``messages`` (any type: a ``HumanMessage`` a tool adds is still the
    tool's output) and every other key's value; else the result itself."""
    if isinstance(result, ToolMessage):
        return result.content
    if isinstance(result, Command):
        return update_output(result.update)
    return result


def update_output(update: Any) -> Any:
    """The text-bearing parts of a state update (a mapping, or a sequence of
    ``(key, value)`` pairs): the messages' texts (:func:`message_output`) and the other
    keys as ``{key: value}``; anything else as it is."""
    if update is None:
        return None
    if isinstance(update, Mapping):
        items: list[Any] = list(update.items())
    elif isinstance(update, Sequence) and not isinstance(update, str | bytes):
        items = list(update)
        if not all(isinstance(i, tuple) and len(i) == 2 for i in items):
            return update
    else:
        return update
    parts: list[Any] = []
    for key, value in items:
        if key == "messages":
            values = (
                value
                if isinstance(value, Sequence) and not isinstance(value, str | bytes)
                else [value]
            )
            parts.extend(message_output(m) for m in values)
        else:
            parts.append({str(key): value})
    return parts


def message_output(message: Any) -> Any:
    """What a model reads of one message: its content (and an AI message's tool calls);
    a message given as a dict, tuple or string as it is."""
    if isinstance(message, AIMessage) and message.tool_calls:
        return [message.content, [dict(tc) for tc in message.tool_calls]]
    if isinstance(message, BaseMessage):
        return message.content
    return message


def observe_result(veto: Veto, call: ToolCall, result: Any, verdict: Verdict) -> str | None:
    """Record what the model sees of the result of ``call``, which ran (``verdict``),
    in its run: None when recorded (or when the policy keeps no run history, which
    `Veto.observe` would not record: then nothing is prepared), else the refusal text
    the model gets instead (``observe_output``)."""
    if not veto.observes_runs:
        return None
    return observe_output(veto, call, output_of(result), effect=effect_of(verdict))


async def aobserve_result(veto: Veto, call: ToolCall, result: Any, verdict: Verdict) -> str | None:
    """:func:`observe_result` for async code paths."""
    if not veto.observes_runs:
        return None
    return await aobserve_output(veto, call, output_of(result), effect=effect_of(verdict))


def observe_raised(veto: Veto, call: ToolCall, exc: Exception, verdict: Verdict) -> str | None:
    """Record the text of ``exc``, raised by ``call`` after it ran, in its run (an error
    handler around the tool, ``ToolNode(handle_tool_errors=...)``, ``ToolErrorMiddleware``
    or ``ToolRetryMiddleware``, shows it to the model): None when recorded (re-raise
    ``exc``), else the refusal text to give instead (``observe_error``)."""
    return observe_error(veto, call, exc, effect=effect_of(verdict))


async def aobserve_raised(
    veto: Veto, call: ToolCall, exc: Exception, verdict: Verdict
) -> str | None:
    """:func:`observe_raised` for async code paths."""
    return await aobserve_error(veto, call, exc, effect=effect_of(verdict))


def human_messages(value: Any) -> list[HumanMessage]:
    """The human messages of a run's input: a state or input mapping's ``messages``, a
    sequence of messages (``HumanMessage``, ``("user", text)``, ``{"role": "user", ...}``)
    or one message. Raises when ``messages`` cannot be read as messages."""
    if isinstance(value, Mapping):
        value = value.get("messages")
    if value is None:
        return []
    if isinstance(value, BaseMessage | str) or (isinstance(value, Mapping) and "role" in value):
        value = [value]
    if not isinstance(value, Sequence):
        return []
    return [m for m in convert_to_messages(value) if isinstance(m, HumanMessage)]


def input_unreadable(exc: BaseException) -> str:
    """Why a run's input was not recorded when its messages cannot be read."""
    return (
        "Veto: the run's input could not be read, so it cannot be recorded in its "
        f"history (fail closed): {type(exc).__name__}: {exc}"
    )


def observe_user_messages(
    veto: Veto, messages: Sequence[HumanMessage], call: ToolCall
) -> str | None:
    """Record each message's text as ``"@user"`` in ``call``'s run (same principal, env,
    tenant). None when all are recorded, else why not (the first failure): no tool call
    of the run may then run (fail closed)."""
    if not veto.observes_runs:
        return None  # the policy keeps no run history: nothing to record
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


def observe_run_input(
    veto: Veto,
    inputs: Any,
    *,
    principal: Principal | None = None,
    env: str | None = None,
    tenant: str | None = None,
    run_id: str | None = None,
    config: Mapping[str, Any] | None = None,
    tool_names: ToolNames | None = None,
) -> str | None:
    """Record the person's messages in ``inputs`` (what you pass to ``agent.invoke``: a
    mapping with ``messages``, a list of messages, or one message/string) as ``"@user"``
    in the run (DESIGN.md 2.7), for integrations that cannot see an agent's input:
    :func:`~veto_langchain.guard_tools` (call it before each ``invoke`` with the same
    ``inputs`` and ``config``). :class:`~veto_langchain.VetoMiddleware` and
    :class:`~veto_langchain.VetoCallbackHandler` do it themselves.

    The run is ``run_id``, else ``config["configurable"]["veto"]``'s, else the
    ``thread_id``; principal/env/tenant likewise. Returns None when recorded (or when
    called inside a decided tool call: that input comes from a model, not a person),
    else why not. Starting the run anyway stays on the safe side: a rule that asks
    whether the person named a value (``tainted_by: user``) finds nothing and does not
    allow the call, and a run store that is down blocks every flow-rule decision and
    withholds every output; refuse to start the run if you prefer to stop earlier.
    """
    if in_decided_call() or not veto.observes_runs:
        return None
    base = VetoContext(principal=principal, env=env, tenant=tenant, run_id=run_id)
    call = run_of(CallDefaults(base=base, tool_names=tool_names or ToolNames()), config)
    try:
        messages = human_messages(inputs)
    except Exception as exc:
        return input_unreadable(exc)
    return observe_user_messages(veto, messages, call)

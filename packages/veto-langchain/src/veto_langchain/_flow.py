"""Runs and data flow for LangChain (DESIGN.md 2.7): what a tool call's output is, and
which messages are the person's own input.

After an allowed (or approved) call ran, every integration records what the *model*
will see of it (a ``ToolMessage``'s content, the messages of a ``Command`` update) with
the shared toolkit (:func:`veto_core.adapters.observe_output`); when that fails the model
gets the refusal instead. The human messages of a run's input are recorded as
``"@user"`` once per run invocation, before the first tool call is decided.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
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
    recorded_call_ids,
)
from veto_core.authorize import tenant_of

from ._calls import CallDefaults, ToolNames, VetoContext, run_of
from ._nested import in_decided_call

__all__ = [
    "RunInput",
    "aobserve_raised",
    "aobserve_result",
    "effect_of",
    "history_unrecorded",
    "human_messages",
    "input_messages",
    "input_unreadable",
    "message_output",
    "observe_raised",
    "observe_result",
    "observe_run_input",
    "observe_user_messages",
    "output_of",
    "record_tool_message",
    "record_tool_messages",
    "tool_added",
    "tool_produced",
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


def input_messages(value: Any) -> list[BaseMessage]:
    """The messages of a run's input: a state or input mapping's ``messages``, a
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
    return list(convert_to_messages(value))


def human_messages(value: Any) -> list[HumanMessage]:
    """The human messages of a run's input (:func:`input_messages`). Raises when
    ``messages`` cannot be read as messages."""
    return [m for m in input_messages(value) if isinstance(m, HumanMessage)]


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


# --- a history given in the input (re-sent without a checkpointer) ---------------------------


def tool_added(messages: Sequence[BaseMessage], handled: set[str]) -> dict[str, list[int]]:
    """The human messages of an input that a tool produced, by the tool call id of the
    tool message they follow (their indexes): a human message right after a tool message
    not in ``handled`` (only human messages between them), with a model turn after it
    (the person's new message is the last of the input). A tool returning a ``Command``
    adds such messages; a re-sent history carries them. Not the person's words."""
    found: dict[str, list[int]] = {}
    last_tool: str | None = None
    model_after = [False] * (len(messages) + 1)
    for i in range(len(messages) - 1, -1, -1):
        model_after[i] = model_after[i + 1] or isinstance(messages[i], AIMessage)
    for i, message in enumerate(messages):
        if isinstance(message, ToolMessage):
            last_tool = message.tool_call_id if message.tool_call_id not in handled else None
        elif isinstance(message, HumanMessage):
            if last_tool is not None and model_after[i + 1]:
                found.setdefault(last_tool, []).append(i)
        else:
            last_tool = None
    return found


def tool_produced(
    messages: Sequence[BaseMessage], excluded: set[str], handled: set[str]
) -> dict[str, list[str]]:
    """:func:`tool_added` by message id (messages without an id, or in ``excluded``,
    left out)."""
    found: dict[str, list[str]] = {}
    for tool_call_id, indexes in tool_added(messages, handled).items():
        ids = [
            str(messages[i].id)
            for i in indexes
            if messages[i].id is not None and messages[i].id not in excluded
        ]
        if ids:
            found[tool_call_id] = ids
    return found


def record_tool_message(
    veto: Veto,
    tool_names: ToolNames,
    messages: Sequence[BaseMessage],
    message: ToolMessage,
    run: ToolCall,
    extra: Sequence[str] = (),
) -> str | None:
    """Record ``message`` (a tool's output the model reads) in ``run``'s history, as the
    output of its tool (named by the model's tool call with its id, else by the message,
    through ``tool_names``), with ``extra`` (the texts of the human messages the tool
    added): None when recorded, else why not. Sources match tools by name, so a tool
    message whose tool cannot be named is not recorded (no tool call of the run may
    then run: fail closed)."""
    name: str | None = None
    args: dict[str, Any] = {}
    for m in messages:
        if isinstance(m, AIMessage):
            for tc in m.tool_calls:
                if tc.get("id") == message.tool_call_id:
                    name = tc.get("name") or None
                    args = dict(tc.get("args") or {})
    name = name or message.name
    if not name:
        return (
            "Veto: the input has a tool message (tool_call_id "
            f"{message.tool_call_id!r}) whose tool cannot be named, so it cannot be "
            "recorded in the run's history and no tool call of this invocation runs "
            "(fail closed): give each ToolMessage its name or keep the model's tool call"
        )
    try:
        tool = tool_names.canonical(name)
    except Exception as exc:
        return f"Veto: the tool message of {name!r} cannot be recorded (fail closed): {exc}"
    call = replace(run, tool=tool, args=args, tool_call_id=message.tool_call_id or None)
    output: Any = output_of(message)
    if extra:
        output = [output, *extra]
    return observe_output(veto, call, output)


def record_tool_messages(
    veto: Veto,
    tool_names: ToolNames,
    messages: Sequence[BaseMessage],
    todo: Sequence[ToolMessage],
    run: ToolCall,
    extras: Mapping[str, Sequence[str]],
) -> tuple[list[str], list[str], str | None]:
    """Record each of ``todo`` (tool messages of ``messages``) that ``run``'s history
    lacks (:func:`record_tool_message`, with the texts ``extras`` names for its tool call
    id): ``(tool call ids now in the history, those not recorded, the first reason)``."""
    try:
        recorded = recorded_call_ids(veto, run)
    except Exception:
        recorded = set()  # unknown: record them (more history is the safe side)
    handled: list[str] = []
    failed: list[str] = []
    why: str | None = None
    for message in todo:
        tool_call_id = message.tool_call_id
        if tool_call_id and tool_call_id in recorded:
            handled.append(tool_call_id)
            continue
        reason = record_tool_message(
            veto, tool_names, messages, message, run, extras.get(tool_call_id, ())
        )
        if reason is None:
            handled.append(tool_call_id)
            recorded.add(tool_call_id)
        else:
            failed.append(tool_call_id)
            why = why or reason
    return handled, failed, why


class RunInput:
    """The input of a run whose integration sees it only as a value (the callback
    handler's outermost run, :func:`observe_run_input`): its tool messages that the run's
    history lacks (a conversation re-sent without a checkpointer) are recorded as the
    outputs of their tools, and its human messages that are the person's as ``"@user"``
    (once). A human message that directly follows a tool message, with a model turn
    after it, is that tool's output (a ``Command`` added it), never the person's."""

    def __init__(self, inputs: Any, tool_names: ToolNames) -> None:
        self.inputs = inputs
        self.tool_names = tool_names
        self._person_recorded = False

    def record_history(self, veto: Veto, run: ToolCall) -> str | None:
        """Record the tool messages the run's history lacks (each once per
        ``tool_call_id``): None when it has them all, else why not (the first failure;
        the others are still tried). Call again to retry."""
        if not veto.observes_runs:
            return None
        try:
            messages = input_messages(self.inputs)
        except Exception as exc:
            return input_unreadable(exc)
        todo = [m for m in messages if isinstance(m, ToolMessage)]
        if not todo:
            return None
        run = replace(run, tool="@user", args={}, tool_call_id=None)
        extras = {
            tool_call_id: [str(messages[i].text) for i in indexes]
            for tool_call_id, indexes in tool_added(messages, set()).items()
        }
        return record_tool_messages(veto, self.tool_names, messages, todo, run, extras)[2]

    def record_person(self, veto: Veto, run: ToolCall) -> str | None:
        """Record the person's messages as ``"@user"`` unless done: None when recorded,
        else why not (call again to retry)."""
        if self._person_recorded or not veto.observes_runs:
            return None
        try:
            messages = input_messages(self.inputs)
        except Exception as exc:
            return input_unreadable(exc)
        added = {i for indexes in tool_added(messages, set()).values() for i in indexes}
        person = [
            m for i, m in enumerate(messages) if isinstance(m, HumanMessage) and i not in added
        ]
        why = observe_user_messages(veto, person, run)
        if why is None:
            self._person_recorded = True
        return why


# Runs whose input (given to observe_run_input) has tool messages that could not be
# recorded: no tool call of the run may run until they are (GuardedTool asks).
_UNRECORDED: weakref.WeakKeyDictionary[
    Veto, dict[tuple[str | None, str], tuple[RunInput, ToolCall]]
]
_UNRECORDED = weakref.WeakKeyDictionary()
_UNRECORDED_LOCK = threading.Lock()


def _run_key(veto: Veto, run: ToolCall) -> tuple[str | None, str] | None:
    return None if run.run_id is None else (tenant_of(run, veto.tenant), run.run_id)


def _set_unrecorded(veto: Veto, run: ToolCall, entry: RunInput | None) -> None:
    key = _run_key(veto, run)
    if key is None:
        return
    with _UNRECORDED_LOCK:
        runs = _UNRECORDED.setdefault(veto, {})
        if entry is None:
            runs.pop(key, None)
        else:
            runs[key] = (entry, run)


def history_unrecorded(veto: Veto, call: ToolCall) -> str | None:
    """Why ``call``'s run lacks tool messages its input (given to
    :func:`observe_run_input`) carried, if it does: recording them is tried again
    first; while it fails, no tool call of the run may run (fail closed)."""
    key = _run_key(veto, call)
    if key is None:
        return None
    with _UNRECORDED_LOCK:
        found = _UNRECORDED.get(veto, {}).get(key)
    if found is None:
        return None
    entry, run = found
    why = entry.record_history(veto, run)
    if why is None:
        with _UNRECORDED_LOCK:
            runs = _UNRECORDED.get(veto, {})
            if runs.get(key, (None,))[0] is entry:
                runs.pop(key, None)
    return why


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
    ``inputs`` and ``config``, and the same ``tool_names`` as the tools).
    :class:`~veto_langchain.VetoMiddleware` and :class:`~veto_langchain.VetoCallbackHandler`
    do it themselves.

    The run is ``run_id``, else ``config["configurable"]["veto"]``'s, else the
    ``thread_id``; principal/env/tenant likewise. Returns None when recorded (or when
    called inside a decided tool call: that input comes from a model, not a person),
    else why not. Starting the run anyway stays on the safe side: a rule that asks
    whether the person named a value (``tainted_by: user``) finds nothing and does not
    allow the call, and a run store that is down blocks every flow-rule decision and
    withholds every output; refuse to start the run if you prefer to stop earlier.

    A conversation re-sent without a checkpointer carries tool messages of earlier
    runs: those the run's history lacks are recorded first, as the outputs of their
    tools (named by the model's tool call with the same id, else the message's
    ``name``), and a human message right after one of them (with a model turn after
    it) is that tool's output, not the person's. If one cannot be recorded (its tool
    cannot be named, the store fails), no guarded tool call of the run runs until it
    is (each tries again first; fail closed).
    """
    if in_decided_call() or not veto.observes_runs:
        return None
    base = VetoContext(principal=principal, env=env, tenant=tenant, run_id=run_id)
    names = tool_names or ToolNames()
    call = run_of(CallDefaults(base=base, tool_names=names), config)
    entry = RunInput(inputs, names)
    history = entry.record_history(veto, call)
    _set_unrecorded(veto, call, entry if history is not None else None)
    person = entry.record_person(veto, call)
    return history or person

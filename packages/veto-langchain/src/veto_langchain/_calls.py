"""From LangChain's view of a tool call to a Veto ``ToolCall``: names, who, where, which run.

:class:`VetoContext` and :class:`ToolNames` are the ones all adapters share
(:mod:`veto_core.adapters`). Pass a ``VetoContext`` either in the runnable config,
``agent.invoke(inputs, config={"configurable": {"veto": VetoContext(...)}})``, or as
(part of) the LangGraph runtime context, ``agent.invoke(inputs, context=VetoContext(...))``
/ a context object with a ``veto`` attribute or key. A plain ``dict`` with the same keys
works too. Fields left ``None`` keep the value configured on the middleware/handler/tool.
For MCP tools loaded with ``MultiServerMCPClient(..., tool_name_prefix=True)`` (named
``<server>_<tool>``) list the servers in ``ToolNames(mcp_servers=...)``; for tools loaded
without the prefix map each name to its server in ``ToolNames(mcp_tools=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from veto_core import Principal, ToolCall
from veto_core.adapters import ToolNames, VetoContext

__all__ = ["FRAMEWORK", "CallDefaults", "ToolNames", "VetoContext", "build_call"]

FRAMEWORK = "langchain"
_CHECKPOINTER_KEY = "__pregel_checkpointer"  # langgraph's CONFIG_KEY_CHECKPOINTER
_RUNTIME_KEY = "__pregel_runtime"  # langgraph's CONFIG_KEY_RUNTIME


_PLAIN_NAMES = ToolNames()


@dataclass(frozen=True, kw_only=True)
class CallDefaults:
    """What an adapter object was constructed with."""

    base: VetoContext
    tool_names: ToolNames = _PLAIN_NAMES


def resolve_context(
    defaults: CallDefaults, config: Mapping[str, Any] | None, runtime_context: Any = None
) -> tuple[VetoContext, str | None]:
    """Constructor values, then ``config["configurable"]["veto"]``, then the runtime context.

    Returns the merged context and the default run id: the LangGraph ``thread_id``
    (stable across an interrupt and its resume), else the invocation's ``run_id``
    (``config={"run_id": ...}``, LangGraph's ``execution_info.run_id``). Inside a
    decided tool call (a sub-agent, a tool calling tools) the run is always the outer
    call's, whatever the config or context says: the outer model reads what happens
    inside, so it must be in the outer run's history (DESIGN.md 2.7).
    """
    ctx = defaults.base
    thread_id: str | None = None
    configurable = (config or {}).get("configurable") or {}
    if configurable:
        over = VetoContext.coerce(configurable.get("veto"))
        if over is not None:
            ctx = over.over(ctx)
        tid = configurable.get("thread_id")
        if tid is None:  # the invocation's own run id, when the caller gave one
            info = getattr(configurable.get(_RUNTIME_KEY), "execution_info", None)
            tid = getattr(info, "run_id", None)
        thread_id = None if tid is None else str(tid)
    over = VetoContext.from_run_context(runtime_context)
    if over is not None:
        ctx = over.over(ctx)
    from ._nested import outer_run_id  # (imports this module)

    outer = outer_run_id()
    if outer is not None:  # inside a decided call: what runs here is read by the outer
        return replace(ctx, run_id=outer), outer  # model, so it joins the outer run
    return ctx, thread_id


def has_checkpointer(config: Mapping[str, Any] | None) -> bool:
    configurable = (config or {}).get("configurable") or {}
    return configurable.get(_CHECKPOINTER_KEY) is not None


def build_call(
    defaults: CallDefaults,
    *,
    name: str,
    args: Any,
    tool_call_id: str | None,
    config: Mapping[str, Any] | None,
    runtime_context: Any = None,
) -> ToolCall:
    """The Veto ``ToolCall`` for one LangChain tool call. Raises on malformed input
    (callers fail closed)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"tool name is missing or not a string: {name!r}")
    if isinstance(args, str):
        args = {"input": args}
    if not isinstance(args, Mapping):
        raise TypeError(f"tool arguments must be an object, got {type(args).__name__}")
    ctx, thread_id = resolve_context(defaults, config, runtime_context)
    call = ToolCall(
        tool=defaults.tool_names.canonical(name),
        args=dict(args),
        principal=ctx.principal or Principal(),
        env=ctx.env,
        tenant=ctx.tenant,
        context=dict(ctx.context) if ctx.context else {},
        run_id=ctx.run_id or thread_id,
        tool_call_id=tool_call_id,
        framework=FRAMEWORK,
    )
    return call


def run_of(
    defaults: CallDefaults, config: Mapping[str, Any] | None, runtime_context: Any = None
) -> ToolCall:
    """Who, where and which run, as the pseudo-call ``"@user"`` (no arguments): what the
    run's human input is observed under (DESIGN.md 2.7)."""
    ctx, thread_id = resolve_context(defaults, config, runtime_context)
    return ToolCall(
        tool="@user",
        principal=ctx.principal or Principal(),
        env=ctx.env,
        tenant=ctx.tenant,
        context=dict(ctx.context) if ctx.context else {},
        run_id=ctx.run_id or thread_id,
        framework=FRAMEWORK,
    )


def with_args(call: ToolCall, args: Mapping[str, Any]) -> ToolCall:
    return replace(call, args=dict(args))

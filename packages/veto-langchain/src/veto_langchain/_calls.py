"""From LangChain's view of a tool call to a Veto ``ToolCall``: names, who, where, which run."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from veto_core import Principal, ToolCall

__all__ = ["FRAMEWORK", "CallDefaults", "ToolNames", "VetoContext", "build_call"]

FRAMEWORK = "langchain"
_CHECKPOINTER_KEY = "__pregel_checkpointer"  # langgraph's CONFIG_KEY_CHECKPOINTER


@dataclass(frozen=True, kw_only=True, slots=True)
class VetoContext:
    """Per-run overrides of who is calling, where, and which run this is.

    Pass it either in the runnable config,
    ``agent.invoke(inputs, config={"configurable": {"veto": VetoContext(...)}})``,
    or as (part of) the LangGraph runtime context,
    ``agent.invoke(inputs, context=VetoContext(...))`` / a context object with a
    ``veto`` attribute or key. A plain ``dict`` with the same keys works too.
    Fields left ``None`` keep the value configured on the middleware/handler/tool.
    ``context`` is what policies read as ``context.KEY``.
    """

    principal: Principal | None = None
    env: str | None = None
    tenant: str | None = None
    run_id: str | None = None
    context: Mapping[str, Any] | None = None

    @classmethod
    def coerce(cls, value: Any) -> VetoContext | None:
        """A ``VetoContext`` from itself, a mapping of its fields, or None; else TypeError."""
        if value is None or isinstance(value, VetoContext):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"principal", "env", "tenant", "run_id", "context"}
            if unknown:
                raise TypeError(f"unknown VetoContext keys: {sorted(unknown)}")
            principal = value.get("principal")
            if isinstance(principal, Mapping):
                data = dict(principal)
                if "roles" in data and not isinstance(data["roles"], str):
                    data["roles"] = tuple(data["roles"])
                principal = Principal(**data)
            if principal is not None and not isinstance(principal, Principal):
                raise TypeError(f"VetoContext.principal must be a Principal, not {principal!r}")
            return cls(
                principal=principal,
                env=value.get("env"),
                tenant=value.get("tenant"),
                run_id=value.get("run_id"),
                context=value.get("context"),
            )
        raise TypeError(f"expected a VetoContext or a mapping, got {type(value).__name__}")

    def over(self, base: VetoContext) -> VetoContext:
        """``self``'s set fields on top of ``base``."""
        return VetoContext(
            principal=self.principal if self.principal is not None else base.principal,
            env=self.env if self.env is not None else base.env,
            tenant=self.tenant if self.tenant is not None else base.tenant,
            run_id=self.run_id if self.run_id is not None else base.run_id,
            context=self.context if self.context is not None else base.context,
        )


@dataclass(frozen=True, kw_only=True)
class ToolNames:
    """How LangChain tool names map to the canonical names policies use (DESIGN.md 2.3).

    - ``aliases``: exact renames, ``{"search": "web.search"}``.
    - ``mcp_servers``: servers whose tools were loaded with
      ``MultiServerMCPClient(..., tool_name_prefix=True)``, which names a tool
      ``<server>_<tool>``; such a name becomes ``mcp__<server>__<tool>`` (the
      longest matching server name wins).
    - ``mcp_tools``: for tools loaded without the prefix (the adapters' default),
      which server each bare tool name comes from: ``{"create_issue": "github"}``
      → ``mcp__github__create_issue``.
    - ``custom``: a last-resort function ``name -> canonical name``.

    A name already in the ``mcp__server__tool`` form is kept. Names are NFC-normalized.
    """

    aliases: Mapping[str, str] = field(default_factory=dict)
    mcp_servers: tuple[str, ...] = ()
    mcp_tools: Mapping[str, str] = field(default_factory=dict)
    custom: Callable[[str], str] | None = None
    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.mcp_servers, str):
            raise TypeError("ToolNames.mcp_servers must be a tuple of server names")
        servers = tuple(sorted(self.mcp_servers, key=len, reverse=True))
        object.__setattr__(self, "mcp_servers", servers)

    def canonical(self, name: str) -> str:
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        out = self._canonical(unicodedata.normalize("NFC", name))
        if len(self._cache) < 4096:
            self._cache[name] = out
        return out

    def _canonical(self, name: str) -> str:
        if name in self.aliases:
            return self.aliases[name]
        if name.startswith("mcp__"):
            return name
        if name in self.mcp_tools:
            return f"mcp__{self.mcp_tools[name]}__{name}"
        for server in self.mcp_servers:
            if name.startswith(server + "_") and len(name) > len(server) + 1:
                return f"mcp__{server}__{name[len(server) + 1 :]}"
        if self.custom is not None:
            return self.custom(name)
        return name


_PLAIN_NAMES = ToolNames()


@dataclass(frozen=True, kw_only=True)
class CallDefaults:
    """What an adapter object was constructed with."""

    base: VetoContext
    tool_names: ToolNames = _PLAIN_NAMES


def _from_context_object(ctx: Any) -> VetoContext | None:
    if ctx is None:
        return None
    if isinstance(ctx, VetoContext):
        return ctx
    if isinstance(ctx, Mapping):
        return VetoContext.coerce(ctx.get("veto")) if "veto" in ctx else None
    return VetoContext.coerce(getattr(ctx, "veto", None))


def resolve_context(
    defaults: CallDefaults, config: Mapping[str, Any] | None, runtime_context: Any = None
) -> tuple[VetoContext, str | None]:
    """Constructor values, then ``config["configurable"]["veto"]``, then the runtime context.

    Returns the merged context and the LangGraph ``thread_id`` (the default run id:
    stable across an interrupt and its resume).
    """
    ctx = defaults.base
    thread_id: str | None = None
    configurable = (config or {}).get("configurable") or {}
    if configurable:
        over = VetoContext.coerce(configurable.get("veto"))
        if over is not None:
            ctx = over.over(ctx)
        tid = configurable.get("thread_id")
        thread_id = None if tid is None else str(tid)
    over = _from_context_object(runtime_context)
    if over is not None:
        ctx = over.over(ctx)
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


def with_args(call: ToolCall, args: Mapping[str, Any]) -> ToolCall:
    return replace(call, args=dict(args))

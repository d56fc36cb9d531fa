"""From the OpenAI Agents SDK's view of a tool call to a Veto ``ToolCall``: names, who,
where, which run."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from veto_core import Principal

__all__ = ["FRAMEWORK", "RolesSpec", "RunIdSpec", "ToolNames", "VetoContext", "parse_arguments"]

FRAMEWORK = "openai-agents"

RolesSpec = (
    Sequence[str] | Mapping[str, Sequence[str]] | Callable[[str | None], Iterable[str]] | None
)
"""Roles for the principal: one list for every agent, a mapping ``agent name -> roles``,
or a function ``agent name -> roles``."""

RunIdSpec = str | Callable[[Any], str | None] | None
"""A fixed run id, or a function of the SDK run context object (what you passed as
``Runner.run(..., context=...)``) returning one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class VetoContext:
    """Per-run overrides of who is calling, where, and which run this is.

    Put it in the SDK run context: ``Runner.run(agent, input, context={"veto": {...}})``
    (a plain mapping survives ``RunState.to_json()``, so a resumed run in another
    process decides with the same principal and run id), a context object with a
    ``veto`` attribute, or a ``VetoContext`` as the whole context. Fields left ``None``
    keep the values given to ``guard_agent`` / ``guard_tools``. ``context`` is what
    policies read as ``context.KEY``.
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
            context = value.get("context")
            if context is not None and not isinstance(context, Mapping):
                raise TypeError("VetoContext.context must be a mapping")
            return cls(
                principal=principal,
                env=_opt_str(value.get("env"), "env"),
                tenant=_opt_str(value.get("tenant"), "tenant"),
                run_id=_opt_str(value.get("run_id"), "run_id"),
                context=context,
            )
        raise TypeError(f"expected a VetoContext or a mapping, got {type(value).__name__}")

    @classmethod
    def from_run_context(cls, context: Any) -> VetoContext | None:
        """The ``VetoContext`` carried by the SDK run context object, if any."""
        if context is None:
            return None
        if isinstance(context, VetoContext):
            return context
        if isinstance(context, Mapping):
            return cls.coerce(context.get("veto")) if "veto" in context else None
        return cls.coerce(getattr(context, "veto", None))


def _opt_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"VetoContext.{name} must be a string, not {type(value).__name__}")


@dataclass(frozen=True, kw_only=True)
class ToolNames:
    """How SDK tool names map to the canonical names policies use (DESIGN.md 2.3).

    - ``aliases``: exact renames, ``{"search": "web.search"}``.
    - ``custom``: a last-resort function ``name -> canonical name``.

    Tools from an agent's ``mcp_servers`` are named ``mcp__<server>__<tool>`` (the
    server's ``name``; a ``<server>_`` prefix added by ``include_server_in_tool_names``
    is removed), hosted MCP tools ``mcp__<server_label>__<tool>``. A name already in
    the ``mcp__server__tool`` form is kept. Names are NFC-normalized.
    """

    aliases: Mapping[str, str] = field(default_factory=dict)
    custom: Callable[[str], str] | None = None

    def canonical(self, name: str) -> str:
        name = unicodedata.normalize("NFC", name)
        if name in self.aliases:
            return self.aliases[name]
        if name.startswith("mcp__"):
            return name
        if self.custom is not None:
            return self.custom(name)
        return name

    def mcp(self, server: str, tool: str) -> str:
        server = unicodedata.normalize("NFC", server)
        tool = unicodedata.normalize("NFC", tool)
        if tool.startswith(server + "_") and len(tool) > len(server) + 1:
            tool = tool[len(server) + 1 :]
        return self.canonical(f"mcp__{server}__{tool}")


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """The call's arguments as the model sent them (JSON text, not coerced by pydantic).

    Both the approval check and the guardrail read the same raw JSON, so a request
    bound to these arguments is found again after a resume. Raises on anything that
    is not a JSON object (callers fail closed)."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or arguments == "":
        return {}
    if not isinstance(arguments, str):
        raise TypeError(f"tool arguments must be JSON text, got {type(arguments).__name__}")
    parsed = json.loads(arguments)
    if not isinstance(parsed, dict):
        raise ValueError(f"tool arguments must be a JSON object, got {type(parsed).__name__}")
    return parsed


def args_key(args: Mapping[str, Any]) -> str:
    """A stable text for a call's arguments (memo keys)."""
    try:
        return json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):
        return repr(sorted(args.items(), key=lambda kv: str(kv[0])))

"""From the OpenAI Agents SDK's view of a tool call to a Veto ``ToolCall``: names, who,
where, which run.

:class:`VetoContext` and :class:`ToolNames` are the ones all adapters share
(:mod:`veto_core.adapters`). Put a ``VetoContext`` in the SDK run context:
``Runner.run(agent, input, context={"veto": {...}})`` (a plain mapping survives
``RunState.to_json()``, so a resumed run in another process decides with the same
principal and run id), a context object with a ``veto`` attribute, or a ``VetoContext``
as the whole context. Fields left ``None`` keep the values given to ``guard_agent`` /
``guard_tools``. Tools from an agent's ``mcp_servers`` are named with
``ToolNames.mcp(server name, tool)``, hosted MCP tools with their ``server_label``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from veto_core.adapters import ToolNames, VetoContext

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

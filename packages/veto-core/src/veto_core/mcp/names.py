"""Canonical names of MCP tools, shared by the proxy and the framework adapters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..adapters import ToolNames

__all__ = ["mcp_tool_aliases", "mcp_tool_name"]

_NAMES = ToolNames()


def mcp_tool_name(server: str, tool: str) -> str:
    """The canonical policy name of ``tool`` on MCP server ``server``:
    ``mcp__<server>__<tool>``, computed exactly as the framework adapters do
    (:meth:`veto_core.adapters.ToolNames.mcp`), so one policy decides a tool the same
    way through the proxy and through LangChain, CrewAI or the Agents SDK."""
    return _NAMES.mcp(server, tool)


def mcp_tool_aliases(server: str, tools: Iterable[Any]) -> dict[str, str]:
    """``{framework tool name: canonical name}`` for tools a framework loaded from MCP
    server ``server``, for an adapter's ``tool_names``/``ToolNames(aliases=...)``.

    Uses the original MCP tool name where the framework keeps it (CrewAI's
    ``MCPNativeTool.original_tool_name``: CrewAI names the tool
    ``<derived server>_<tool>``), else the framework's name (a ``<server>_`` prefix, as
    ``langchain-mcp-adapters`` adds with ``tool_name_prefix=True``, is removed), so
    ``veto_crewai.install(veto, tool_names=mcp_tool_aliases("github", tools))`` decides
    exactly the names ``veto mcp proxy --name github`` decides.
    """
    out: dict[str, str] = {}
    for tool in tools:
        name = str(getattr(tool, "name", tool))
        original = getattr(tool, "original_tool_name", None)
        out[name] = mcp_tool_name(server, str(original) if original else name)
    return out

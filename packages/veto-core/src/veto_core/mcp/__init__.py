"""MCP: one policy for every MCP client (DESIGN.md 7a).

``veto mcp proxy`` (:mod:`veto_core.mcp.cli`) serves an upstream MCP server through
Veto. The ``mcp`` SDK (extra ``veto-core[mcp]``, 1.x or 2.x) is imported only when
a proxy runs: importing this package or :func:`mcp_tool_name` needs nothing of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .names import mcp_tool_aliases, mcp_tool_name

if TYPE_CHECKING:
    from .gate import Caller, McpGate, ToolCatalog, may_ever_run
    from .identity import Identity, TokenAuthority, load_identity
    from .proxy import McpProxy, ProxySettings

__all__ = [
    "Caller",
    "Identity",
    "McpGate",
    "McpProxy",
    "ProxySettings",
    "TokenAuthority",
    "ToolCatalog",
    "load_identity",
    "may_ever_run",
    "mcp_tool_aliases",
    "mcp_tool_name",
]

_LAZY = {
    "Caller": "gate",
    "McpGate": "gate",
    "ToolCatalog": "gate",
    "may_ever_run": "gate",
    "Identity": "identity",
    "TokenAuthority": "identity",
    "load_identity": "identity",
    "McpProxy": "proxy",
    "ProxySettings": "proxy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)

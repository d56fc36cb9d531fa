"""Veto for LangChain: every tool call decided by policy, durably recorded, and paused for
approval when required.

>>> from veto_langchain import VetoMiddleware
>>> agent = create_agent(model, tools, middleware=[VetoMiddleware(veto)])  # doctest: +SKIP

- :class:`VetoMiddleware` for ``create_agent`` (sync and async; LangGraph
  ``interrupt()`` approvals when the graph has a checkpointer).
- :class:`VetoCallbackHandler` for runnables without middleware (it can stop a
  call, not answer the model; see its module docstring).
- :func:`guard_tool` / :func:`guard_tools` wrap any ``BaseTool`` (with them, record the
  person's input with :func:`observe_run_input` before each run).
- :class:`VetoContext` overrides principal/env/tenant/run id per run;
  :class:`ToolNames` canonicalizes names (MCP tools → ``mcp__server__tool``).
"""

from ._calls import ToolNames, VetoContext
from ._flow import observe_run_input
from .callbacks import VetoCallbackHandler
from .errors import ToolCallDenied
from .middleware import VetoMiddleware
from .tools import GuardedTool, guard_tool, guard_tools

__all__ = [
    "GuardedTool",
    "ToolCallDenied",
    "ToolNames",
    "VetoCallbackHandler",
    "VetoContext",
    "VetoMiddleware",
    "guard_tool",
    "guard_tools",
    "observe_run_input",
]

__version__ = "0.1.0"

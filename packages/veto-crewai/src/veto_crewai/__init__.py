"""Veto for CrewAI: every tool call decided by policy, durably recorded, and held for
approval when required.

>>> import veto_crewai
>>> veto_crewai.install(veto)                      # every crew in this process  # doctest: +SKIP
>>> tools = veto_crewai.guard_tools(tools, veto)   # or: decide inside the tools  # doctest: +SKIP

- :func:`install` / :func:`uninstall`: CrewAI's global tool-call hooks (fail closed:
  any error blocks the call; the model reads Veto's reason with the rule ids).
- :func:`scope`: the same, for the tool calls made inside one ``with`` block (one
  crew or kickoff).
- :func:`guard_tool` / :func:`guard_tools`: wrap ``BaseTool`` and ``@tool`` tools so
  the decision happens inside ``_run``/``_arun``, with or without hooks.
- :func:`run_context`: per-kickoff principal, env, tenant, run id and context.

Runs and data flow (DESIGN.md 2.7): the output of every call that ran is recorded in
its run (withheld from the model when that fails), and the outermost kickoff's
``inputs`` (the person's words; not the task text) as ``"@user"`` before the
kickoff's first tool call is decided.

Approvals block the calling thread until decided or expired (CrewAI has no
suspend/resume); ``akickoff`` runs tools in worker threads, so the event loop is free.
"""

from ._calls import run_context
from .errors import ToolCallDenied
from .hooks import VetoHooks, install, installed, scope, uninstall
from .tools import GuardedTool, guard_tool, guard_tools

__all__ = [
    "GuardedTool",
    "ToolCallDenied",
    "VetoHooks",
    "guard_tool",
    "guard_tools",
    "install",
    "installed",
    "run_context",
    "scope",
    "uninstall",
]

__version__ = "0.1.0"

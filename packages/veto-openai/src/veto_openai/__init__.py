"""Veto for the OpenAI Agents SDK: every tool call decided by policy, durably recorded, and
paused for approval through the SDK's own human-in-the-loop flow.

>>> from veto_openai import guard_agent, run_config, approvals
>>> agent = guard_agent(agent, veto)                                   # doctest: +SKIP
>>> result = Runner.run_sync(agent, "...", run_config=run_config())    # doctest: +SKIP
>>> result = approvals.resume_sync(result, veto)  # after a person decided  # doctest: +SKIP

- :func:`guard_agent` / :func:`guard_tools` / :func:`guard_tool` return guarded copies
  (a tool input guardrail plus ``needs_approval``); the originals are never changed.
- :func:`run_config` turns on the SDK's pre-approval guardrails so the Veto decision
  and approval request are recorded as the run pauses.
- :mod:`veto_openai.approvals`: ``sync`` (the Veto request of each interruption),
  ``resume`` / ``resume_sync`` (apply the store's decisions and continue).
- Runs and data flow (DESIGN 2.7): a guarded agent records the run input as
  ``"@user"`` (an input guardrail that runs before the model) and every executed
  call's output (the body gate), in the run named by the ``run_id``; an output that
  cannot be recorded (no ``run_id``, store down) is withheld from the model.
- :class:`VetoContext` (in the SDK run context) overrides principal/env/tenant/run id
  per run; :class:`ToolNames` canonicalizes names.
"""

from . import approvals
from ._calls import FRAMEWORK, ToolNames, VetoContext
from ._gate import Verdict
from .approvals import PendingCall
from .guard import (
    GUARDRAIL_NAME,
    INPUT_GUARDRAIL_NAME,
    VetoGuard,
    VetoInputGuardrail,
    VetoToolGuardrail,
    guard_agent,
    guard_of,
    guard_tool,
    guard_tools,
    run_config,
)

__all__ = [
    "FRAMEWORK",
    "GUARDRAIL_NAME",
    "INPUT_GUARDRAIL_NAME",
    "PendingCall",
    "ToolNames",
    "Verdict",
    "VetoContext",
    "VetoGuard",
    "VetoInputGuardrail",
    "VetoToolGuardrail",
    "approvals",
    "guard_agent",
    "guard_of",
    "guard_tool",
    "guard_tools",
    "run_config",
]

__version__ = "0.1.0"

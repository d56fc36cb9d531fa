"""``install()`` / ``uninstall()`` / ``scope()``: decide every CrewAI tool call through
CrewAI's tool-call hooks.

How the hooks keep a blocked call blocked (verified on crewai 1.15):

- CrewAI **swallows** any exception a before-tool-call hook raises (except its own
  ``HookAborted``, which aborts the whole run) and then **runs the tool**. So the
  before hook here never lets an exception out: every failure of its own (store down,
  malformed arguments, a bug, a plugin) becomes ``return False``, the only signal that
  blocks a single call.
- On ``return False`` CrewAI tells the model "Tool execution blocked by hook". The
  after-tool-call hook, which CrewAI runs for blocked calls too and hands the *same*
  ``tool_input`` dict, replaces that text with Veto's reason and rule ids.
- For a call that ran, the same after hook records the output in the run
  (``Veto.observe``, DESIGN.md 2.7; effect ``require_approval`` when approved) and,
  if that fails, returns the refusal text, which CrewAI shows the model instead of
  the output. It never raises: CrewAI would swallow that and show the output.
- The kickoff's ``inputs`` (the person's words) are recorded as ``"@user"`` before
  the first call of the kickoff is decided (:mod:`veto_crewai._runs`).
- Hooks are synchronous. ``Crew.akickoff`` runs tool execution in worker threads, so
  an approval wait never blocks the event loop; if a hook ever runs on an event-loop
  thread, approvals are refused rather than waited for (see ``_gate.check``).

The decision is made on the arguments the tool body will receive: the hook validates
``tool_input`` with the tool's ``args_schema`` the way ``BaseTool.run`` does after the
hooks (pydantic's lax coercions included), and refuses input the schema rejects.

Register ``install()`` **after** any hook that edits ``tool_input`` in place: CrewAI
runs before-hooks in registration order, and an edit made after Veto decided is not
decided. (``guard_tools`` decides inside the tool, with the arguments it really gets.)
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from veto_core import Principal, Veto

from . import _gate, _runs
from ._args import received_args
from ._calls import CallInput, RoleMap, Settings, ToolNameMap, build_call, call_site
from .tools import GuardedTool

__all__ = ["VetoHooks", "install", "installed", "scope", "uninstall"]

_MAX_PENDING = 4096


class VetoHooks:
    """The pair of CrewAI hooks for one ``Veto``: ``before_tool_call`` decides (and blocks
    by returning ``False``), ``after_tool_call`` tells the model why, or records the
    output of a call that ran in the run (DESIGN.md 2.7) and withholds it when that
    fails.

    Made by :func:`install` (global) or :func:`scope` (one block of code); usable
    directly with ``crewai.hooks.register_before_tool_call_hook`` etc. if you manage
    registration yourself.
    """

    def __init__(self, veto: Veto, settings: Settings | None = None) -> None:
        self.veto = veto
        self.settings = settings or Settings()
        # id(tool_input) -> (tool_input, verdict): what the after hook must do (observe
        # the output of a call that ran, or give the reason it did not). The dict is kept
        # alive while listed, so its id cannot be reused meanwhile.
        self._pending: OrderedDict[int, tuple[Any, _gate.Verdict]] = OrderedDict()
        self._lock = threading.Lock()

    # -- the hooks -------------------------------------------------------------------------

    def before_tool_call(self, ctx: Any) -> bool | None:
        """``None`` lets the call run; ``False`` blocks it. Never raises."""
        tool_name = "?"
        try:
            tool_name = str(getattr(ctx, "tool_name", None) or "?")
            original = getattr(getattr(ctx, "tool", None), "_original_tool", None)
            if _guarded_by(original, self.veto):
                return None  # a guard_tool wrapper on the same Veto decides inside the tool
            verdict = self.decide(ctx)
        except Exception as exc:  # fail closed, whatever it was
            verdict = _gate.failure(tool_name, exc)
        try:
            self._remember(ctx, verdict)
        except Exception:
            return False  # its output could not be observed: it must not run
        return None if verdict.run else False

    def after_tool_call(self, ctx: Any) -> str | None:
        """For a call this object blocked: the reason, replacing CrewAI's generic text.
        For one it let run: record the output in the run (DESIGN.md 2.7) and return None
        (the model gets the output), or, when that fails, the refusal that replaces it.
        Never raises (CrewAI would swallow it and show the unrecorded output)."""
        try:
            tool_input = getattr(ctx, "tool_input", None)
            with self._lock:
                entry = self._pending.pop(id(tool_input), None)
            if entry is None or entry[0] is not tool_input:
                return None
            verdict = entry[1]
        except Exception:
            return None
        if not verdict.run:
            return verdict.reason
        try:
            output = getattr(ctx, "tool_result", None)
            if output is None:
                output = getattr(ctx, "raw_tool_result", None)
            return _gate.observe(self.veto, verdict, output)
        except Exception as exc:  # observe fails closed itself; belt and braces
            return f"Veto: the output was withheld (fail closed): {type(exc).__name__}: {exc}"

    # -- internals -------------------------------------------------------------------------

    def decide(self, ctx: Any) -> _gate.Verdict:
        """Build the ``ToolCall`` for a hook context and run it through the gate."""
        tool_name = getattr(ctx, "tool_name", None)
        site = call_site(tool_name)
        try:
            tool = getattr(ctx, "tool", None)
            tool = getattr(tool, "_original_tool", None) or tool
            call = build_call(
                self.settings,
                CallInput(
                    tool_name=tool_name,  # type: ignore[arg-type]
                    args=received_args(tool, getattr(ctx, "tool_input", None)),
                    agent=getattr(ctx, "agent", None) or site.agent,
                    crew=getattr(ctx, "crew", None) or site.crew,
                    task=getattr(ctx, "task", None) or site.task,
                    model_call_id=site.call_id,
                ),
            )
        except Exception as exc:
            return _gate.failure(str(tool_name), exc)
        return _gate.check(self.veto, call, approval_timeout=self.settings.approval_timeout)

    def _remember(self, ctx: Any, verdict: _gate.Verdict) -> None:
        tool_input = getattr(ctx, "tool_input", None)
        with self._lock:
            self._pending[id(tool_input)] = (tool_input, verdict)
            while len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)


def _guarded_by(tool: Any, veto: Veto) -> bool:
    return isinstance(tool, GuardedTool) and tool.veto is veto


def _settings(**options: Any) -> Settings:
    return Settings(**{k: v for k, v in options.items() if v is not None})


# --- global registration ------------------------------------------------------------------

_INSTALLED: list[VetoHooks] = []
_INSTALL_LOCK = threading.Lock()


def install(
    veto: Veto,
    *,
    principal: Principal | None = None,
    env: str | None = None,
    tenant: str | None = None,
    run_id: str | None = None,
    context: Mapping[str, Any] | None = None,
    roles: RoleMap | None = None,
    agent_name: Any = None,
    tool_names: ToolNameMap | None = None,
    approval_timeout: float | None = None,
) -> VetoHooks:
    """Decide every tool call of every crew and agent in this process with ``veto``.

    Registers a global before-tool-call hook (decide; block with ``False`` on deny, on
    an approval that is not granted, and on any error) and an after-tool-call hook
    (the model reads Veto's reason instead of CrewAI's "blocked by hook").

    - ``principal``: who the calls act for (user, tenant, session; default agent and
      roles). Per call, ``principal.agent`` becomes the CrewAI agent's name (its
      ``role``; change with ``agent_name=lambda agent: ...``) and ``roles`` maps the
      agent's CrewAI role to Veto roles: ``{"Support Agent": ["support"]}`` or a
      function ``agent -> roles`` (unmapped: the principal's roles).
    - ``env`` / ``tenant``: where; ``context``: what policies read as ``context.KEY``.
    - ``run_id``: fixed run id; default: a fresh one per kickoff (CrewAI's execution id).
    - ``tool_names``: CrewAI tool name -> policy name (e.g. MCP tools to
      ``mcp__server__tool``), a mapping or a function.
    - ``approval_timeout``: cap (seconds) on waiting for an approval; default the rule's.

    :func:`run_context` overrides principal/env/tenant/run id/context per kickoff.
    Installing again for the same ``veto`` replaces the earlier hooks (no double
    decisions). Returns the hooks; :func:`uninstall` removes them.
    """
    from crewai.hooks import register_after_tool_call_hook, register_before_tool_call_hook

    options: dict[str, Any] = {
        "principal": principal,
        "env": env,
        "tenant": tenant,
        "run_id": run_id,
        "context": context,
        "roles": roles,
        "agent_name": agent_name,
        "tool_names": tool_names,
        "approval_timeout": approval_timeout,
    }
    hooks = VetoHooks(veto, _settings(**options))
    _runs.listen()
    with _INSTALL_LOCK:
        for old in [h for h in _INSTALLED if h.veto is veto]:
            _unregister(old)
        register_before_tool_call_hook(hooks.before_tool_call)
        register_after_tool_call_hook(hooks.after_tool_call)
        _INSTALLED.append(hooks)
    return hooks


def _unregister(hooks: VetoHooks) -> None:
    from crewai.hooks import unregister_after_tool_call_hook, unregister_before_tool_call_hook

    unregister_before_tool_call_hook(hooks.before_tool_call)
    unregister_after_tool_call_hook(hooks.after_tool_call)
    with contextlib.suppress(ValueError):
        _INSTALLED.remove(hooks)


def uninstall(target: VetoHooks | Veto | None = None) -> int:
    """Remove hooks registered by :func:`install`: those of one ``VetoHooks`` or one
    ``Veto``, or all of them (``None``). Returns how many were removed."""
    with _INSTALL_LOCK:
        if target is None:
            chosen = list(_INSTALLED)
        elif isinstance(target, VetoHooks):
            chosen = [h for h in _INSTALLED if h is target]
        else:
            chosen = [h for h in _INSTALLED if h.veto is target]
        for hooks in chosen:
            _unregister(hooks)
        return len(chosen)


def installed() -> list[VetoHooks]:
    """The hooks :func:`install` registered and :func:`uninstall` has not removed."""
    with _INSTALL_LOCK:
        return list(_INSTALLED)


# --- scoped registration ------------------------------------------------------------------


@contextlib.contextmanager
def scope(
    veto: Veto,
    *,
    principal: Principal | None = None,
    env: str | None = None,
    tenant: str | None = None,
    run_id: str | None = None,
    context: Mapping[str, Any] | None = None,
    roles: RoleMap | None = None,
    agent_name: Any = None,
    tool_names: ToolNameMap | None = None,
    approval_timeout: float | None = None,
) -> Iterator[VetoHooks]:
    """Like :func:`install`, for the tool calls made inside the ``with`` block only::

        with veto_crewai.scope(veto, principal=Principal(user="u1")):
            crew.kickoff()

    Uses CrewAI's execution-scoped hooks (a context variable): calls made by this thread
    or task, and by the threads CrewAI starts for them (parallel tool calls,
    ``akickoff`` workers), are decided; other crews running concurrently elsewhere are
    not touched. Scoped hooks already active are kept. Do not combine with a global
    :func:`install` of the same ``veto`` (each would decide and record the call).
    """
    from crewai.hooks.dispatch import (
        InterceptionPoint,
        get_scoped_hooks,
        register_scoped,
        scoped_hooks,
    )

    options: dict[str, Any] = {
        "principal": principal,
        "env": env,
        "tenant": tenant,
        "run_id": run_id,
        "context": context,
        "roles": roles,
        "agent_name": agent_name,
        "tool_names": tool_names,
        "approval_timeout": approval_timeout,
    }
    hooks = VetoHooks(veto, _settings(**options))
    _runs.listen()
    inherited = {point: get_scoped_hooks(point) for point in InterceptionPoint}
    with scoped_hooks({p: h for p, h in inherited.items() if h}):
        register_scoped(InterceptionPoint.PRE_TOOL_CALL, hooks.before_tool_call)
        register_scoped(InterceptionPoint.POST_TOOL_CALL, hooks.after_tool_call)
        yield hooks

"""``guard_tool`` / ``guard_tools``: wrap CrewAI tools so the policy applies inside the tool
itself, wherever it is invoked (an agent's native tool calls, the ReAct text path, a
direct ``tool.run(...)``), with or without the global hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from crewai.tools import BaseTool
from pydantic import ConfigDict, PrivateAttr

from veto_core import Principal, Veto
from veto_core.adapters import error_text

from . import _gate, _runs
from ._args import received_args
from ._calls import CallInput, CallSite, RoleMap, Settings, ToolNameMap, build_call, call_site
from .errors import ToolCallDenied

__all__ = ["GuardedTool", "guard_tool", "guard_tools"]

OnDeny = Literal["message", "raise"]


def _never_cache(_args: Any = None, _result: Any = None) -> bool:
    # A cached result would answer a later call without asking Veto.
    return False


class GuardedTool(BaseTool):
    """A CrewAI ``BaseTool`` that asks Veto before running the tool it wraps.

    Same name, description and argument schema as the wrapped tool, so the model sees
    the same tool. Each call is decided (and durably recorded) first, with the
    arguments the tool would really get (after CrewAI's validation):

    - allowed (or approved): ``inner.run(...)`` / ``inner.arun(...)`` once, then its
      output is recorded in the run (DESIGN.md 2.7); if that fails the output is
      withheld and the reason returned (or raised) instead;
    - anything else (denied, approval rejected/expired/pending, any error): the tool
      body does not run; the call returns the reason text (the model reads it as the
      tool's result) or, with ``on_deny="raise"``, raises :class:`ToolCallDenied`.

    Approvals block until decided or expired (``approval_timeout`` caps the rule's
    timeout); ``_arun`` decides and waits in a worker thread, never on the event loop.
    CrewAI's result cache is off for guarded tools (a cached answer would skip the
    decision), and the wrapped tool keeps its own ``max_usage_count``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseTool
    _veto: Veto = PrivateAttr()
    _settings: Settings = PrivateAttr()
    _on_deny: OnDeny = PrivateAttr(default="message")

    @property
    def veto(self) -> Veto:
        return self._veto

    # -- the gate --------------------------------------------------------------------------

    def _arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if not args:
            return dict(kwargs)
        fields = list(getattr(self.args_schema, "model_fields", {}) or {})
        if len(args) > len(fields):
            return {"input": list(args), **kwargs}
        return {**dict(zip(fields, args, strict=False)), **kwargs}

    def _check(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], site: CallSite
    ) -> _gate.Verdict:
        try:
            call = build_call(
                self._settings,
                CallInput(
                    tool_name=self.name,
                    args=received_args(self.inner, self._arguments(args, kwargs)),
                    agent=site.agent,
                    crew=site.crew,
                    task=site.task,
                    model_call_id=site.call_id,
                ),
            )
        except Exception as exc:
            return _gate.failure(self.name, exc)
        return _gate.check(self._veto, call, approval_timeout=self._settings.approval_timeout)

    def _site(self) -> CallSite:
        try:
            from ._calls import canonical_tool_name

            return call_site(canonical_tool_name(Settings(), self.name))
        except Exception:
            return CallSite()

    def _blocked(self, verdict: _gate.Verdict) -> str:
        if self._on_deny == "raise":
            call = verdict.call
            raise ToolCallDenied(
                verdict.reason,
                tool=call.tool if call else self.name,
                outcome=verdict.outcome,
                tool_call_id=call.tool_call_id if call else None,
                decision=verdict.decision,
                approval_id=verdict.approval_id,
            )
        return verdict.reason

    def _withheld(self, verdict: _gate.Verdict, text: str) -> str:
        """The body ran but its output could not be recorded in the run: the model (or,
        with ``on_deny="raise"``, the application) gets ``text`` instead."""
        if self._on_deny == "raise":
            call = verdict.call
            raise ToolCallDenied(
                text,
                tool=call.tool if call else self.name,
                outcome="error",
                tool_call_id=call.tool_call_id if call else None,
                decision=verdict.decision,
                approval_id=verdict.approval_id,
            )
        return text

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            verdict = self._check(args, kwargs, self._site())
        except Exception as exc:  # _check fails closed itself; this is belt and braces
            verdict = _gate.failure(self.name, exc)
        if not verdict.run:
            return self._blocked(verdict)
        try:
            output = self.inner.run(*args, **kwargs)
        except Exception as exc:  # it ran and failed: CrewAI shows the model the text
            withheld = _gate.observe(self._veto, verdict, error_text(exc))
            if withheld is None:
                raise
            return self._withheld(verdict, withheld)
        withheld = _gate.observe(self._veto, verdict, output)
        return output if withheld is None else self._withheld(verdict, withheld)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        site = self._site()
        try:
            verdict = await asyncio.to_thread(self._check, args, kwargs, site)
        except Exception as exc:
            verdict = _gate.failure(self.name, exc)
        if not verdict.run:
            return self._blocked(verdict)
        try:
            output = await self.inner.arun(*args, **kwargs)
        except Exception as exc:  # it ran and failed: CrewAI shows the model the text
            withheld = await _gate.aobserve(self._veto, verdict, error_text(exc))
            if withheld is None:
                raise
            return self._withheld(verdict, withheld)
        withheld = await _gate.aobserve(self._veto, verdict, output)
        return output if withheld is None else self._withheld(verdict, withheld)


def guard_tool(
    tool: BaseTool,
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
    on_deny: OnDeny = "message",
) -> GuardedTool:
    """Wrap one CrewAI tool (a ``BaseTool`` subclass or a ``@tool`` function) so every
    invocation is decided by ``veto`` inside the tool.

    Options as for :func:`veto_crewai.install`. When the tool runs inside a crew through
    native function calling, the agent (for ``principal.agent`` and ``roles``) and the
    model's tool-call id are read from CrewAI's executing frame; otherwise ``principal``
    is used as given and the id is derived. :func:`veto_crewai.run_context` overrides
    per kickoff.
    """
    if not isinstance(tool, BaseTool):
        raise TypeError(f"guard_tool wraps a crewai BaseTool, not {type(tool).__name__}")
    if isinstance(tool, GuardedTool):
        raise ValueError(f"tool {tool.name!r} is already guarded")
    if on_deny not in ("message", "raise"):
        raise ValueError(f"on_deny must be 'message' or 'raise', not {on_deny!r}")
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
    settings = Settings(**{k: v for k, v in options.items() if v is not None})
    guarded = GuardedTool(
        inner=tool,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        result_schema=tool.result_schema,
        env_vars=list(tool.env_vars),
        result_as_answer=tool.result_as_answer,
        tool_failure_policy=tool.tool_failure_policy,
        cache_function=_never_cache,
    )
    guarded._veto = veto
    guarded._settings = settings
    _runs.listen()
    guarded._on_deny = on_deny
    return guarded


def guard_tools(tools: Iterable[BaseTool], veto: Veto, **options: Any) -> list[GuardedTool]:
    """:func:`guard_tool` for each tool, with the same options."""
    return [guard_tool(t, veto, **options) for t in tools]

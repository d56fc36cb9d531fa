"""``guard_tool`` / ``guard_tools``: wrap any ``BaseTool`` so the policy applies wherever the
tool is invoked (an agent's tool node, a legacy ``AgentExecutor``, a plain ``tool.invoke``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from pydantic import ConfigDict, PrivateAttr

from veto_core import Principal, ToolCall, Veto

from . import _flow, _gate
from ._args import received_args
from ._calls import _RUNTIME_KEY, CallDefaults, ToolNames, VetoContext, build_call
from ._nested import governing, outer_run_id
from .errors import ToolCallDenied

__all__ = ["GuardedTool", "guard_tool", "guard_tools"]

OnDeny = Literal["message", "raise"]


class GuardedTool(BaseTool):
    """A ``BaseTool`` that asks Veto before running the tool it wraps.

    It keeps the wrapped tool's name, description and argument schema, so a model
    sees the same tool. On allow it calls ``inner.run``/``inner.arun`` once, with
    the same arguments and config. When the call must not run:

    - called with a tool call id (as agents' tool nodes do) and ``on_deny="message"``:
      returns ``ToolMessage(status="error", content=<reason with rule ids>)`` so the
      model sees why;
    - otherwise (a direct ``tool.invoke({...})``, or ``on_deny="raise"``): raises
      :class:`ToolCallDenied`, because a plain string result would look like success.

    Approval: blocks until the request is decided or times out (``approval_timeout``
    caps the rule's timeout); the async path waits in a worker thread. For LangGraph
    ``interrupt()``-style approvals use :class:`VetoMiddleware`.

    Runs and data flow (DESIGN.md 2.7): after the wrapped tool ran, what the model will
    see of it is recorded in the run; when that fails the refusal replaces the output
    (the body ran). The run is the ``run_id`` given (constructor or ``VetoContext``),
    else the LangGraph ``thread_id``, else the invocation's ``config["run_id"]``; a
    ``tool.invoke`` on its own is a run of its own. Inside an agent whose run has none
    of these the output cannot be recorded and is withheld: give the run an id. The
    tool cannot see the agent's input: record it with
    :func:`~veto_langchain.observe_run_input` before each run (the person's messages, and
    the tool messages of a re-sent conversation: while one of those cannot be recorded,
    no guarded call of the run runs).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseTool
    _veto: Veto = PrivateAttr()
    _defaults: CallDefaults = PrivateAttr()
    _on_deny: OnDeny = PrivateAttr(default="message")
    _approval_timeout: float | None = PrivateAttr(default=None)

    def _run(self, *args: Any, **kwargs: Any) -> Any:  # never reached: run() is overridden
        raise NotImplementedError("GuardedTool delegates through run()/arun()")

    # -- the gate ------------------------------------------------------------------------

    def _check(
        self,
        tool_input: Any,
        config: Mapping[str, Any] | None,
        tool_call_id: str | None,
        run_id: Any = None,
    ) -> tuple[_gate.Verdict, ToolCall | None]:
        try:
            args = received_args(self.inner, tool_input)
            configurable = (config or {}).get("configurable") or {}
            runtime = configurable.get("__pregel_runtime")
            call = build_call(
                self._defaults,
                name=self.name,
                args=args,
                tool_call_id=tool_call_id,
                config=config,
                runtime_context=getattr(runtime, "context", None),
            )
            if call.run_id is None:
                call = replace(call, run_id=_default_run_id(config, run_id))
        except Exception as exc:
            return _gate.refusal(
                ToolCall(tool=self.name),
                "error",
                f"the call could not be read, so it is blocked (fail closed): "
                f"{type(exc).__name__}: {exc}",
            ), None
        # tool messages of the run's input (observe_run_input) that its history lacks are
        # recorded before the call is decided; while they cannot be, it does not run
        unrecorded = _flow.history_unrecorded(self._veto, call)
        verdict = _gate.authorize_and_wait(self._veto, call, self._approval_timeout)
        if verdict.run and unrecorded is not None:  # decided and recorded, but does not run
            verdict = _gate.withheld(call, unrecorded)
        return verdict, call

    def _blocked(
        self, verdict: _gate.Verdict, call: ToolCall | None, tool_call_id: str | None
    ) -> Any:
        if self._on_deny == "message" and tool_call_id:
            return ToolMessage(
                content=verdict.reason, tool_call_id=tool_call_id, name=self.name, status="error"
            )
        raise ToolCallDenied(
            verdict.reason,
            tool=call.tool if call else self.name,
            outcome=verdict.outcome,
            tool_call_id=tool_call_id,
            decision=verdict.decision,
            approval_id=verdict.approval_id,
        )

    def run(self, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("config")
        tool_call_id = kwargs.get("tool_call_id")
        verdict, call = self._check(tool_input, config, tool_call_id, kwargs.get("run_id"))
        if not verdict.run or call is None:
            return self._blocked(verdict, call, tool_call_id)
        try:
            with governing(self._veto, call, self._defaults.tool_names):
                output = self.inner.run(tool_input, *args, **kwargs)
        except ToolCallDenied as exc:  # a tool inside this one was refused
            if self._on_deny == "message" and tool_call_id:
                return self._blocked(_inner_refusal(exc), call, tool_call_id)
            raise
        except GraphBubbleUp:  # an interrupt or a parent command: not an error
            raise
        except Exception as exc:  # the tool ran and failed: a handler shows its text
            withheld = _flow.observe_raised(self._veto, call, exc, verdict)
            if withheld is None:
                raise
            return self._blocked(_gate.withheld(call, withheld), call, tool_call_id)
        withheld = _flow.observe_result(self._veto, call, output, verdict)
        if withheld is None:
            return output
        return self._blocked(_gate.withheld(call, withheld), call, tool_call_id)

    async def arun(self, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("config")
        tool_call_id = kwargs.get("tool_call_id")
        verdict, call = await asyncio.to_thread(
            self._check, tool_input, config, tool_call_id, kwargs.get("run_id")
        )
        if not verdict.run or call is None:
            return self._blocked(verdict, call, tool_call_id)
        try:
            with governing(self._veto, call, self._defaults.tool_names):
                output = await self.inner.arun(tool_input, *args, **kwargs)
        except ToolCallDenied as exc:  # a tool inside this one was refused
            if self._on_deny == "message" and tool_call_id:
                return self._blocked(_inner_refusal(exc), call, tool_call_id)
            raise
        except GraphBubbleUp:  # an interrupt or a parent command: not an error
            raise
        except Exception as exc:  # the tool ran and failed: a handler shows its text
            withheld = await _flow.aobserve_raised(self._veto, call, exc, verdict)
            if withheld is None:
                raise
            return self._blocked(_gate.withheld(call, withheld), call, tool_call_id)
        withheld = await _flow.aobserve_result(self._veto, call, output, verdict)
        if withheld is None:
            return output
        return self._blocked(_gate.withheld(call, withheld), call, tool_call_id)


def guard_tool(
    tool: BaseTool,
    veto: Veto,
    *,
    principal: Principal | None = None,
    env: str | None = None,
    tenant: str | None = None,
    context: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    on_deny: OnDeny = "message",
    approval_timeout: float | None = None,
    tool_names: ToolNames | None = None,
) -> GuardedTool:
    """Wrap one tool (sync and async) so every invocation is decided and recorded.

    Per-run overrides come from ``config["configurable"]["veto"]`` (a
    :class:`VetoContext`) or the LangGraph runtime context, as for the middleware.
    """
    if not isinstance(tool, BaseTool):
        raise TypeError(f"guard_tool wraps a langchain BaseTool, not {type(tool).__name__}")
    if isinstance(tool, GuardedTool):
        raise ValueError(f"tool {tool.name!r} is already guarded")
    if on_deny not in ("message", "raise"):
        raise ValueError(f"on_deny must be 'message' or 'raise', not {on_deny!r}")
    guarded = GuardedTool(
        inner=tool,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        response_format=tool.response_format,
        metadata=tool.metadata,
        tags=tool.tags,
    )
    guarded._veto = veto
    guarded._defaults = CallDefaults(
        base=VetoContext(
            principal=principal, env=env, tenant=tenant, run_id=run_id, context=context
        ),
        tool_names=tool_names or ToolNames(),
    )
    guarded._on_deny = on_deny
    guarded._approval_timeout = approval_timeout
    return guarded


def guard_tools(tools: Iterable[BaseTool], veto: Veto, **options: Any) -> list[GuardedTool]:
    """``guard_tool`` for each tool, with the same options."""
    return [guard_tool(t, veto, **options) for t in tools]


def _default_run_id(config: Mapping[str, Any] | None, run_id: Any) -> str | None:
    """The run of a guarded call given no run id: the decided call it runs inside; else,
    when it is the outermost invocation (``tool.invoke`` on its own), a run of its own
    (its LangChain ``run_id`` when given); else unknown (None: its output cannot be
    recorded, so it is withheld: give the run an id)."""
    outer = outer_run_id()
    if outer is not None:
        return outer
    callbacks = (config or {}).get("callbacks")
    if isinstance(callbacks, BaseCallbackManager) and callbacks.parent_run_id is not None:
        return None  # inside a chain or graph whose run has no id
    if _RUNTIME_KEY in ((config or {}).get("configurable") or {}):
        return None
    return f"langchain-{run_id or uuid.uuid4()}"


def _inner_refusal(exc: ToolCallDenied) -> _gate.Verdict:
    return _gate.Verdict(
        run=False,
        outcome=exc.outcome,
        reason=f"a tool call inside this one ({exc.tool}) was not run: {exc.reason}",
        decision=exc.decision,
        approval_id=exc.approval_id,
    )

"""``VetoCallbackHandler``: stop denied tool calls from a callback, for runnables and legacy
agents that have no middleware.

What a callback can and cannot do (LangChain ``BaseCallbackHandler`` semantics):

- It can **stop** a call: with ``raise_error=True`` (set here) an exception from
  ``on_tool_start`` propagates out of ``BaseTool.run`` before the tool body runs.
- It **cannot answer the model**: the exception ends the tool's run (and, in a
  ``create_agent`` graph, the whole agent step) instead of producing a
  ``ToolMessage``; the application sees :class:`ToolCallDenied`, the model sees
  nothing. Sibling tool calls of the same model turn may or may not have run.
  Use :class:`VetoMiddleware` or :func:`guard_tools` when the model should read
  the reason and go on.
- It decides on what the tool body will receive: the handler is given the raw input
  only, so it finds the starting tool (``BaseTool.run``/``arun``, its caller) and
  validates the input with the tool's schema first (``_args``). That is why it runs
  inline (``run_inline``): in async runs the decision, and a pending approval's wait
  (up to the rule's timeout), happen on the event loop thread, blocking it. Use
  :class:`VetoMiddleware` for async agents that wait for approvals. There is no
  ``interrupt()``/resume through a callback.
- It only sees tools whose runs carry it: pass it in the runnable config
  (``config={"callbacks": [handler]}``) of every run, or to each tool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables.config import ensure_config

from veto_core import Principal, ToolCall, Veto

from . import _gate
from ._args import received_args, tool_on_stack
from ._calls import CallDefaults, ToolNames, VetoContext, build_call
from ._nested import finished, start_of_decided_call
from .errors import ToolCallDenied

__all__ = ["VetoCallbackHandler"]


class VetoCallbackHandler(BaseCallbackHandler):
    """Decide each tool call in ``on_tool_start``; raise :class:`ToolCallDenied` to stop it.

    >>> runnable.invoke(x, config={"callbacks": [VetoCallbackHandler(veto)]})  # doctest: +SKIP

    See the module docstring for what a callback cannot do.
    """

    raise_error: bool = True
    run_inline: bool = True  # the starting tool must be on the stack (module docstring)

    def __init__(
        self,
        veto: Veto,
        *,
        principal: Principal | None = None,
        env: str | None = None,
        tenant: str | None = None,
        context: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        approval_timeout: float | None = None,
        tool_names: ToolNames | None = None,
    ) -> None:
        self.veto = veto
        self.approval_timeout = approval_timeout
        self._defaults = CallDefaults(
            base=VetoContext(
                principal=principal, env=env, tenant=tenant, run_id=run_id, context=context
            ),
            tool_names=tool_names or ToolNames(),
        )

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        name = str((serialized or {}).get("name") or kwargs.get("name") or "")
        tool_call_id = kwargs.get("tool_call_id")
        call = self._read_call(name, input_str, inputs, metadata, tool_call_id)
        if isinstance(call, _gate.Verdict):
            raise ToolCallDenied(
                call.reason, tool=name or "?", outcome="error", tool_call_id=tool_call_id
            )
        if call is None:
            return None
        verdict = _gate.authorize_and_wait(self.veto, call, self.approval_timeout)
        if not verdict.run:
            raise ToolCallDenied(
                verdict.reason,
                tool=call.tool,
                outcome=verdict.outcome,
                tool_call_id=tool_call_id,
                decision=verdict.decision,
                approval_id=verdict.approval_id,
            )
        return None

    def _read_call(
        self,
        name: str,
        input_str: str,
        inputs: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        tool_call_id: str | None,
    ) -> ToolCall | _gate.Verdict | None:
        """The call to decide, with the arguments the body will receive; a refusal when
        it cannot be read; ``None`` when it was already decided (nested guard)."""
        try:
            tool = tool_on_stack(name, inputs)
            if tool is None:
                raise LookupError(
                    f"the starting tool {name!r} was not found, so its argument schema "
                    "cannot be applied"
                )
            args: Any = inputs
            if args is None:
                try:
                    args = json.loads(input_str)
                except ValueError:
                    args = input_str
            args = received_args(tool, args)
            return self._build(name, args, metadata, tool_call_id)
        except Exception as exc:
            return _gate.refusal(
                ToolCall(tool=name or "?"),
                "error",
                f"the call could not be read, so it is blocked (fail closed): "
                f"{type(exc).__name__}: {exc}",
            )

    def _build(
        self, name: str, args: Any, metadata: dict[str, Any] | None, tool_call_id: str | None
    ) -> ToolCall | None:
        config = ensure_config()
        configurable = dict(config.get("configurable") or {})
        if "thread_id" not in configurable and metadata and "thread_id" in metadata:
            configurable["thread_id"] = metadata["thread_id"]
        runtime = configurable.get("__pregel_runtime")
        return build_call(
            self._defaults,
            name=name,
            args=args,
            tool_call_id=tool_call_id,
            config={"configurable": configurable},
            runtime_context=getattr(runtime, "context", None),
        )


class NestedGuard(VetoCallbackHandler):
    """Decides every tool that starts inside an already decided tool call (an agent
    used as a tool, a tool that calls tools), under the outer call's principal, run,
    env, tenant and context. Installed for the duration of the outer call by
    ``_nested.governing``; never configured by hand.

    The start of the call an integration on the same ``Veto`` has just decided (the
    outer tool itself and its retries, or an inner agent's own ``VetoMiddleware``
    call) is not decided twice (``_nested.start_of_decided_call``).
    """

    def __init__(self, veto: Veto, outer: ToolCall, tool_names: ToolNames) -> None:
        super().__init__(veto, tool_names=tool_names)
        self._outer = outer
        self._tool_names = tool_names
        self._skipped: dict[Any, Any] = {}  # run id -> token of a decided call's start

    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> Any:
        name = str((serialized or {}).get("name") or kwargs.get("name") or "")
        try:
            canonical = self._tool_names.canonical(name)
        except Exception:
            canonical = name
        token = start_of_decided_call(self.veto, canonical, kwargs.get("tool_call_id"), run_id)
        if token is not None:
            self._skipped[run_id] = token
            return None
        return super().on_tool_start(serialized, input_str, run_id=run_id, **kwargs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        self._release(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        self._release(run_id)

    def _release(self, run_id: UUID) -> None:
        token = self._skipped.pop(run_id, None)
        if token is not None:
            finished(token, run_id)

    def _build(
        self, name: str, args: Any, metadata: dict[str, Any] | None, tool_call_id: str | None
    ) -> ToolCall | None:
        if isinstance(args, str):
            args = {"input": args}
        if not isinstance(args, Mapping):
            raise TypeError(f"tool arguments must be an object, got {type(args).__name__}")
        canonical = self._tool_names.canonical(name)
        return replace(self._outer, tool=canonical, args=dict(args), tool_call_id=tool_call_id)

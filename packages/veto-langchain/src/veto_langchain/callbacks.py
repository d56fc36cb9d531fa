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
- A pending approval **blocks in place** (up to the rule's timeout), in the tool's
  thread. In async runs this handler runs in a worker thread (``run_inline`` is
  False), so the event loop is not blocked; an async callback could not block at
  all. There is no ``interrupt()``/resume through a callback.
- It only sees tools whose runs carry it: pass it in the runnable config
  (``config={"callbacks": [handler]}``) of every run, or to each tool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables.config import ensure_config

from veto_core import Principal, ToolCall, Veto

from . import _gate
from ._calls import CallDefaults, ToolNames, VetoContext, build_call
from .errors import ToolCallDenied

__all__ = ["VetoCallbackHandler"]


class VetoCallbackHandler(BaseCallbackHandler):
    """Decide each tool call in ``on_tool_start``; raise :class:`ToolCallDenied` to stop it.

    >>> runnable.invoke(x, config={"callbacks": [VetoCallbackHandler(veto)]})  # doctest: +SKIP

    See the module docstring for what a callback cannot do.
    """

    raise_error: bool = True
    run_inline: bool = False

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
        name = (serialized or {}).get("name") or kwargs.get("name")
        tool_call_id = kwargs.get("tool_call_id")
        try:
            args: Any = inputs
            if args is None:
                try:
                    args = json.loads(input_str)
                except ValueError:
                    args = input_str
            config = ensure_config()
            configurable = dict(config.get("configurable") or {})
            if "thread_id" not in configurable and metadata and "thread_id" in metadata:
                configurable["thread_id"] = metadata["thread_id"]
            runtime = configurable.get("__pregel_runtime")
            call = build_call(
                self._defaults,
                name=str(name or ""),
                args=args,
                tool_call_id=tool_call_id,
                config={"configurable": configurable},
                runtime_context=getattr(runtime, "context", None),
            )
        except Exception as exc:
            verdict = _gate.refusal(
                ToolCall(tool=str(name or "?")),
                "error",
                f"the call could not be read, so it is blocked (fail closed): "
                f"{type(exc).__name__}: {exc}",
            )
            raise ToolCallDenied(
                verdict.reason, tool=str(name), outcome="error", tool_call_id=tool_call_id
            ) from exc
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

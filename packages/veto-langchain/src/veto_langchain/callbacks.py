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
- Runs and data flow (DESIGN.md 2.7): the human messages of the input of the run it
  is configured on (the outermost runnable's ``messages``, or its input when that is a
  list of messages; not a bare string or ``{"input": ...}``) are recorded as ``"@user"``
  just before that run's first tool call is decided; the output of every call it let
  run is recorded in ``on_tool_end``. Tool messages of earlier turns in that input (a
  conversation re-sent without a checkpointer) that the run's history lacks are recorded
  first, as the outputs of their tools; a human message right after one of them, with a
  model turn after it, is that tool's output, never the person's. If one cannot be
  recorded (its tool cannot be named), no tool call of the run runs. Since a callback
  cannot replace an output, one that cannot be recorded raises :class:`ToolCallDenied`
  from ``on_tool_end``: the tool's result never reaches the model (the body ran). While
  the input cannot be recorded, each tool call of the run is decided and recorded but
  refused the same way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables.config import ensure_config
from langgraph.errors import GraphBubbleUp

from veto_core import Principal, ToolCall, Veto

from . import _flow, _gate
from ._args import received_args, tool_on_stack
from ._calls import CallDefaults, ToolNames, VetoContext, build_call
from ._nested import (
    enter_call,
    finished,
    in_decided_call,
    leave_call,
    outer_run_id,
    start_of_decided_call,
)
from .errors import ToolCallDenied

__all__ = ["VetoCallbackHandler"]


def _refuse_unrecorded(call: ToolCall, verdict: _gate.Verdict, withheld: str | None) -> None:
    """What ran could not be recorded in its run: the tool's result (or error) is
    replaced by this refusal, the only signal a callback has (fail closed)."""
    if withheld is not None:
        raise ToolCallDenied(
            withheld,
            tool=call.tool,
            outcome="error",
            tool_call_id=call.tool_call_id,
            decision=verdict.decision,
            approval_id=verdict.approval_id,
        )


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
        self._lock = threading.Lock()
        self._parents: dict[UUID, UUID | None] = {}  # running chains -> their parent
        self._runs: dict[UUID, str] = {}  # root run -> its Veto run id
        self._inputs: dict[UUID, _flow.RunInput] = {}  # root run -> its input, not yet recorded
        self._ran: dict[UUID, tuple[ToolCall, _gate.Verdict, Any]] = {}  # tool runs let run

    # --- the run's human input (recorded before its first tool call is decided) -------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        with self._lock:
            self._parents[run_id] = parent_run_id
            if parent_run_id is None:
                outer = outer_run_id()  # a chain inside a decided call belongs to its run
                self._runs[run_id] = outer or f"langchain-{run_id}"
                if not in_decided_call() and not isinstance(inputs, str | bytes):
                    # its messages, not a bare string
                    self._inputs[run_id] = _flow.RunInput(inputs, self._defaults.tool_names)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        self._chain_done(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        self._chain_done(run_id)

    def _chain_done(self, run_id: UUID) -> None:
        with self._lock:
            self._parents.pop(run_id, None)
            self._runs.pop(run_id, None)
            self._inputs.pop(run_id, None)

    def _root(self, run_id: UUID, parent_run_id: UUID | None) -> tuple[str | None, UUID | None]:
        """The Veto run id of the outermost run this tool runs in (one invocation of the
        outermost runnable, or of the tool itself when invoked on its own) and that
        run's LangChain id when this handler saw it start. ``(None, None)`` when the tool
        runs inside something this handler did not see start: its run is unknown."""
        if parent_run_id is None:  # the tool is the outermost run
            return outer_run_id() or f"langchain-{run_id}", None
        with self._lock:
            node: UUID | None = parent_run_id
            for _ in range(1024):  # a cycle would be a LangChain bug; stop anyway
                if node is None or node not in self._parents:
                    break
                parent = self._parents[node]
                if parent is None:
                    return self._runs.get(node), node
                node = parent
            return None, None

    # --- tool calls ---------------------------------------------------------------------

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
        run, root = self._root(run_id, parent_run_id)
        if call.run_id is None and run is not None:  # one outermost invocation, one run
            call = replace(call, run_id=run)
        unrecorded = self._observe_input(root, call)
        verdict = _gate.authorize_and_wait(self.veto, call, self.approval_timeout)
        if verdict.run and unrecorded is not None:  # decided and recorded, but does not run
            verdict = _gate.withheld(call, unrecorded)
        if not verdict.run:
            raise ToolCallDenied(
                verdict.reason,
                tool=call.tool,
                outcome=verdict.outcome,
                tool_call_id=tool_call_id,
                decision=verdict.decision,
                approval_id=verdict.approval_id,
            )
        with self._lock:
            self._ran[run_id] = (call, verdict, enter_call(call.run_id))
        return None

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        ran = self._finished(run_id)
        if ran is not None:
            call, verdict = ran
            _refuse_unrecorded(
                call, verdict, _flow.observe_result(self.veto, call, output, verdict)
            )

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        ran = self._finished(run_id)
        if ran is None or not isinstance(error, Exception) or isinstance(error, GraphBubbleUp):
            return  # a cancellation, an interrupt: nothing a model reads
        # An error handler (ToolErrorMiddleware, ToolNode's) shows the model the error's
        # text: record it; if that fails, this error replaces it (fail closed).
        call, verdict = ran
        _refuse_unrecorded(call, verdict, _flow.observe_raised(self.veto, call, error, verdict))

    def _finished(self, run_id: UUID) -> tuple[ToolCall, _gate.Verdict] | None:
        """The call and verdict of a tool run that ended (None: not one Veto let run)."""
        with self._lock:
            ran = self._ran.pop(run_id, None)
        if ran is None:
            return None
        call, verdict, inside = ran
        leave_call(inside)
        return call, verdict

    def _observe_input(self, root: UUID | None, call: ToolCall) -> str | None:
        """Record the input of the outermost run ``root`` (once; None: done, or nothing to
        do): the tool messages of earlier turns it carries that the run's history lacks
        (a conversation re-sent without a checkpointer), as their tools' outputs, and the
        person's human messages as ``"@user"`` (``_flow.RunInput``); why not, if they
        cannot be (the next tool call of the run tries again)."""
        if root is None:
            return None
        with self._lock:
            entry = self._inputs.pop(root, None)
        if entry is None or not self.veto.observes_runs:
            return None  # nothing to record: the policy keeps no run history
        history = entry.record_history(self.veto, call)
        person = entry.record_person(self.veto, call)
        why = history or person
        if why is not None:
            with self._lock:
                if root in self._parents:
                    self._inputs.setdefault(root, entry)
        return why

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

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        return None  # an inner agent's input comes from the outer model, not the person

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        return None

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        return None

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        self._release(run_id)
        return super().on_tool_end(output, run_id=run_id, **kwargs)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        self._release(run_id)
        return super().on_tool_error(error, run_id=run_id, **kwargs)

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
